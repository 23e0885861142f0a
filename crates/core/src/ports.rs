//! Ports: the small traits through which the domain reaches storage, messaging, metrics and the
//! external service. Adapters implement them; use cases in [`crate::service`] depend on them.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;

use crate::dispatch::DispatchMessage;
use crate::error::{ExternalError, MetricsError, PublishError, StoreError};
use crate::lifecycle::Transition;
use crate::metrics::Gauge;
use crate::task::{Task, TaskId, TaskStatus};
use crate::time::Timestamp;

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The write applied; the task as it is now.
    Applied(Task),
    /// The task was not in the expected state; the task as it is (None if it does not exist).
    Rejected(Option<Task>),
}

/// Where tasks live.
pub trait TaskStore: Send + Sync {
    /// Stores a new task; fails with [`StoreError::AlreadyExists`] if its id is taken.
    fn insert(&self, task: &Task) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The task with this id, if it is stored (expired or not).
    fn get(&self, task_id: &TaskId) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send;

    /// Applies a transition as one conditional write.
    fn apply(&self, transition: &Transition) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// How many tasks are in `status`, counting only those updated at or after `since` if given.
    fn count(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// When the task that has been in `status` the longest got there.
    fn oldest_update(&self, status: TaskStatus) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
}

/// Where dispatch messages go (in AWS: an SNS topic).
pub trait Publisher: Send + Sync {
    /// Publishes each message; the result at index i is the fate of message i.
    fn publish(&self, messages: &[DispatchMessage]) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}

/// Where the cron's gauges go (in AWS: CloudWatch PutMetricData).
pub trait MetricsSink: Send + Sync {
    fn put(&self, gauges: &[Gauge]) -> impl Future<Output = Result<(), MetricsError>> + Send;
}

/// What the external service receives for one attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job<'a> {
    pub task_id: &'a str,
    pub payload: &'a Value,
    pub callback_url: &'a str,
    pub attempt: u32,
}

/// The service that does the work and later calls the webhook back.
pub trait ExternalService: Send + Sync {
    /// Hands over one job; Ok means the service accepted it and will call back.
    fn submit(&self, job: &Job<'_>) -> impl Future<Output = Result<(), ExternalError>> + Send;
}
