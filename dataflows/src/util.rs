//! Small shared helpers.

use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: a fast hash for the short string keys (column names, org and machine
/// ids) looked up once or more per row. Not DoS-resistant: keys come from the
/// configuration and from the org's own data, which only affects that org.
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `BuildHasher` for [`FnvHasher`].
pub type Fnv = BuildHasherDefault<FnvHasher>;
