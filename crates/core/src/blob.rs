//! Large payloads and results: where they live when they are too large to keep in the task's
//! items cheaply (in AWS: an S3 bucket), and how they are named there.
//!
//! A payload or result whose compact JSON is longer than the inline limit is written once to
//! the blob store; the task keeps only its key. Small ones stay inline, in DynamoDB.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;
use crate::task::TaskId;

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

/// The key of the result attempt `attempt` of a task reported.
pub fn result_key(task_id: &TaskId, attempt: u32) -> String {
    format!("results/{task_id}/{attempt}")
}
