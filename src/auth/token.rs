//! HS256 JWTs: issuing at login, checking on every request, and the signing
//! secret (env `PROGNOS_JWT_SECRET`, else `<data-dir>/jwt_secret`, generated at
//! first start with mode 0600).

use super::users::{Role, User};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Shortest secret accepted from the environment (HS256 wants ≥ 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// The secret file in the data dir.
pub const SECRET_FILE: &str = "jwt_secret";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Username.
    pub sub: String,
    /// Role when issued (the API uses the stored user's current role).
    pub role: Role,
    /// Org when issued.
    pub org: Option<String>,
    /// The user's token epoch when issued.
    pub epoch: u64,
    /// Issued at (s since the epoch).
    pub iat: u64,
    /// Expires at (s since the epoch).
    pub exp: u64,
}

/// Why a token was refused (the API answers 401 for each, without saying which).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad format, signature, algorithm or expiry.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// Issued later than now: no token of ours can be (beyond a small clock step).
    #[error("invalid token: issued {ahead_s} s in the future")]
    IssuedInFuture {
        /// How far ahead of the clock its `iat` is.
        ahead_s: u64,
    },
}

/// How far a token's `iat` may be ahead of the clock (a wall-clock step back).
pub const IAT_TOLERANCE_S: u64 = 2;

/// Why the secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment's secret is too short.
    #[error("PROGNOS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort,
    /// The secret file could not be read or written.
    #[error("JWT secret file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Signing and checking keys with their settings.
pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    /// Lifetime of an issued token (s).
    pub ttl_s: u64,
}

impl TokenKeys {
    /// Keys over `secret`; tokens live `ttl_s` seconds.
    pub fn new(secret: &[u8], ttl_s: u64) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        // Only this process issues and checks tokens: no clock skew to allow for.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        TokenKeys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            ttl_s,
        }
    }

    /// A token for `user`, issued at `now_s`; returns it and its expiry (s).
    pub fn issue(&self, user: &User, now_s: u64) -> (String, u64) {
        let claims = Claims {
            sub: user.username.clone(),
            role: user.role,
            org: user.org.clone(),
            epoch: user.token_epoch,
            iat: now_s,
            exp: now_s + self.ttl_s,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .expect("HS256 signing cannot fail");
        (token, claims.exp)
    }

    /// The claims of a valid, unexpired HS256 token signed with our secret.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`TokenKeys::verify`] with the clock at `now_s` for the `iat` check.
    pub fn verify_at(&self, token: &str, now_s: u64) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)?.claims;
        if claims.iat > now_s + IAT_TOLERANCE_S {
            return Err(TokenError::IssuedInFuture {
                ahead_s: claims.iat - now_s,
            });
        }
        Ok(claims)
    }
}

/// The signing secret: `from_env` when given (at least [`MIN_SECRET_BYTES`]),
/// else the data dir's secret file, created with 32 random bytes (hex) when absent.
pub fn load_secret(data_dir: &Path, from_env: Option<&str>) -> Result<Vec<u8>, SecretError> {
    if let Some(s) = from_env {
        if s.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    let io = |source| SecretError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_BYTES => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("shorter than {MIN_SECRET_BYTES} bytes"),
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let secret = super::hex(&super::random_bytes::<32>());
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(secret.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    tracing::info!(file = %path.display(), "generated the JWT signing secret");
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            username: "ann".into(),
            role: Role::Admin,
            org: Some("acme".into()),
            password_hash: String::new(),
            created_at: 0,
            password_changed_at: 0,
            token_epoch: 3,
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn issue_verify_tamper_expire() {
        let keys = TokenKeys::new(&[7u8; 32], 60);
        let (t, exp) = keys.issue(&user(), now());
        assert_eq!(exp, now() + 60);
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role, c.epoch), ("ann", Role::Admin, 3));

        // Another secret, a changed payload, an expired token, alg none: refused.
        assert!(TokenKeys::new(&[8u8; 32], 60).verify(&t).is_err());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts[1].replace('a', "b"), parts[2]);
        assert!(keys.verify(&forged).is_err());
        let (old, _) = keys.issue(&user(), now() - 120);
        assert!(keys.verify(&old).is_err());
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(keys.verify(&none).is_err());
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let keys = TokenKeys::new(&[7u8; 32], 3600);
        let t0 = now();
        let (t, _) = keys.issue(&user(), t0 + 600);
        assert!(matches!(
            keys.verify_at(&t, t0),
            Err(TokenError::IssuedInFuture { ahead_s: 600 })
        ));
        // A clock step back of up to IAT_TOLERANCE_S is tolerated, and once the
        // clock has caught up the token is good.
        let (soon, _) = keys.issue(&user(), t0 + IAT_TOLERANCE_S);
        assert!(keys.verify_at(&soon, t0).is_ok());
        assert!(keys.verify_at(&t, t0 + 600).is_ok());
    }

    #[test]
    fn secret_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_secret(dir.path(), Some("short")),
            Err(SecretError::TooShort)
        ));
        let a = load_secret(dir.path(), None).unwrap();
        let b = load_secret(dir.path(), None).unwrap();
        assert_eq!(a, b, "generated once, then read back");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
