//! Who may use the API: users with argon2 password hashes and a role within an
//! organization (sled tree `users`), HS256 JWTs, login rate limiting, and the
//! audit log (sled trees `audit*`).
//!
//! # Roles and the org boundary
//! - `operator`: reads and acts on the alerts of its own org (ack, resolve, feedback).
//! - `admin`: everything an operator may, plus models (train, deploy, roll back)
//!   and the audit log of its own org.
//! - `super_admin`: everything, in every org (routes take `?org=`).
//!
//! The API checks the org before the role: a resource of another org is *not
//! found* (404) whatever the caller's role, so a caller never learns that it
//! exists; a role that may not act within its own org is *forbidden* (403).
//!
//! # Tokens
//! A token names the user, role, org and the user's `tokenEpoch`; every request
//! looks the user up again, so a removed user, a changed role or org, or a new
//! password (which bumps the epoch) invalidates tokens issued before.

pub mod audit;
pub mod limiter;
pub mod token;
pub mod users;

pub use audit::{AuditEntry, AuditLog};
pub use limiter::LoginLimiter;
pub use token::{Claims, TokenError, TokenKeys};
pub use users::{Role, User, UserStore, UsersError};

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    b
}

/// A random password of `len` characters (letters and digits, no look-alikes).
pub fn generate_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>() {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % ALPHABET.len();
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
