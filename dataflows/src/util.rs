//! Small shared helpers.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hash for the short string keys (column names, org and machine ids)
/// looked up once or more per row: eight bytes per multiply (FNV's byte-at-a-time
/// chain made it a visible cost per row). Not DoS-resistant: keys come from the
/// configuration and from the org's own data, which only affects that org.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortKeyHasher(u64);

/// Odd multiplier with well-mixed bits (rustc-hash's).
const K: u64 = 0xf135_7aea_2e62_a9c5;

impl ShortKeyHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(K);
    }
}

impl Hasher for ShortKeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // One multiply per word only carries differences upwards; hashbrown
        // indexes with the low bits, so fold the high ones down and mix once more.
        let h = (self.0 ^ (self.0 >> 32)).wrapping_mul(K);
        h ^ (h >> 29)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        // The length tells "ab" from "ab\0" once padded.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// `BuildHasher` for [`ShortKeyHasher`].
pub type ShortKey = BuildHasherDefault<ShortKeyHasher>;

/// Dense indices of (org, machine) pairs, looked up by `&str` without allocating:
/// a per-row lookup on hot paths (one per row in the features and alerts
/// operators) costs two short hashes and no `String` clones.
#[derive(Debug, Default)]
pub struct MachineIndex {
    orgs: HashMap<String, HashMap<String, usize, ShortKey>, ShortKey>,
    keys: Vec<(String, String)>,
    /// The last pair found: rows mostly come in runs of one machine, and comparing
    /// two short strings is cheaper than hashing them.
    last: Cell<usize>,
}

impl MachineIndex {
    /// The index of (org, machine), if it has one.
    #[inline]
    pub fn get(&self, org: &str, machine: &str) -> Option<usize> {
        if let Some((o, m)) = self.keys.get(self.last.get())
            && m == machine
            && o == org
        {
            return Some(self.last.get());
        }
        let i = *self.orgs.get(org)?.get(machine)?;
        self.last.set(i);
        Some(i)
    }

    /// The index of (org, machine), giving it the next free one (the number of
    /// pairs seen so far) the first time; the bool says whether it is new.
    pub fn get_or_insert(&mut self, org: &str, machine: &str) -> (usize, bool) {
        if let Some(i) = self.get(org, machine) {
            return (i, false);
        }
        let i = self.keys.len();
        self.keys.push((org.to_string(), machine.to_string()));
        self.orgs
            .entry(org.to_string())
            .or_default()
            .insert(machine.to_string(), i);
        (i, true)
    }

    /// The (org, machine) of index `i`.
    pub fn key(&self, i: usize) -> Option<(&str, &str)> {
        self.keys.get(i).map(|(o, m)| (o.as_str(), m.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True before the first pair.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_index_is_dense_and_keyed_by_both_parts() {
        let mut ix = MachineIndex::default();
        assert!(ix.is_empty());
        assert_eq!(ix.get_or_insert("a", "m1"), (0, true));
        assert_eq!(ix.get_or_insert("a", "m2"), (1, true));
        // Same machine name in another org is another machine.
        assert_eq!(ix.get_or_insert("b", "m1"), (2, true));
        // A pair that concatenates the same is not confused either.
        assert_eq!(ix.get_or_insert("am", "1"), (3, true));
        assert_eq!(ix.get_or_insert("a", "m1"), (0, false));
        assert_eq!(ix.get("b", "m1"), Some(2));
        assert_eq!(ix.get("b", "m2"), None);
        assert_eq!(ix.get("c", "m1"), None);
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.key(3), Some(("am", "1")));
        assert_eq!(ix.key(4), None);
        // The last-hit shortcut never answers for another pair.
        assert_eq!(ix.get("a", "m1"), Some(0));
        assert_eq!(ix.get("a", "m2"), Some(1));
        assert_eq!(ix.get("a", "m3"), None);
        assert_eq!(ix.get("b", "m2"), None);
        assert_eq!(ix.get("a", "m2"), Some(1));
    }

    #[test]
    fn short_key_hash_separates_near_keys() {
        use std::hash::BuildHasher;
        let h = |s: &str| ShortKey::default().hash_one(s);
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "ab\0",
            "abcdefgh",
            "abcdefghi",
            "abcdefgh\0",
            "IQ-01",
            "IQ-02",
            "IQ-10",
            "furnace-001",
            "furnace-002",
            "acme-heat",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| h(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        // Low bits (the bucket index) differ for sequential ids.
        let low: std::collections::HashSet<u64> =
            (0..64).map(|i| h(&format!("IQ-{i:02}")) & 63).collect();
        assert!(low.len() > 32, "{} distinct buckets of 64", low.len());
    }
}
