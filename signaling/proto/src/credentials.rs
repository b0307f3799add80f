//! The registrar's credentials file (TOML).
//!
//! ```toml
//! realm = "upmt"                 # Digest realm, also the SIP domain
//! [[user]]
//! name = "alice"
//! password = "wonderland"        # either a password ...
//! [[user]]
//! name = "bob"
//! ha1_sha256 = "5f2b..."         # ... or precomputed HA1 (hex) per algorithm,
//! ha1_md5 = "8b2f..."            #     H(name:realm:password), so no password is stored
//! ```
//! See `examples/credentials.toml`.

use std::collections::HashMap;

use crate::auth::{ha1, Algorithm};

/// Error loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The TOML does not parse or has unknown keys.
    #[error("credentials file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A user has neither a password nor any HA1.
    #[error("user {0:?} has no password and no ha1_*")]
    NoSecret(String),
    /// The same user appears twice.
    #[error("user {0:?} is listed twice")]
    Duplicate(String),
    /// A user name that cannot appear in a SIP URI user part.
    #[error("user name {0:?} is not a valid SIP user")]
    BadName(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    realm: String,
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
}

/// HA1 values of one user.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    md5: Option<String>,
    sha256: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// HA1 for `alg`, hex, if known.
    pub fn ha1(&self, alg: Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => self.md5.as_deref(),
            Algorithm::Sha256 => self.sha256.as_deref(),
        }
    }
}

/// Users and their secrets for one realm.
#[derive(Debug, Clone)]
pub struct Credentials {
    realm: String,
    users: HashMap<String, Secret>,
}

impl Credentials {
    /// An empty set for `realm`.
    pub fn new(realm: impl Into<String>) -> Credentials {
        Credentials {
            realm: realm.into(),
            users: HashMap::new(),
        }
    }

    /// Parses the TOML text of a credentials file.
    pub fn from_toml(text: &str) -> Result<Credentials, CredentialsError> {
        let f: File = toml::from_str(text)?;
        let mut c = Credentials::new(f.realm);
        for u in f.user {
            if u.name.is_empty()
                || !u
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(ch))
            {
                return Err(CredentialsError::BadName(u.name));
            }
            if c.users.contains_key(&u.name) {
                return Err(CredentialsError::Duplicate(u.name));
            }
            let realm = c.realm.clone();
            let secret = match (&u.password, u.ha1_md5, u.ha1_sha256) {
                (Some(p), md5, sha) => Secret {
                    md5: Some(md5.unwrap_or_else(|| ha1(Algorithm::Md5, &u.name, &realm, p))),
                    sha256: Some(sha.unwrap_or_else(|| ha1(Algorithm::Sha256, &u.name, &realm, p))),
                },
                (None, None, None) => return Err(CredentialsError::NoSecret(u.name)),
                (None, md5, sha) => Secret {
                    md5: md5.map(|s| s.to_ascii_lowercase()),
                    sha256: sha.map(|s| s.to_ascii_lowercase()),
                },
            };
            c.users.insert(u.name, secret);
        }
        Ok(c)
    }

    /// Adds a user with a password.
    pub fn add_password(&mut self, name: &str, password: &str) {
        let secret = Secret {
            md5: Some(ha1(Algorithm::Md5, name, &self.realm, password)),
            sha256: Some(ha1(Algorithm::Sha256, name, &self.realm, password)),
        };
        self.users.insert(name.to_owned(), secret);
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The secret of `user`.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_file_forms() {
        let c = Credentials::from_toml(
            r#"
realm = "upmt"
[[user]]
name = "alice"
password = "wonderland"
[[user]]
name = "bob"
ha1_md5 = "ABCDEF"
"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get("alice").unwrap().ha1(Algorithm::Md5),
            Some(ha1(Algorithm::Md5, "alice", "upmt", "wonderland").as_str())
        );
        assert_eq!(c.get("bob").unwrap().ha1(Algorithm::Md5), Some("abcdef"));
        assert_eq!(c.get("bob").unwrap().ha1(Algorithm::Sha256), None);
        assert!(Credentials::from_toml("realm='r'\n[[user]]\nname='x'\n").is_err());
        assert!(Credentials::from_toml("realm='r'\nfoo=1\n").is_err());
        assert!(Credentials::from_toml("realm='r'\n[[user]]\nname='a b'\npassword='p'\n").is_err());
    }

    #[test]
    fn example_file_loads() {
        let text = include_str!("../../../examples/credentials.toml");
        let c = Credentials::from_toml(text).unwrap();
        assert!(c.get("mh1").is_some());
    }
}
