//! One attempt to deliver a task's completion webhook, as its timer asks.
//!
//! The task must still wait for exactly that attempt ([`due_attempt`]): a timer delivered twice,
//! or one for a delivery that was recorded, replayed or that expired, sends nothing. The body
//! is the task as `GET /tasks/{id}` shows it (the caller renders it), signed with every secret
//! of the client's in force (two during a rotation's grace period), under the same
//! `webhook-id` for every attempt. The attempt is then recorded in one conditional write
//! ([`crate::lifecycle::Transition::deliver`]): its history entry, and the next attempt's due
//! time, which sets its timer.

use serde_json::Value;

use super::client_secret::MasterKey;
use super::delivery::{Delivery, Outcome};
use super::envelope;
use super::schedule::DeliverySchedule;
use crate::error::StoreError;
use crate::lifecycle::Transition;
use crate::ports::{SecretRecords, TaskStore, WebhookSender, WriteOutcome};
use crate::task::{Task, TaskId};
use crate::time::Timestamp;
use crate::ttl::TtlPolicy;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not (`reason`); the next attempt is due at `next_at`.
    Retrying { reason: String, next_at: Timestamp },
    /// It did not, and that was the last attempt.
    GaveUp { reason: String },
    /// Another write recorded this attempt or moved the task on first: nothing recorded.
    Superseded,
}

/// What every attempt needs besides the task.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub master: &'a MasterKey,
    pub schedule: &'a DeliverySchedule,
    pub ttl: &'a TtlPolicy,
}

/// The task whose delivery waits for attempt `attempt`, and that delivery; `None` if the task
/// is gone or expired, or waits for another attempt or none.
pub async fn due_attempt(
    store: &impl TaskStore,
    task_id: &TaskId,
    attempt: u32,
    now: Timestamp,
) -> Result<Option<(Task, Delivery)>, StoreError> {
    let Some(task) = store.get(task_id).await?.filter(|task| !task.is_expired(now)) else { return Ok(None) };
    let Some(delivery) = task.delivery() else { return Ok(None) };
    if delivery.next_attempt().map(|(next, _)| next) != Some(attempt) {
        return Ok(None);
    }
    Ok(Some((task, delivery)))
}

/// Sends `view` of `task` (ended, its delivery `delivery` waiting for its next attempt) and
/// records the attempt.
pub async fn send_and_record(
    store: &impl TaskStore,
    records: &impl SecretRecords,
    sender: &impl WebhookSender,
    (task, delivery): (&Task, &Delivery),
    view: Value,
    settings: Settings<'_>,
) -> Result<Attempted, StoreError> {
    let (Some(url), Some(event), Some((attempt, _))) =
        (task.webhook_url.as_deref(), envelope::event_type(task.status), delivery.next_attempt())
    else {
        return Ok(Attempted::Superseded);
    };
    let outcome = match records.secret_record(&task.client_id).await? {
        Some(record) => {
            let now = Timestamp::now();
            let body = envelope::body(event, view, now);
            let signed = record.signing_secrets(settings.master, &task.client_id, now).sign(
                &envelope::message_id(&task.task_id),
                now,
                &body,
            );
            sender.send(url, &signed, body).await
        }
        // The API refuses a webhook before the client has a secret; a record lost since cannot
        // sign, and counts as a failed attempt.
        None => Outcome::Failed("the client has no webhook secret (POST /webhook-secret)".into()),
    };
    record(store, task, delivery, attempt, &outcome, settings).await
}

async fn record(
    store: &impl TaskStore,
    task: &Task,
    delivery: &Delivery,
    attempt: u32,
    outcome: &Outcome,
    settings: Settings<'_>,
) -> Result<Attempted, StoreError> {
    let ended = Timestamp::now();
    let Ok(next) = delivery.after(attempt, outcome, ended, settings.schedule) else {
        return Ok(Attempted::Superseded);
    };
    let (note, attempted) = match (outcome, next.next_at) {
        (Outcome::Delivered, _) => (format!("webhook delivered (attempt {attempt})"), Attempted::Delivered),
        (Outcome::Failed(reason), Some(next_at)) => (
            format!("webhook attempt {attempt} failed: {reason}; next at {}", next_at.to_rfc3339()),
            Attempted::Retrying { reason: reason.clone(), next_at },
        ),
        (Outcome::Failed(reason), None) => (
            format!("webhook attempt {attempt} failed: {reason}; given up"),
            Attempted::GaveUp { reason: reason.clone() },
        ),
    };
    match store.apply(&Transition::deliver(task, next, note, ended, settings.ttl)).await? {
        WriteOutcome::Applied(_) => Ok(attempted),
        WriteOutcome::Rejected(_) => Ok(Attempted::Superseded),
    }
}

#[cfg(test)]
mod tests;
