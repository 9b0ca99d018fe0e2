//! The users of the API (sled tree `users`: username → [`User`] JSON) and their
//! argon2id password hashes.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (argon2 hashes anything; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What a user may do (see the module header of [`crate::auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and acts on its org's alerts.
    Operator,
    /// Operator rights plus models and the audit log of its org.
    Admin,
    /// Everything in every org.
    SuperAdmin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Operator, Role::Admin, Role::SuperAdmin];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (operator, admin, super_admin)"))
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub username: String,
    /// What the user may do.
    pub role: Role,
    /// The user's organization (`None` only for a super admin).
    pub org: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When the user was created (ms).
    pub created_at: i64,
    /// When the password was last set (ms).
    pub password_changed_at: i64,
    /// Tokens carry it; a new password bumps it, invalidating older tokens.
    pub token_epoch: u64,
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// sled failed.
    #[error("user store I/O")]
    Storage(#[from] sled::Error),
    /// A stored user does not parse.
    #[error("stored user {username} is unreadable")]
    Corrupt {
        /// Whose record.
        username: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The username is taken.
    #[error("user {0} already exists")]
    Exists(String),
    /// No such user.
    #[error("no user {0}")]
    NotFound(String),
    /// A field is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field (`username`, `password`, `org`, `role`).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// argon2 refused (never for valid input).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> UsersError {
    UsersError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Usernames: 1–64 characters of `A–Z a–z 0–9 . _ - @`.
pub fn validate_username(u: &str) -> Result<(), UsersError> {
    if u.is_empty() || u.len() > 64 {
        return Err(invalid("username", "must be 1 to 64 characters"));
    }
    if !u
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(invalid(
            "username",
            "only letters, digits and . _ - @ are allowed",
        ));
    }
    Ok(())
}

/// Passwords: at least [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_password(p: &str) -> Result<(), UsersError> {
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Operators and admins belong to one org; a super admin may have a home org.
pub fn validate_role_org(role: Role, org: Option<&str>) -> Result<(), UsersError> {
    match (role, org) {
        (Role::Operator | Role::Admin, None) => {
            Err(invalid("org", format!("a {role} needs an org")))
        }
        (_, Some(o)) if o.is_empty() || o.len() > 128 || o.contains('\0') => {
            Err(invalid("org", "must be 1 to 128 characters without NUL"))
        }
        _ => Ok(()),
    }
}

/// argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::encode_b64(&super::random_bytes::<16>())
        .map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (constant time in the hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash that no password matches, verified against when a username is
/// unknown so that a login takes as long whether or not the user exists.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password(&super::hex(&super::random_bytes::<24>())).expect("hashing a random password")
    })
}

/// The `users` tree.
#[derive(Clone)]
pub struct UserStore {
    tree: sled::Tree,
}

impl UserStore {
    /// Open the `users` tree of `db` (the controller's store).
    pub fn open(db: &sled::Db) -> Result<UserStore, UsersError> {
        Ok(UserStore {
            tree: db.open_tree("users")?,
        })
    }

    fn decode(username: &str, v: &[u8]) -> Result<User, UsersError> {
        serde_json::from_slice(v).map_err(|source| UsersError::Corrupt {
            username: username.into(),
            source,
        })
    }

    /// One user.
    pub fn get(&self, username: &str) -> Result<Option<User>, UsersError> {
        self.tree
            .get(username.as_bytes())?
            .map(|v| Self::decode(username, &v))
            .transpose()
    }

    /// Every user, by username.
    pub fn list(&self) -> Result<Vec<User>, UsersError> {
        self.tree
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Self::decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Whether there is no user yet.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Create a user; fails when the username is taken.
    pub fn add(
        &self,
        username: &str,
        role: Role,
        org: Option<&str>,
        password: &str,
        now_ms: i64,
    ) -> Result<User, UsersError> {
        validate_username(username)?;
        validate_role_org(role, org)?;
        validate_password(password)?;
        let user = User {
            username: username.into(),
            role,
            org: org.map(str::to_string),
            password_hash: hash_password(password)?,
            created_at: now_ms,
            password_changed_at: now_ms,
            token_epoch: 0,
        };
        let bytes = serde_json::to_vec(&user).expect("users serialize");
        self.tree
            .compare_and_swap(username.as_bytes(), None::<&[u8]>, Some(bytes))?
            .map_err(|_| UsersError::Exists(username.into()))?;
        self.tree.flush()?;
        Ok(user)
    }

    /// Set a user's password; tokens issued before stop working.
    pub fn set_password(
        &self,
        username: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<User, UsersError> {
        validate_password(password)?;
        let hash = hash_password(password)?;
        loop {
            let Some(old) = self.tree.get(username.as_bytes())? else {
                return Err(UsersError::NotFound(username.into()));
            };
            let mut u = Self::decode(username, &old)?;
            u.password_hash.clone_from(&hash);
            u.password_changed_at = now_ms;
            u.token_epoch += 1;
            let bytes = serde_json::to_vec(&u).expect("users serialize");
            if self
                .tree
                .compare_and_swap(username.as_bytes(), Some(old), Some(bytes))?
                .is_ok()
            {
                self.tree.flush()?;
                return Ok(u);
            }
        }
    }

    /// Remove a user; `false` when there was none.
    pub fn remove(&self, username: &str) -> Result<bool, UsersError> {
        let had = self.tree.remove(username.as_bytes())?.is_some();
        self.tree.flush()?;
        Ok(had)
    }

    /// The user when `password` is theirs. Takes the same time for an unknown user.
    pub fn verify(&self, username: &str, password: &str) -> Result<Option<User>, UsersError> {
        let user = self.get(username)?;
        let hash = user
            .as_ref()
            .map_or(decoy_hash(), |u| u.password_hash.as_str());
        let ok = verify_password(password, hash);
        Ok(user.filter(|_| ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_verify_passwd_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let users = UserStore::open(&db).unwrap();
        assert!(users.is_empty());
        let u = users
            .add(
                "ann",
                Role::Operator,
                Some("acme"),
                "correct horse battery",
                1,
            )
            .unwrap();
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(matches!(
            users.add("ann", Role::Admin, Some("acme"), "another password!", 2),
            Err(UsersError::Exists(_))
        ));
        assert!(
            users
                .verify("ann", "correct horse battery")
                .unwrap()
                .is_some()
        );
        assert!(users.verify("ann", "wrong password!!").unwrap().is_none());
        assert!(
            users
                .verify("bob", "correct horse battery")
                .unwrap()
                .is_none()
        );

        let u2 = users.set_password("ann", "a new long password", 3).unwrap();
        assert_eq!(u2.token_epoch, 1);
        assert!(
            users
                .verify("ann", "correct horse battery")
                .unwrap()
                .is_none()
        );
        assert!(
            users
                .verify("ann", "a new long password")
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            users.set_password("nobody", "a new long password", 3),
            Err(UsersError::NotFound(_))
        ));
        assert!(users.remove("ann").unwrap());
        assert!(users.get("ann").unwrap().is_none());
    }

    #[test]
    fn refuses_bad_fields() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let users = UserStore::open(&db).unwrap();
        let field = |r: Result<User, UsersError>| match r {
            Err(UsersError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(users.add("a b", Role::Operator, Some("o"), "long enough pw", 0)),
            "username"
        );
        assert_eq!(
            field(users.add("a", Role::Operator, Some("o"), "short", 0)),
            "password"
        );
        assert_eq!(
            field(users.add("a", Role::Admin, None, "long enough pw", 0)),
            "org"
        );
        assert!(
            users
                .add("root", Role::SuperAdmin, None, "long enough pw", 0)
                .is_ok()
        );
        assert_eq!("super_admin".parse::<Role>().unwrap(), Role::SuperAdmin);
        assert!("root".parse::<Role>().is_err());
    }
}
