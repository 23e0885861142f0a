//! Timers: what the dispatcher schedules for each stored change, and what the message says.
//!
//! Every change that leaves a task active schedules one message on the jobs queue, due when the
//! task is next due:
//! - RECEIVED (new, retried, replayed): [`Step::Start`] the next attempt at `due_at` — at once
//!   for a new task, at the end of its backoff for a retry;
//! - IN_PROGRESS (an attempt started, or a heartbeat moved its deadline): [`Step::Deadline`],
//!   check at `due_at` whether the attempt's callback came;
//! - DONE or FAILED with a completion webhook pending (the task just ended, or an attempt to
//!   deliver it failed): [`Step::Deliver`] its next attempt when it is due. These go to the
//!   deliveries queue, so that a receiver that is down never delays a task.
//!
//! A message is delivered no earlier than [`Dispatch::delay_seconds`] allow (the queue's
//! per-message delay, at most [`MAX_DELAY_SECONDS`]); one due later than that is sent on again
//! when it arrives. Whatever a message asks is guarded by the task's state: a message for an
//! attempt that was superseded (finished, cancelled, replayed, its deadline moved) changes
//! nothing, so cancel and replay need not find and defuse pending timers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::task::{TaskId, TaskStatus};
use crate::time::Timestamp;

/// The part of a stored task the dispatcher looks at, read from a stream image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub status: TaskStatus,
    pub attempts: u32,
    pub due_at: Timestamp,
    /// Whose task: the message group, so that one client's burst does not delay the others.
    pub client_id: String,
    /// The completion webhook's next attempt and when it is due, if one is pending.
    pub delivery: Option<(u32, Timestamp)>,
}

/// The longest per-message delay the queue takes (SQS: 900 s).
pub const MAX_DELAY_SECONDS: u32 = 900;

/// How early a message may arrive and still be acted on, after waiting out the rest: delays are
/// whole seconds, rounded down, so a message arrives up to a second before its time.
pub const EARLY_WAIT: Duration = Duration::from_secs(1);

/// What a message asks for when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Start attempt `attempt` (the task is RECEIVED with `attempt − 1` attempts).
    Start,
    /// Attempt `attempt`'s callback was due by `due_at`: time it out unless it came or a
    /// heartbeat moved the deadline.
    Deadline,
    /// Make attempt `attempt` to deliver the task's completion webhook.
    Deliver,
}

impl Step {
    /// Whether the message goes to the deliveries queue (else the jobs queue).
    pub fn is_delivery(self) -> bool {
        self == Self::Deliver
    }
}

/// The message body: "at `due_at`, do `step` for attempt `attempt` of task `task_id`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchMessage {
    pub task_id: String,
    pub attempt: u32,
    pub step: Step,
    /// Milliseconds since the epoch.
    pub due_at: i64,
}

/// A message read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub task_id: TaskId,
    pub attempt: u32,
    pub step: Step,
    pub due_at: Timestamp,
}

impl DispatchMessage {
    /// Reads a message body back.
    pub fn parse(body: &str) -> Result<Timer, ValidationError> {
        let message: DispatchMessage =
            serde_json::from_str(body).map_err(|e| ValidationError::Schema(crate::validation::describe(&e)))?;
        if message.attempt == 0 {
            return Err(ValidationError::Schema("`attempt` starts at 1".into()));
        }
        Ok(Timer {
            task_id: TaskId::parse(&message.task_id)?,
            attempt: message.attempt,
            step: message.step,
            due_at: Timestamp::from_millis(message.due_at),
        })
    }
}

/// What to do with a message that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// It is due: act now.
    Now,
    /// Due within [`EARLY_WAIT`]: wait this long, then act.
    After(Duration),
    /// Due later than that (a wait longer than the queue's delay): send it on.
    SendOn,
}

impl Timer {
    /// What to do with this timer when it arrives at `now`.
    pub fn when(&self, now: Timestamp) -> When {
        let early = self.due_at.as_millis().saturating_sub(now.as_millis());
        match u64::try_from(early) {
            Ok(0) | Err(_) => When::Now,
            Ok(millis) if millis <= EARLY_WAIT.as_millis() as u64 => When::After(Duration::from_millis(millis)),
            Ok(_) => When::SendOn,
        }
    }

    /// The message that asks for this timer again, due at `due_at` (sent on when it arrived
    /// too early, or while the fleet holds new jobs).
    pub fn message(&self, due_at: Timestamp) -> DispatchMessage {
        DispatchMessage {
            task_id: self.task_id.to_string(),
            attempt: self.attempt,
            step: self.step,
            due_at: due_at.as_millis(),
        }
    }
}

/// A message on its way: its body, its message group (the client) and its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub message: DispatchMessage,
    pub group: String,
    /// Whole seconds, rounded down, at most [`MAX_DELAY_SECONDS`].
    pub delay_seconds: u32,
}

impl Dispatch {
    /// `message` for `group`, sent at `now`.
    pub fn new(message: DispatchMessage, group: impl Into<String>, now: Timestamp) -> Self {
        let wait_millis = message.due_at.saturating_sub(now.as_millis()).max(0);
        let delay_seconds = u32::try_from(wait_millis / 1000).unwrap_or(u32::MAX).min(MAX_DELAY_SECONDS);
        Self { message, group: group.into(), delay_seconds }
    }
}

/// The timer a stored change calls for, if any (see the module).
///
/// A record whose old image equals its new one is a no-op write (the emulator emits those;
/// DynamoDB does not) and schedules nothing; so do changes to a finished task other than its
/// delivery, and removals (TTL deletions have no new image).
pub fn dispatch_for(
    task_id: &TaskId,
    old: Option<Snapshot>,
    new: Option<Snapshot>,
) -> Option<(DispatchMessage, String)> {
    let new = new?;
    if old.as_ref() == Some(&new) {
        return None;
    }
    let (attempt, step, due_at) = match new.status {
        TaskStatus::Received => (new.attempts.saturating_add(1), Step::Start, new.due_at),
        TaskStatus::InProgress => (new.attempts, Step::Deadline, new.due_at),
        TaskStatus::Done | TaskStatus::Failed => {
            // Only a change of the pending delivery sets a timer (the task ended, or an attempt
            // was recorded); any other write to an ended task sets none.
            let (attempt, due_at) = new.delivery?;
            if old.as_ref().is_some_and(|old| old.delivery == new.delivery) {
                return None;
            }
            (attempt, Step::Deliver, due_at)
        }
    };
    let message = DispatchMessage { task_id: task_id.to_string(), attempt, step, due_at: due_at.as_millis() };
    Some((message, new.client_id))
}

#[cfg(test)]
mod tests;
