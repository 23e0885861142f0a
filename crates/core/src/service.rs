//! Use cases: what each function does, written against the ports. Handlers parse an event,
//! call one of these, and turn the answer into a response.

use serde_json::Value;

use crate::error::{ExternalError, StoreError};
use crate::lifecycle::{Outcome, Transition};
use crate::metrics::{self, Gauge, Unit};
use crate::ports::{ExternalService, Job, TaskStore, WriteOutcome};
use crate::task::{ClientId, Task, TaskId, TaskStatus};
use crate::time::Timestamp;
use crate::ttl::TtlPolicy;

/// Ingest: stores a new RECEIVED task for `client`.
pub async fn submit(
    store: &impl TaskStore,
    client: &ClientId,
    payload: Value,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<Task, StoreError> {
    let task = Task::received(client.clone(), payload, now, ttl.new_task_expiry(now));
    store.insert(&task).await?;
    Ok(task)
}

/// Status: the task if it exists, belongs to `client` and has not expired. Another client's task
/// and an expired task look exactly like a missing one.
pub async fn task_for_client(
    store: &impl TaskStore,
    client: &ClientId,
    task_id: &TaskId,
    now: Timestamp,
) -> Result<Option<Task>, StoreError> {
    Ok(store.get(task_id).await?.filter(|task| &task.client_id == client && !task.is_expired(now)))
}

/// What became of one dispatch message.
#[derive(Debug, Clone, PartialEq)]
pub enum HandOver {
    /// The external service accepted the attempt.
    Accepted { attempt: u32 },
    /// The attempt was already started (a repeated message), or the task moved on: nothing done.
    Skipped,
    /// The task no longer exists (expired or deleted): nothing to do.
    Missing,
    /// The external service refused; the task is now FAILED with the reason.
    Refused { error: ExternalError },
}

/// Caller: starts attempt `message.attempt` (a conditional write, so a repeated message is a
/// no-op) and hands the job to the external service. A refusal fails the task.
pub async fn hand_over(
    store: &impl TaskStore,
    service: &impl ExternalService,
    task_id: &TaskId,
    attempt: u32,
    callback_base: &str,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<HandOver, StoreError> {
    let task = match store.apply(&Transition::start(task_id, attempt, now)).await? {
        WriteOutcome::Applied(task) => task,
        WriteOutcome::Rejected(None) => return Ok(HandOver::Missing),
        WriteOutcome::Rejected(Some(_)) => return Ok(HandOver::Skipped),
    };
    let callback_url = callback_url(callback_base, task_id);
    let job = Job { task_id: task_id.as_str(), payload: &task.payload, callback_url: &callback_url, attempt };
    match service.submit(&job).await {
        Ok(()) => Ok(HandOver::Accepted { attempt }),
        Err(error) => {
            let reason = format!("external service refused attempt {attempt}: {error}");
            let fail = Transition::fail(task_id, TaskStatus::InProgress, reason, Timestamp::now().max(now), ttl)
                .unwrap_or_else(|_| unreachable!("IN_PROGRESS → FAILED is a legal transition"))
                .for_attempt(attempt);
            store.apply(&fail).await?;
            Ok(HandOver::Refused { error })
        }
    }
}

/// The URL the external service calls back for `task_id`.
pub fn callback_url(base: &str, task_id: &TaskId) -> String {
    format!("{}/callbacks/{}", base.trim_end_matches('/'), task_id)
}

/// What a callback did.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackResult {
    /// The outcome was recorded: the task is now DONE or FAILED.
    Recorded(Task),
    /// The same outcome was recorded before: nothing changed.
    Repeated(Task),
    /// The task is in a state this callback cannot apply to (e.g. already finished otherwise).
    Conflict(Task),
    /// No such task (or it expired).
    Missing,
}

/// Webhook: records how the task's attempt ended, once.
pub async fn record_outcome(
    store: &impl TaskStore,
    task_id: &TaskId,
    outcome: Outcome,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<CallbackResult, StoreError> {
    let transition = Transition::finish(task_id, outcome.clone(), now, ttl);
    Ok(match store.apply(&transition).await? {
        WriteOutcome::Applied(task) => CallbackResult::Recorded(task),
        WriteOutcome::Rejected(Some(current)) if !current.is_expired(now) => {
            if already_recorded(&current, &outcome) {
                CallbackResult::Repeated(current)
            } else {
                CallbackResult::Conflict(current)
            }
        }
        WriteOutcome::Rejected(_) => CallbackResult::Missing,
    })
}

fn already_recorded(task: &Task, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Succeeded { result } => task.status == TaskStatus::Done && task.result.as_ref() == Some(result),
        Outcome::Failed { error } => task.status == TaskStatus::Failed && task.error.as_deref() == Some(error),
    }
}

/// Metrics cron: the fleet's gauges. Reads only active tasks and tasks finished within the
/// trailing `window_seconds`, so its cost does not grow with the number of stored tasks.
pub async fn gauges(store: &impl TaskStore, now: Timestamp, window_seconds: u64) -> Result<Vec<Gauge>, StoreError> {
    let window_start =
        Timestamp::from_millis(now.as_millis().saturating_sub(window_seconds.saturating_mul(1000) as i64));
    let mut gauges = Vec::with_capacity(5);
    for status in [TaskStatus::Received, TaskStatus::InProgress] {
        let count = store.count(status, None).await?;
        gauges.push(Gauge {
            name: metrics::TASKS_ACTIVE,
            status: Some(status),
            value: count as f64,
            unit: Unit::Count,
        });
    }
    for status in [TaskStatus::Done, TaskStatus::Failed] {
        let count = store.count(status, Some(window_start)).await?;
        gauges.push(Gauge {
            name: metrics::TASKS_FINISHED,
            status: Some(status),
            value: count as f64,
            unit: Unit::Count,
        });
    }
    let oldest = store.oldest_update(TaskStatus::Received).await?;
    let age_seconds = oldest.map_or(0.0, |since| now.millis_since(since) as f64 / 1000.0);
    gauges.push(Gauge { name: metrics::OLDEST_RECEIVED_AGE, status: None, value: age_seconds, unit: Unit::Seconds });
    Ok(gauges)
}

#[cfg(test)]
mod tests;
