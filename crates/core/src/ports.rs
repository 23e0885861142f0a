//! Ports: the small traits through which the domain reaches storage, messaging, metrics and the
//! external service. Adapters implement them; use cases in [`crate::service`] depend on them.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;

use crate::blob::Content;
use crate::completion::client_secret::SecretRecord;
use crate::dispatch::Dispatch;
use crate::error::{ExternalError, MetricsError, PublishError, StoreError};
use crate::lifecycle::Transition;
use crate::metrics::Gauge;
use crate::signing::Signed;
use crate::task::{ClientId, Task, TaskId, TaskStatus};
use crate::time::Timestamp;

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The write applied; the task as it is now.
    Applied(Task),
    /// The task was not in the expected state; the task as it is (None if it does not exist).
    Rejected(Option<Task>),
}

/// An active (RECEIVED or IN_PROGRESS) task that is due, as the status index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTask {
    pub task_id: TaskId,
    pub attempts: u32,
    pub series_start: u32,
    pub due_at: Timestamp,
}

/// "This client's submission with this idempotency key created this task."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub client_id: ClientId,
    /// Digest of the client's key.
    pub key_digest: String,
    /// Digest of the submitted payload: the same key with another payload is a conflict.
    pub request_digest: String,
    pub task_id: TaskId,
    pub created_at: Timestamp,
    /// Epoch seconds; the record lives as long as the task can.
    pub expires_at: i64,
}

/// What a listing shows of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: i64,
}

/// Where a listing goes on: after this task (in newest-first order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub created_at: Timestamp,
    pub task_id: TaskId,
}

/// One page of a client's tasks, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub tasks: Vec<TaskSummary>,
    /// Where the next page starts; None when there is no more.
    pub next: Option<ListPosition>,
}

/// Where tasks live.
pub trait TaskStore: Send + Sync {
    /// Stores a new task and its payload (written once, apart from the task's state, to be
    /// kept until `payload_expires_at`, epoch seconds); fails with [`StoreError::AlreadyExists`]
    /// if the task's id is taken.
    fn insert(
        &self,
        task: &Task,
        payload: &Content,
        payload_expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The task with this id, if it is stored (expired or not).
    fn get(&self, task_id: &TaskId) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send;

    /// The payload the task was submitted with, if it is still stored.
    fn payload(&self, task_id: &TaskId) -> impl Future<Output = Result<Option<Content>, StoreError>> + Send;

    /// Applies a transition as one conditional write: its guards as the condition, its writes
    /// as the update.
    fn apply(&self, transition: &Transition) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Records an idempotency key unless the client used it before; answers the earlier record
    /// if there is one (`None`: the key is now this record's). An earlier record that expired
    /// (`expires_at` at or before `record.created_at`) counts as absent and is replaced, by a
    /// write conditional on it being absent or expired, so racing claims agree on one record.
    fn claim(
        &self,
        record: &IdempotencyRecord,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// How many tasks are in `status` (RECEIVED or IN_PROGRESS) with `due_at` within
    /// [`since`, `until`] (open ends if None).
    fn count(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The earliest `due_at` of the tasks in `status` (RECEIVED or IN_PROGRESS).
    fn earliest_due(&self, status: TaskStatus) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Up to `limit` of `client`'s unexpired tasks (only those in `status`, if given), newest
    /// first, after `after`. A page may hold fewer than `limit` and still have a next one.
    fn list(
        &self,
        client: &ClientId,
        status: Option<TaskStatus>,
        limit: usize,
        after: Option<&ListPosition>,
        now: Timestamp,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// Up to `limit` tasks in `status` (RECEIVED or IN_PROGRESS) due at or before `until`,
    /// earliest first.
    fn due(
        &self,
        status: TaskStatus,
        until: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueTask>, StoreError>> + Send;
}

/// Where timers go (in AWS: the jobs queue, SQS with per-message delays and message groups).
pub trait Publisher: Send + Sync {
    /// Sends each message; the result at index i is the fate of message i.
    fn publish(&self, dispatches: &[Dispatch]) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}

/// Where the fleet-wide hold on new jobs is kept (in AWS: one item of the tasks table), set
/// when the external service asks the fleet to back off (429/503 with `Retry-After`).
pub trait HoldStore: Send + Sync {
    /// Until when new jobs are held, as last recorded (it may have passed).
    fn held_until(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Holds new jobs until `until`, unless a hold that ends later is recorded already.
    fn hold_until(&self, until: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where each client's completion-webhook secret record is kept: a version and a salt, from
/// which the secret is derived (see [`crate::completion::client_secret`]); nothing secret.
pub trait SecretRecords: Send + Sync {
    /// `client`'s record, if it has one.
    fn secret_record(&self, client: &ClientId)
    -> impl Future<Output = Result<Option<SecretRecord>, StoreError>> + Send;

    /// Stores `record` as `client`'s if the stored one still has version `seen` (`None`: if it
    /// has none). `Ok(false)`: another write came first, nothing was stored.
    fn put_secret_record(
        &self,
        client: &ClientId,
        record: &SecretRecord,
        seen: Option<u32>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Where completion webhooks are sent (in AWS: HTTPS POSTs to the clients' URLs).
pub trait WebhookSender: Send + Sync {
    /// POSTs `body` to `url` with the Standard Webhooks headers of `signed`; how it ended.
    fn send(
        &self,
        url: &str,
        signed: &Signed,
        body: Vec<u8>,
    ) -> impl Future<Output = crate::completion::delivery::Outcome> + Send;
}

/// Where the cron's gauges go (in AWS: CloudWatch PutMetricData).
pub trait MetricsSink: Send + Sync {
    fn put(&self, gauges: &[Gauge]) -> impl Future<Output = Result<(), MetricsError>> + Send;
}

impl<T: HoldStore> HoldStore for std::sync::Arc<T> {
    fn held_until(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        T::held_until(self)
    }

    fn hold_until(&self, until: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::hold_until(self, until)
    }
}

/// What the external service receives for one attempt: the body, and the trace context the
/// request carries in its `traceparent` header (not in the body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job<'a> {
    pub task_id: &'a str,
    pub payload: &'a Value,
    pub callback_url: &'a str,
    pub attempt: u32,
    /// The attempt's span in the task's trace (`00-<trace id>-<span id>-01`); none for a task
    /// stored before trace ids were kept.
    #[serde(skip)]
    pub traceparent: Option<&'a str>,
}

/// The service that does the work and later calls the webhook back.
pub trait ExternalService: Send + Sync {
    /// Hands over one job; Ok means the service accepted it and will call back.
    fn submit(&self, job: &Job<'_>) -> impl Future<Output = Result<(), ExternalError>> + Send;
}

/// Something that happened to a task, for the per-event metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskEvent {
    Created,
    /// A task finished; latency from creation in milliseconds, when known.
    Finished {
        status: TaskStatus,
        latency_ms: Option<u64>,
    },
    /// An attempt failed and another will be made.
    Retried,
    /// A job was handed to the external service; `accepted` is whether it took it.
    ExternalCall {
        accepted: bool,
    },
    /// A completion webhook was delivered (its receiver answered 2xx).
    WebhookDelivered,
    /// A completion webhook attempt failed and another will be made.
    WebhookRetried,
    /// A completion webhook attempt failed and it was the last: the delivery is given up.
    WebhookGaveUp,
}

/// Where per-event metrics go (in AWS: Embedded Metric Format log lines). Synchronous and
/// infallible on purpose: recording a metric must never fail or slow a task.
pub trait EventSink: Send + Sync {
    fn record(&self, event: TaskEvent);
}

impl TaskEvent {
    /// The event of a task that just finished.
    pub fn finished(task: &Task) -> Self {
        Self::Finished { status: task.status, latency_ms: Some(task.updated_at.millis_since(task.created_at)) }
    }
}
