//! Callback tokens: an unguessable secret per attempt, carried in the callback URL (like a Step
//! Functions task token). Only its SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("no randomness available for a secret: {0}")]
pub struct TokenError(String);

impl TokenError {
    pub fn new(reason: String) -> Self {
        Self(reason)
    }
}

/// A fresh token: 256 random bits, base64url. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackToken(String);

impl std::fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackToken(…)")
    }
}

impl CallbackToken {
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError(e.to_string()))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret, to put in the callback URL.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What storage keeps.
    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

/// The stored form of a presented token.
pub fn digest(token: &str) -> String {
    digest_bytes(token.as_bytes())
}

/// SHA-256 of `bytes`, base64url without padding (safe in keys and URLs).
pub fn digest_bytes(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Tokens are base64url of 32 bytes: anything else is not one of ours (checked before hashing,
/// so absurd input is refused cheaply).
pub fn is_well_formed(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hidden_from_debug_output() {
        let a = CallbackToken::generate().unwrap();
        let b = CallbackToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(is_well_formed(a.expose()));
        assert_eq!(format!("{a:?}"), "CallbackToken(…)");
    }

    #[test]
    fn the_digest_is_what_a_presented_token_hashes_to() {
        let token = CallbackToken::generate().unwrap();
        assert_eq!(token.digest(), digest(token.expose()));
        assert_ne!(token.digest(), token.expose());
        assert_ne!(digest("a"), digest("b"));
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        assert!(!is_well_formed(""));
        assert!(!is_well_formed(&"a".repeat(44)));
        assert!(!is_well_formed(&format!("{}=", "a".repeat(42))));
        assert!(is_well_formed(&"a".repeat(43)));
    }
}
