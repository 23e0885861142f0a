//! A fixed, in-memory key set for tests: keys given up front as `client_id:key` pairs, compared
//! by SHA-256 digest. Only with the `test-support` feature (and in this crate's own tests): the
//! functions authenticate against stored key records ([`super::CachedAuthenticator`]).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::KeyAuthenticator;
use crate::error::StoreError;
use crate::task::ClientId;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyConfigError {
    #[error("entry {0} is not `client_id:key`")]
    Malformed(usize),
    #[error("entry {0} has an invalid client id")]
    InvalidClient(usize),
    #[error("entry {0} has a key shorter than {min} characters", min = FixedKeys::MIN_KEY_LEN)]
    KeyTooShort(usize),
    #[error("entry {0} repeats a key")]
    DuplicateKey(usize),
}

/// A [`KeyAuthenticator`] over a fixed, in-memory set of client keys (any string of 16+
/// characters), for tests.
#[derive(Clone, Default)]
pub struct FixedKeys {
    by_digest: HashMap<[u8; 32], ClientId>,
}

impl std::fmt::Debug for FixedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedKeys").field("keys", &self.by_digest.len()).finish()
    }
}

impl FixedKeys {
    pub const MIN_KEY_LEN: usize = 16;

    /// Parses `client_id:key,client_id:key` (whitespace around entries is ignored).
    pub fn parse(spec: &str) -> Result<Self, KeyConfigError> {
        let mut by_digest = HashMap::new();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let (client, key) = entry.split_once(':').ok_or(KeyConfigError::Malformed(position))?;
            let client = ClientId::parse(client.trim()).map_err(|_| KeyConfigError::InvalidClient(position))?;
            let key = key.trim();
            if key.len() < Self::MIN_KEY_LEN {
                return Err(KeyConfigError::KeyTooShort(position));
            }
            if by_digest.insert(digest(key), client).is_some() {
                return Err(KeyConfigError::DuplicateKey(position));
            }
        }
        Ok(Self { by_digest })
    }

    /// The client a presented key belongs to.
    pub fn client_for(&self, presented: &str) -> Option<&ClientId> {
        self.by_digest.get(&digest(presented))
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

impl KeyAuthenticator for FixedKeys {
    async fn client_for_key(&self, presented: &str) -> Result<Option<ClientId>, StoreError> {
        Ok(self.client_for(presented).cloned())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_known_key_names_its_client() {
        let keys = FixedKeys::parse(&format!("alpha:{KEY_A}, beta:{KEY_B}")).unwrap();
        assert_eq!(keys.client_for(KEY_A).map(ClientId::as_str), Some("alpha"));
        assert_eq!(keys.client_for(KEY_B).map(ClientId::as_str), Some("beta"));
    }

    #[test]
    fn an_unknown_or_altered_key_names_no_client() {
        let keys = FixedKeys::parse(&format!("alpha:{KEY_A}")).unwrap();
        assert_eq!(keys.client_for(""), None);
        assert_eq!(keys.client_for(&KEY_A[1..]), None);
        assert_eq!(keys.client_for(&KEY_A.to_uppercase()), None);
    }

    #[test]
    fn bad_configuration_is_refused_with_the_entry_position() {
        assert_eq!(FixedKeys::parse("alpha").unwrap_err(), KeyConfigError::Malformed(1));
        assert_eq!(
            FixedKeys::parse(&format!("a:{KEY_A},bad client:{KEY_B}")).unwrap_err(),
            KeyConfigError::InvalidClient(2)
        );
        assert_eq!(FixedKeys::parse("alpha:short").unwrap_err(), KeyConfigError::KeyTooShort(1));
        assert_eq!(FixedKeys::parse(&format!("a:{KEY_A},b:{KEY_A}")).unwrap_err(), KeyConfigError::DuplicateKey(2));
    }

    #[test]
    fn an_empty_spec_has_no_keys() {
        assert!(FixedKeys::parse("").unwrap().is_empty());
        assert!(FixedKeys::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn debug_output_never_shows_keys_or_digests() {
        let keys = FixedKeys::parse(&format!("alpha:{KEY_A}")).unwrap();
        assert_eq!(format!("{keys:?}"), "FixedKeys { keys: 1 }");
    }
}
