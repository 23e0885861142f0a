//! `POST /webhook-secret`: creates the calling client's completion-webhook secret, or rotates
//! it (the previous one keeps signing for the grace period), and answers it — the only time it
//! is shown. Two rotations at once: one wins, the other is told to try again.

use std::time::Duration;

use thiserror::Error;

use super::client_secret::{MasterKey, NoEntropy, SecretRecord, random_salt};
use crate::error::StoreError;
use crate::ports::SecretRecords;
use crate::task::ClientId;
use crate::time::Timestamp;

#[derive(Debug, Error)]
pub enum RotateError {
    #[error("another rotation of this client's secret came first; try again")]
    Conflict,
    #[error(transparent)]
    Entropy(#[from] NoEntropy),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A secret just created or rotated: what the client is shown, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSecret {
    /// `whsec_…`.
    pub secret: String,
    pub version: u32,
    /// Until when the previous secret keeps signing, after a rotation.
    pub previous_until: Option<Timestamp>,
}

/// Creates `client`'s secret, or rotates it at `now` with the previous one signing for `grace`.
pub async fn rotate(
    records: &impl SecretRecords,
    master: &MasterKey,
    client: &ClientId,
    now: Timestamp,
    grace: Duration,
) -> Result<IssuedSecret, RotateError> {
    let current = records.secret_record(client).await?;
    let salt = random_salt()?;
    let next = match &current {
        None => SecretRecord::create(salt),
        Some(record) => record.rotate(salt, now, grace),
    };
    let seen = current.as_ref().map(|record| record.current.number);
    if !records.put_secret_record(client, &next, seen).await? {
        return Err(RotateError::Conflict);
    }
    Ok(IssuedSecret {
        secret: next.current_secret(master, client),
        version: next.current.number,
        previous_until: next.previous.as_ref().map(|(_, until)| *until),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::signing::SigningSecrets;

    fn master() -> MasterKey {
        MasterKey::parse(&format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([9u8; 32]))).unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[tokio::test]
    async fn the_first_call_creates_a_secret_and_the_next_rotates_it_keeping_the_old_one_for_the_grace() {
        let store = MemoryStore::new();
        let alpha = ClientId::parse("alpha").unwrap();
        let first = rotate(&store, &master(), &alpha, at(100), DAY).await.unwrap();
        assert_eq!((first.version, first.previous_until), (1, None));
        assert!(SigningSecrets::parse(&first.secret).is_ok());
        let second = rotate(&store, &master(), &alpha, at(200), DAY).await.unwrap();
        assert_eq!((second.version, second.previous_until), (2, Some(at(200 + 86_400))));
        assert_ne!(first.secret, second.secret);
        let stored = store.secret_record(&alpha).await.unwrap().unwrap();
        assert_eq!(stored.signing(at(201)).len(), 2, "both sign during the grace period");
    }

    #[tokio::test]
    async fn each_client_has_its_own_secret() {
        let store = MemoryStore::new();
        let a = rotate(&store, &master(), &ClientId::parse("alpha").unwrap(), at(1), DAY).await.unwrap();
        let b = rotate(&store, &master(), &ClientId::parse("beta").unwrap(), at(1), DAY).await.unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(b.version, 1);
    }

    #[tokio::test]
    async fn a_rotation_that_loses_a_race_stores_nothing_and_says_so() {
        let store = MemoryStore::new();
        let alpha = ClientId::parse("alpha").unwrap();
        rotate(&store, &master(), &alpha, at(1), DAY).await.unwrap();
        let stored = store.secret_record(&alpha).await.unwrap().unwrap();
        // Another rotation stores version 2 between this one's read and its write.
        assert!(store.put_secret_record(&alpha, &stored.rotate([7; 16], at(2), DAY), Some(1)).await.unwrap());
        assert!(!store.put_secret_record(&alpha, &stored.rotate([8; 16], at(2), DAY), Some(1)).await.unwrap());
        assert_eq!(store.secret_record(&alpha).await.unwrap().unwrap().current.salt, [7; 16]);
    }
}
