//! Each client's secret for signing its completion webhooks.
//!
//! Nothing secret is stored. A client's secret is derived from the fleet's master key (in
//! Secrets Manager) and the client's secret record, which holds only a version and a random
//! salt: `HMAC-SHA256(master, "taskfleet completion secret" ‖ client ‖ version ‖ salt)`. The
//! client sees it once, as `whsec_…`, when `POST /webhook-secret` creates or rotates it.
//!
//! A rotation gives the next version a fresh salt; the previous secret keeps signing beside the
//! new one until the grace period ends, so a delivery carries both signatures meanwhile and
//! the receiver can switch when it likes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::signing::{SecretError, SigningSecrets};
use crate::task::ClientId;
use crate::time::Timestamp;

/// How long a rotated-out secret keeps signing, unless configured otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Bytes of a salt.
pub const SALT_LEN: usize = 16;

/// The fleet's master key. Never printed.
#[derive(Clone)]
pub struct MasterKey(Vec<u8>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From a `whsec_…` secret (at least 24 bytes, as signing secrets are).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or(SecretError::Prefix(1))?;
        let key = STANDARD.decode(encoded).ok().filter(|k| k.len() >= 24).ok_or(SecretError::Key(1))?;
        Ok(Self(key))
    }

    fn derive(&self, client: &ClientId, version: &Version) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [b"taskfleet completion secret".as_slice(), client.as_str().as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&version.number.to_be_bytes());
        mac.update(&version.salt);
        mac.finalize().into_bytes().to_vec()
    }
}

/// One version of a client's secret: its number and salt (not secret by themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub number: u32,
    pub salt: [u8; SALT_LEN],
}

/// What is stored of a client's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub current: Version,
    /// The version rotated out, and until when it keeps signing.
    pub previous: Option<(Version, Timestamp)>,
}

impl SecretRecord {
    /// A client's first secret.
    pub fn create(salt: [u8; SALT_LEN]) -> Self {
        Self { current: Version { number: 1, salt }, previous: None }
    }

    /// The record after a rotation at `now`: the current secret keeps signing for `grace`.
    pub fn rotate(&self, salt: [u8; SALT_LEN], now: Timestamp, grace: Duration) -> Self {
        let next = Version { number: self.current.number.saturating_add(1), salt };
        Self { current: next, previous: Some((self.current.clone(), now.plus(grace))) }
    }

    /// The versions that sign a delivery at `now`, newest first.
    pub fn signing(&self, now: Timestamp) -> Vec<&Version> {
        let previous = self.previous.as_ref().filter(|(_, until)| now < *until).map(|(version, _)| version);
        std::iter::once(&self.current).chain(previous).collect()
    }

    /// The secrets that sign a delivery of `client`'s at `now`.
    pub fn signing_secrets(&self, master: &MasterKey, client: &ClientId, now: Timestamp) -> SigningSecrets {
        let keys = self.signing(now).into_iter().map(|version| master.derive(client, version)).collect();
        SigningSecrets::from_keys(keys).unwrap_or_else(|_| unreachable!("the current version always signs"))
    }

    /// The current secret as the client is shown it, once.
    pub fn current_secret(&self, master: &MasterKey, client: &ClientId) -> String {
        format!("whsec_{}", STANDARD.encode(master.derive(client, &self.current)))
    }
}

/// The system had no randomness to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no randomness for a secret's salt: {0}")]
pub struct NoEntropy(String);

/// A fresh random salt.
pub fn random_salt() -> Result<[u8; SALT_LEN], NoEntropy> {
    let mut salt = [0; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| NoEntropy(e.to_string()))?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Signed;

    const HOUR: Duration = Duration::from_secs(3600);

    fn master() -> MasterKey {
        MasterKey::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap()
    }

    fn client(name: &str) -> ClientId {
        ClientId::parse(name).unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    /// Whether a delivery signed with `record` at `now` verifies with the secret a client was shown.
    fn verifies_with(record: &SecretRecord, shown: &str, now: Timestamp) -> bool {
        let signed: Signed = record.signing_secrets(&master(), &client("alpha"), now).sign("msg_1", now, b"{}");
        SigningSecrets::parse(shown).unwrap().verify(&signed, b"{}", now).is_ok()
    }

    #[test]
    fn the_secret_shown_to_a_client_verifies_its_deliveries() {
        let record = SecretRecord::create([1; SALT_LEN]);
        let shown = record.current_secret(&master(), &client("alpha"));
        assert!(shown.starts_with("whsec_"));
        assert!(SigningSecrets::parse(&shown).is_ok(), "a Standard Webhooks secret");
        assert!(verifies_with(&record, &shown, at(10)));
    }

    #[test]
    fn each_client_and_each_salt_has_its_own_secret() {
        let record = SecretRecord::create([1; SALT_LEN]);
        let alpha = record.current_secret(&master(), &client("alpha"));
        assert_ne!(alpha, record.current_secret(&master(), &client("beta")));
        assert_ne!(alpha, SecretRecord::create([2; SALT_LEN]).current_secret(&master(), &client("alpha")));
        assert_eq!(alpha, record.current_secret(&master(), &client("alpha")), "derived, so the same every time");
    }

    #[test]
    fn during_the_grace_period_a_delivery_carries_both_signatures() {
        let old = SecretRecord::create([1; SALT_LEN]);
        let old_secret = old.current_secret(&master(), &client("alpha"));
        let rotated = old.rotate([2; SALT_LEN], at(100), HOUR);
        let new_secret = rotated.current_secret(&master(), &client("alpha"));
        assert_eq!(rotated.current.number, 2);
        assert_eq!(rotated.signing(at(101)).len(), 2);
        let signed = rotated.signing_secrets(&master(), &client("alpha"), at(101)).sign("msg_1", at(101), b"{}");
        assert_eq!(signed.signature.split(' ').count(), 2);
        assert!(verifies_with(&rotated, &old_secret, at(101)), "the old secret still verifies");
        assert!(verifies_with(&rotated, &new_secret, at(101)), "and so does the new one");
    }

    #[test]
    fn after_the_grace_period_only_the_new_secret_signs() {
        let old = SecretRecord::create([1; SALT_LEN]);
        let old_secret = old.current_secret(&master(), &client("alpha"));
        let rotated = old.rotate([2; SALT_LEN], at(100), HOUR);
        let later = at(100 + 3600);
        assert_eq!(rotated.signing(later).len(), 1);
        assert!(!verifies_with(&rotated, &old_secret, later));
        assert!(verifies_with(&rotated, &rotated.current_secret(&master(), &client("alpha")), later));
    }

    #[test]
    fn a_second_rotation_drops_the_oldest_secret_at_once() {
        let first = SecretRecord::create([1; SALT_LEN]);
        let first_secret = first.current_secret(&master(), &client("alpha"));
        let twice = first.rotate([2; SALT_LEN], at(100), HOUR).rotate([3; SALT_LEN], at(200), HOUR);
        assert_eq!(twice.signing(at(201)).iter().map(|v| v.number).collect::<Vec<_>>(), [3, 2]);
        assert!(!verifies_with(&twice, &first_secret, at(201)));
    }

    #[test]
    fn the_master_key_is_a_whsec_secret_and_never_printed() {
        assert!(MasterKey::parse("not-a-secret").is_err());
        assert!(MasterKey::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert_eq!(format!("{:?}", master()), "MasterKey(..)");
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(random_salt().unwrap(), random_salt().unwrap());
    }
}
