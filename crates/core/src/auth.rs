//! Client API keys: which client a presented `x-api-key` belongs to.
//!
//! Issued keys look like `tfk_<key id>_<secret>`: the key id (public, 8 characters) names the
//! stored record, which keeps only the secret's SHA-256 digest; the presented secret is hashed
//! and compared in constant time. Keys are issued, listed and revoked by the admin CLI, without
//! a redeploy, in a [`KeyRecordStore`]; functions authenticate through a [`CachedAuthenticator`]
//! (a [`KeyAuthenticator`] that keeps the records it found briefly), so a revocation takes effect
//! within the cache's lifetime. A fixed in-memory key set for tests, `fixed::FixedKeys`, comes
//! with the feature `test-support`.

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::error::StoreError;
use crate::task::ClientId;
use crate::time::Timestamp;
use crate::token::{self, TokenError};

#[cfg(any(test, feature = "test-support"))]
pub mod fixed;

/// Authenticates a presented `x-api-key`: which client it belongs to, if any. What the API
/// functions ask; [`CachedAuthenticator`] answers from a [`KeyRecordStore`].
pub trait KeyAuthenticator: Send + Sync {
    fn client_for_key(&self, presented: &str) -> impl Future<Output = Result<Option<ClientId>, StoreError>> + Send;
}

/// A stored key: its public id, its owner, and the digest of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub client_id: ClientId,
    pub secret_digest: String,
    pub created_at: Timestamp,
}

/// Where the records of issued keys ([`KeyRecord`]) live: read by the authenticator, written by
/// the admin CLI.
pub trait KeyRecordStore: Send + Sync {
    fn find(&self, key_id: &str) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;
    /// Stores a new key; fails with [`StoreError::AlreadyExists`] if its id is taken.
    fn save(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every key, or one client's, oldest first.
    fn list(&self, client: Option<&ClientId>) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;
    /// Deletes a key; answers whether it existed.
    fn revoke(&self, key_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

const KEY_PREFIX: &str = "tfk_";
const KEY_ID_LEN: usize = 8;
const SECRET_LEN: usize = 43;

/// A newly issued key: shown once, then only its record remains.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub key: String,
    pub record: KeyRecord,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("record", &self.record).finish_non_exhaustive()
    }
}

/// Splits a presented key into (key id, secret); None if it is not shaped like one of ours.
pub fn split_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (key_id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (key_id.bytes().all(|b| b.is_ascii_alphanumeric()) && secret.len() == SECRET_LEN && plain(secret))
        .then_some((key_id, secret))
}

/// Issues a new random key for `client`.
pub fn issue(client: &ClientId, now: Timestamp) -> Result<IssuedKey, TokenError> {
    let mut bytes = [0u8; KEY_ID_LEN + 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::new(e.to_string()))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let key_id: String =
        bytes[..KEY_ID_LEN].iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    let secret = URL_SAFE_NO_PAD.encode(&bytes[KEY_ID_LEN..]);
    let key = format!("{KEY_PREFIX}{key_id}_{secret}");
    adopt(client, &key, now).ok_or_else(|| TokenError::new("generated key is malformed".into()))
}

/// The record of a key chosen by the operator (e.g. a fixed development key); None if the key
/// is not shaped `tfk_<8 alphanumerics>_<43 base64url characters>`.
pub fn adopt(client: &ClientId, key: &str, now: Timestamp) -> Option<IssuedKey> {
    let (key_id, secret) = split_key(key)?;
    let record = KeyRecord {
        key_id: key_id.to_owned(),
        client_id: client.clone(),
        secret_digest: token::digest(secret),
        created_at: now,
    };
    Some(IssuedKey { key: key.to_owned(), record })
}

/// A [`KeyAuthenticator`] over a [`KeyRecordStore`] with a bounded cache: each key record found is
/// kept for `ttl` per function instance.
///
/// The cache is bounded ([`CachedAuthenticator::CAPACITY`] keys, evicted by S3-FIFO: a key read
/// once leaves before the keys in steady use) and holds only keys that exist: a key id that names no
/// key is looked up again every time and never takes a place. So presenting any number of random
/// key ids evicts no valid entry (each costs one lookup, as it would with a cache of misses: a
/// random id is never presented twice). An entry is used for `ttl` after it was read, then read
/// again (a revoked key is then dropped), so a revocation takes effect within `ttl`.
pub struct CachedAuthenticator<K> {
    store: K,
    ttl: Duration,
    /// Found keys by key id, with the instant each was read.
    cache: quick_cache::sync::Cache<String, (KeyRecord, Instant)>,
}

impl<K> CachedAuthenticator<K> {
    /// Most keys remembered at once: far more than a fleet issues, so in practice every key in
    /// use stays cached; the bound caps memory whatever happens.
    pub const CAPACITY: usize = 10_000;

    pub fn new(store: K, ttl: Duration) -> Self {
        Self { store, ttl, cache: quick_cache::sync::Cache::new(Self::CAPACITY) }
    }

    pub fn store(&self) -> &K {
        &self.store
    }

    /// The key, if it was read less than `ttl` ago.
    fn cached(&self, key_id: &str) -> Option<KeyRecord> {
        self.cache.get(key_id).filter(|(_, read_at)| read_at.elapsed() < self.ttl).map(|(record, _)| record)
    }
}

impl<K: KeyRecordStore> KeyAuthenticator for CachedAuthenticator<K> {
    async fn client_for_key(&self, presented: &str) -> Result<Option<ClientId>, StoreError> {
        let Some((key_id, secret)) = split_key(presented) else { return Ok(None) };
        let record = match self.cached(key_id) {
            Some(record) => Some(record),
            None => {
                let read_at = Instant::now();
                let record = self.store.find(key_id).await?;
                match &record {
                    Some(found) if !self.ttl.is_zero() => {
                        self.cache.insert(key_id.to_owned(), (found.clone(), read_at));
                    }
                    // Revoked (or never issued): forget an expired entry, remember nothing.
                    _ => {
                        self.cache.remove(key_id);
                    }
                }
                record
            }
        };
        let presented_digest = token::digest(secret);
        Ok(record
            .filter(|r| bool::from(r.secret_digest.as_bytes().ct_eq(presented_digest.as_bytes())))
            .map(|r| r.client_id))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn issued_keys_split_into_id_and_secret_and_keep_only_the_digest() {
        let issued = issue(&ClientId::parse("alpha").unwrap(), Timestamp::from_millis(0)).unwrap();
        let (key_id, secret) = split_key(&issued.key).unwrap();
        assert_eq!(key_id, issued.record.key_id);
        assert_eq!(issued.record.secret_digest, token::digest(secret));
        assert!(!format!("{issued:?}").contains(secret));
        let other = issue(&ClientId::parse("alpha").unwrap(), Timestamp::from_millis(0)).unwrap();
        assert_ne!(issued.key, other.key);
    }

    #[test]
    fn keys_not_shaped_like_ours_are_refused_before_any_lookup() {
        let good = format!("tfk_abcd2345_{}", "s".repeat(43));
        assert!(split_key(&good).is_some());
        for bad in [
            String::new(),
            "tfk_".into(),
            format!("tfk_abcd234_{}", "s".repeat(43)),
            format!("tfk_abcd2345_{}", "s".repeat(42)),
            format!("tfk_abcd2345-{}", "s".repeat(43)),
            format!("tfk_abcd2345_{}!", "s".repeat(42)),
            format!("xyz_abcd2345_{}", "s".repeat(43)),
        ] {
            assert!(split_key(&bad).is_none(), "{bad}");
        }
    }

    #[derive(Default)]
    struct Keys(Mutex<Vec<KeyRecord>>, std::sync::atomic::AtomicUsize);

    impl KeyRecordStore for Keys {
        async fn find(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.0.lock().unwrap().iter().find(|r| r.key_id == key_id).cloned())
        }
        async fn save(&self, record: &KeyRecord) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        }
        async fn list(&self, _: Option<&ClientId>) -> Result<Vec<KeyRecord>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn revoke(&self, key_id: &str) -> Result<bool, StoreError> {
            let mut keys = self.0.lock().unwrap();
            let before = keys.len();
            keys.retain(|r| r.key_id != key_id);
            Ok(keys.len() < before)
        }
    }

    #[tokio::test]
    async fn stored_keys_name_their_client_only_with_the_right_secret_and_cache_lookups() {
        let alpha = ClientId::parse("alpha").unwrap();
        let issued = issue(&alpha, Timestamp::from_millis(0)).unwrap();
        let keys = CachedAuthenticator::new(Keys::default(), Duration::from_secs(60));
        keys.store().save(&issued.record).await.unwrap();
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), Some(alpha.clone()));
        let (key_id, _) = split_key(&issued.key).unwrap();
        let wrong_secret = format!("tfk_{key_id}_{}", "x".repeat(43));
        assert_eq!(keys.client_for_key(&wrong_secret).await.unwrap(), None);
        assert_eq!(keys.client_for_key("nonsense").await.unwrap(), None);
        assert_eq!(keys.store().1.load(std::sync::atomic::Ordering::SeqCst), 1, "one lookup, then the cache");
    }

    #[tokio::test]
    async fn a_revoked_key_stops_working_when_the_cache_expires() {
        let alpha = ClientId::parse("alpha").unwrap();
        let issued = issue(&alpha, Timestamp::from_millis(0)).unwrap();
        let keys = CachedAuthenticator::new(Keys::default(), Duration::ZERO);
        keys.store().save(&issued.record).await.unwrap();
        assert!(keys.client_for_key(&issued.key).await.unwrap().is_some());
        assert!(keys.store().revoke(&issued.record.key_id).await.unwrap());
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), None);
    }

    fn lookups(keys: &CachedAuthenticator<Keys>) -> usize {
        keys.store().1.load(Ordering::SeqCst)
    }

    /// A well-formed key whose id names no stored key.
    fn unknown_key(n: usize) -> String {
        format!("tfk_{n:08x}_{}", "u".repeat(SECRET_LEN))
    }

    #[tokio::test]
    async fn random_unknown_key_ids_evict_no_cached_key_and_are_not_remembered() {
        let alpha = ClientId::parse("alpha").unwrap();
        let issued = issue(&alpha, Timestamp::from_millis(0)).unwrap();
        let keys = CachedAuthenticator::new(Keys::default(), Duration::from_secs(600));
        keys.store().save(&issued.record).await.unwrap();
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), Some(alpha.clone()));
        assert_eq!(lookups(&keys), 1);

        let sprayed = CachedAuthenticator::<Keys>::CAPACITY + 2_000;
        for n in 0..sprayed {
            assert_eq!(keys.client_for_key(&unknown_key(n)).await.unwrap(), None);
        }
        assert_eq!(lookups(&keys), 1 + sprayed, "one lookup per unknown id");
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), Some(alpha), "still cached");
        assert_eq!(lookups(&keys), 1 + sprayed, "the valid key was not evicted");

        // A miss is not remembered: a key issued after its id was presented works at once.
        let late = KeyRecord { key_id: "00000007".into(), ..issued.record.clone() };
        let late_key = format!("tfk_00000007_{}", &issued.key[issued.key.len() - SECRET_LEN..]);
        keys.store().save(&late).await.unwrap();
        assert_eq!(keys.client_for_key(&late_key).await.unwrap(), Some(late.client_id));
    }

    #[tokio::test]
    async fn a_cached_key_is_read_again_after_the_cache_time() {
        let alpha = ClientId::parse("alpha").unwrap();
        let issued = issue(&alpha, Timestamp::from_millis(0)).unwrap();
        let ttl = Duration::from_millis(600);
        let keys = CachedAuthenticator::new(Keys::default(), ttl);
        keys.store().save(&issued.record).await.unwrap();
        assert!(keys.client_for_key(&issued.key).await.unwrap().is_some());
        assert!(keys.client_for_key(&issued.key).await.unwrap().is_some());
        assert_eq!(lookups(&keys), 1, "within the cache time: the cache");

        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(keys.client_for_key(&issued.key).await.unwrap().is_some());
        assert_eq!(lookups(&keys), 2, "expired: read again");

        // Revoked: it works until its entry expires, then never again (and is not cached).
        assert!(keys.store().revoke(&issued.record.key_id).await.unwrap());
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), None);
        assert_eq!(keys.client_for_key(&issued.key).await.unwrap(), None);
        assert_eq!(lookups(&keys), 4);
    }
}
