//! An in-memory [`BlobStore`] for unit tests of use cases and handlers. The S3 adapter is tested
//! against the emulator, not this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::blob::BlobStore;
use crate::error::StoreError;

#[derive(Debug, Default)]
pub struct MemoryBlobs(Mutex<HashMap<String, Vec<u8>>>);

impl MemoryBlobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys stored so far, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned())
    }

    async fn presign_get(&self, key: &str, valid_for: Duration) -> Result<String, StoreError> {
        Ok(format!("memory://blobs/{key}?expires_in={}", valid_for.as_secs()))
    }
}
