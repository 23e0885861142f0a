//! Large payloads and results: where they live when they are too large to keep in the task's
//! items cheaply (in AWS: an S3 bucket), and how they are named there.
//!
//! A payload or result whose compact JSON is longer than the inline limit is written once to
//! the blob store; the task keeps only its key. Small ones stay inline, in DynamoDB.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::error::StoreError;
use crate::task::TaskId;

/// A payload or result as a task holds it: inline JSON, or the key of the blob that holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Inline(Value),
    Stored { key: String },
}

/// Payloads and results whose compact JSON is longer than this (by default) are kept in the
/// blob store: above ~8 KiB one S3 PUT ($5 per million) costs less than the DynamoDB write
/// units of writing the same bytes once ($0.625 per million per KiB).
pub const DEFAULT_INLINE_MAX_BYTES: usize = 8 * 1024;
/// The largest inline limit a deployment may set: a task item must stay under DynamoDB's 400 KB
/// with an inline result, the error, the kept history and tokens. At this limit the worst case
/// measures ~286 KB (`the_largest_task_item_stays_under_dynamodbs_item_limit`, adapters).
pub const MAX_INLINE_MAX_BYTES: usize = 256 * 1024;

/// Where large, write-once objects are kept.
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key` (overwriting: keys are never reused for other content).
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The object under `key`; `None` if there is none (never stored, or expired).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// A URL that lets whoever holds it GET the object under `key` for `valid_for`, without
    /// credentials of their own.
    fn presign_get(&self, key: &str, valid_for: Duration) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// The key of a task's payload.
pub fn payload_key(task_id: &TaskId) -> String {
    format!("payloads/{task_id}")
}

/// The key of a result that attempt `attempt` of a task reported, `digest` being the digest of
/// its bytes: a second, different report for the same attempt cannot overwrite the first.
pub fn result_key(task_id: &TaskId, attempt: u32, digest: &str) -> String {
    format!("results/{task_id}/{attempt}/{}", &digest[..digest.len().min(16)])
}

/// The blob store with the size above which payloads and results go to it.
#[derive(Debug, Clone)]
pub struct Blobs<B> {
    pub store: B,
    /// Compact JSON longer than this many bytes is kept in the blob store.
    pub inline_max: usize,
}

impl<B: BlobStore> Blobs<B> {
    pub fn new(store: B, inline_max: usize) -> Self {
        Self { store, inline_max }
    }

    /// Keeps `value` inline if its compact JSON is at most `inline_max` bytes; otherwise stores
    /// it under `key(digest of its bytes)` and answers the reference.
    pub async fn keep(&self, value: Value, key: impl FnOnce(&str) -> String) -> Result<Content, StoreError> {
        let (content, upload) = self.reference(value, key);
        if let Some((key, bytes)) = upload {
            self.store.put(&key, bytes).await?;
        }
        Ok(content)
    }

    /// How `value` is to be kept, without writing anything yet: inline, or a reference and the
    /// upload (key and bytes) it takes.
    pub fn reference(&self, value: Value, key: impl FnOnce(&str) -> String) -> (Content, Option<(String, Vec<u8>)>) {
        let bytes = value.to_string().into_bytes();
        if bytes.len() <= self.inline_max {
            return (Content::Inline(value), None);
        }
        let key = key(&crate::token::digest_bytes(&bytes));
        (Content::Stored { key: key.clone() }, Some((key, bytes)))
    }

    /// The JSON a [`Content`] holds, read from the blob store if it is stored there. `None`
    /// when the blob is gone.
    pub async fn load(&self, content: &Content) -> Result<Option<Value>, StoreError> {
        match content {
            Content::Inline(value) => Ok(Some(value.clone())),
            Content::Stored { key } => match self.store.get(key).await? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(format!("blob {key}: {e}"))),
                None => Ok(None),
            },
        }
    }
}
