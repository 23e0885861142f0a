//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, sent as `webhook-signature: v1,<base64>`. Secrets
//! are `whsec_<base64>`; several may be configured at once so a secret can be rotated: the
//! fleet signs with every configured secret and accepts a signature made with any of them.
//! Timestamps more than five minutes away from now are refused, so a captured request cannot
//! be replayed later, and a replay within the window with another body does not verify.
//!
//! Verifying costs one HMAC per configured secret, whatever the request carries: the MAC of the
//! message is computed once per secret and compared, in constant time, with each `v1` candidate
//! of the header, of which at most [`MAX_SIGNATURES`] are accepted (more: refused unread).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::time::Timestamp;

/// Header names.
pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// How far a signed timestamp may be from now.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Most space-separated entries a `webhook-signature` header may hold (one per secret the
/// sender signs with; a rotation needs two). A header with more is refused before any MAC.
pub const MAX_SIGNATURES: usize = 10;

/// Length of the base64 of an HMAC-SHA256 tag.
const ENCODED_TAG_LEN: usize = 44;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("secret {0} does not start with whsec_")]
    Prefix(usize),
    #[error("secret {0} is not base64 of at least 24 bytes")]
    Key(usize),
    #[error("no secret given")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the webhook-id, webhook-timestamp and webhook-signature headers are required")]
    Missing,
    #[error("the webhook-timestamp is not within five minutes of now")]
    Stale,
    #[error("no webhook-signature matches")]
    Mismatch,
    #[error("the webhook-signature header holds more than {MAX_SIGNATURES} signatures")]
    TooMany,
}

/// The configured signing secrets, newest first. Never printed.
#[derive(Clone)]
pub struct SigningSecrets(Vec<Vec<u8>>);

impl std::fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecrets({} secrets)", self.0.len())
    }
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

impl SigningSecrets {
    /// Parses `whsec_…` secrets separated by commas or spaces.
    pub fn parse(spec: &str) -> Result<Self, SecretError> {
        let mut keys = Vec::new();
        for (index, secret) in spec.split([',', ' ']).filter(|s| !s.is_empty()).enumerate() {
            let encoded = secret.strip_prefix("whsec_").ok_or(SecretError::Prefix(index + 1))?;
            let key = STANDARD.decode(encoded).ok().filter(|k| k.len() >= 24).ok_or(SecretError::Key(index + 1))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(keys))
    }

    /// From raw keys, newest first (secrets derived elsewhere, see `completion::client_secret`).
    pub fn from_keys(keys: Vec<Vec<u8>>) -> Result<Self, SecretError> {
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(keys))
    }

    fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        #[cfg(test)]
        tests::MACS.with(|count| count.set(count.get() + 1));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The headers for sending `body` as message `id` at `now`.
    pub fn sign(&self, id: &str, now: Timestamp, body: &[u8]) -> Signed {
        let timestamp = now.as_epoch_seconds().to_string();
        let signature = self
            .0
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(Self::mac(key, id, &timestamp, body).finalize().into_bytes())))
            .collect::<Vec<_>>()
            .join(" ");
        Signed { id: id.to_owned(), timestamp, signature }
    }

    /// Checks a received request: fresh timestamp, and a `v1` signature made with one of the
    /// secrets over exactly this body. One MAC per secret, compared with every candidate.
    pub fn verify(&self, signed: &Signed, body: &[u8], now: Timestamp) -> Result<(), SignatureError> {
        let sent = signed.timestamp.parse::<i64>().map_err(|_| SignatureError::Stale)?;
        if (now.as_epoch_seconds() - sent).abs() > TOLERANCE_SECONDS {
            return Err(SignatureError::Stale);
        }
        let mut candidates = Vec::with_capacity(MAX_SIGNATURES);
        for (index, entry) in signed.signature.split(' ').filter(|s| !s.is_empty()).enumerate() {
            if index == MAX_SIGNATURES {
                return Err(SignatureError::TooMany);
            }
            // Other versions, and anything that cannot be a SHA-256 tag, match nothing.
            let tag = entry
                .strip_prefix("v1,")
                .filter(|encoded| encoded.len() == ENCODED_TAG_LEN)
                .and_then(|encoded| STANDARD.decode(encoded).ok());
            candidates.extend(tag);
        }
        if candidates.is_empty() {
            return Err(SignatureError::Mismatch);
        }
        let mut matches = subtle::Choice::from(0);
        for key in &self.0 {
            let expected = Self::mac(key, &signed.id, &signed.timestamp, body).finalize().into_bytes();
            for candidate in &candidates {
                matches |= expected.as_slice().ct_eq(candidate);
            }
        }
        if bool::from(matches) { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// MACs computed on this thread (each test runs on its own).
        pub(super) static MACS: Cell<usize> = const { Cell::new(0) };
    }

    /// How many MACs `f` computes.
    fn macs_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = MACS.with(Cell::get);
        let answer = f();
        (answer, MACS.with(Cell::get) - before)
    }

    // The example from the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn secret(byte: u8) -> String {
        format!("whsec_{}", STANDARD.encode([byte; 32]))
    }

    #[test]
    fn signatures_match_the_specifications_example() {
        let secrets = SigningSecrets::parse(SPEC_SECRET).unwrap();
        let signed = secrets.sign(SPEC_ID, at(SPEC_TIMESTAMP), SPEC_BODY);
        assert_eq!(signed.signature, SPEC_SIGNATURE);
        assert_eq!(signed.timestamp, SPEC_TIMESTAMP.to_string());
        assert_eq!(secrets.verify(&signed, SPEC_BODY, at(SPEC_TIMESTAMP + 10)), Ok(()));
    }

    #[test]
    fn another_body_or_id_does_not_verify() {
        let secrets = SigningSecrets::parse(&secret(1)).unwrap();
        let signed = secrets.sign("msg_1", at(1_000), b"{}");
        assert_eq!(secrets.verify(&signed, b"{ }", at(1_000)), Err(SignatureError::Mismatch));
        let other_id = Signed { id: "msg_2".into(), ..signed.clone() };
        assert_eq!(secrets.verify(&other_id, b"{}", at(1_000)), Err(SignatureError::Mismatch));
        let garbage = Signed { signature: "v1,@@@ v2,abc".into(), ..signed };
        assert_eq!(secrets.verify(&garbage, b"{}", at(1_000)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamps_outside_five_minutes_are_stale() {
        let secrets = SigningSecrets::parse(&secret(1)).unwrap();
        let signed = secrets.sign("msg_1", at(1_000), b"{}");
        assert_eq!(secrets.verify(&signed, b"{}", at(1_300)), Ok(()));
        assert_eq!(secrets.verify(&signed, b"{}", at(1_301)), Err(SignatureError::Stale));
        assert_eq!(secrets.verify(&signed, b"{}", at(699)), Err(SignatureError::Stale));
        let nonsense = Signed { timestamp: "soon".into(), ..signed };
        assert_eq!(secrets.verify(&nonsense, b"{}", at(1_000)), Err(SignatureError::Stale));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_either_verifies() {
        let old = SigningSecrets::parse(&secret(1)).unwrap();
        let new = SigningSecrets::parse(&secret(2)).unwrap();
        let both = SigningSecrets::parse(&format!("{}, {}", secret(2), secret(1))).unwrap();
        let by_old = old.sign("m", at(1_000), b"x");
        assert_eq!(both.verify(&by_old, b"x", at(1_000)), Ok(()));
        let by_both = both.sign("m", at(1_000), b"x");
        assert_eq!(by_both.signature.split(' ').count(), 2);
        assert_eq!(old.verify(&by_both, b"x", at(1_000)), Ok(()));
        assert_eq!(new.verify(&by_both, b"x", at(1_000)), Ok(()));
        assert_eq!(new.verify(&by_old, b"x", at(1_000)), Err(SignatureError::Mismatch));
    }

    /// `count` well-formed `v1` signatures that match nothing.
    fn decoys(count: usize) -> Vec<String> {
        (0..count).map(|n| format!("v1,{}", STANDARD.encode([n as u8; 32]))).collect()
    }

    #[test]
    fn verifying_costs_one_mac_per_secret_whatever_the_header_holds() {
        let three = SigningSecrets::parse(&format!("{} {} {}", secret(3), secret(2), secret(1))).unwrap();
        let by_oldest = SigningSecrets::parse(&secret(1)).unwrap().sign("m", at(1_000), b"body");
        let many = Signed { signature: decoys(MAX_SIGNATURES).join(" "), ..by_oldest.clone() };
        let (answer, macs) = macs_of(|| three.verify(&many, b"body", at(1_000)));
        assert_eq!((answer, macs), (Err(SignatureError::Mismatch), 3));

        // The right signature last among the most entries allowed still verifies, at the same cost.
        let mut entries = decoys(MAX_SIGNATURES - 1);
        entries.push(by_oldest.signature.clone());
        let last = Signed { signature: entries.join(" "), ..by_oldest.clone() };
        assert_eq!(macs_of(|| three.verify(&last, b"body", at(1_000))), (Ok(()), 3));
    }

    #[test]
    fn a_header_with_too_many_signatures_is_refused_before_any_mac() {
        let secrets = SigningSecrets::parse(&secret(1)).unwrap();
        let signed = secrets.sign("m", at(1_000), b"body");
        let mut entries = decoys(MAX_SIGNATURES);
        entries.push(signed.signature.clone());
        let crowded = Signed { signature: entries.join(" "), ..signed.clone() };
        assert_eq!(macs_of(|| secrets.verify(&crowded, b"body", at(1_000))), (Err(SignatureError::TooMany), 0));
        // Neither are signatures of other versions or malformed entries counted for free.
        let junk = Signed { signature: ["v2,abc"; MAX_SIGNATURES + 1].join(" "), ..signed };
        assert_eq!(macs_of(|| secrets.verify(&junk, b"body", at(1_000))), (Err(SignatureError::TooMany), 0));
    }

    #[test]
    fn a_header_without_a_v1_signature_costs_no_mac() {
        let secrets = SigningSecrets::parse(&secret(1)).unwrap();
        let signed = secrets.sign("m", at(1_000), b"body");
        for header in ["", "   ", "v1,", "v1,@@@", "v1a,abc v2,def", &format!("v1,{}", "A".repeat(4_000))] {
            let odd = Signed { signature: header.to_owned(), ..signed.clone() };
            assert_eq!(
                macs_of(|| secrets.verify(&odd, b"body", at(1_000))),
                (Err(SignatureError::Mismatch), 0),
                "{header}"
            );
        }
    }

    #[test]
    fn bad_secrets_are_refused_and_never_printed() {
        assert_eq!(SigningSecrets::parse("").unwrap_err(), SecretError::Empty);
        assert_eq!(SigningSecrets::parse("abc").unwrap_err(), SecretError::Prefix(1));
        assert_eq!(SigningSecrets::parse(&format!("{},whsec_!!", secret(1))).unwrap_err(), SecretError::Key(2));
        assert_eq!(SigningSecrets::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::Key(1));
        let secrets = SigningSecrets::parse(&secret(7)).unwrap();
        assert_eq!(format!("{secrets:?}"), "SigningSecrets(1 secrets)");
    }
}
