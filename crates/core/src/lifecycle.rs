//! The task state machine: which status may follow which, and the transitions built on it.
//!
//! ```text
//!              ┌──────── retry (attempt failed, attempts left) ─────────┐
//!              ▼                                                         │
//! ──▶ RECEIVED ──start attempt n──▶ IN_PROGRESS ──callback: succeeded──▶ DONE
//!      │   ▲                            │
//!      │   └── replay (owner) ──┐       ├──callback: failed ────────────▶ FAILED
//!      │                        │       ├──refused/timed out, no attempts left ──▶ FAILED
//!      └──cancel (owner) ─────▶ FAILED ◀┴──cancel (owner)
//! ```
//!
//! Storage applies a [`Transition`] as one conditional write naming `from` and, where it
//! matters, the attempt, its callback token or the deadline it saw. A late or repeated event
//! finds the task moved on and changes nothing: it can never move a task backwards or finish
//! an attempt twice.

use serde_json::Value;
use thiserror::Error;

use crate::task::{HistoryEntry, Task, TaskId, TaskStatus};
use crate::time::Timestamp;
use crate::ttl::TtlPolicy;

/// A status change the rules forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a task cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: TaskStatus,
    pub to: TaskStatus,
}

/// The one rule: may a task in `from` move to `to`?
pub fn check(from: TaskStatus, to: TaskStatus) -> Result<(), IllegalTransition> {
    use TaskStatus::*;
    match (from, to) {
        (Received, InProgress)   // an attempt starts
        | (Received, Failed)     // cancelled before it started
        | (InProgress, Done)     // the service reported success
        | (InProgress, Failed)   // the service reported failure, gave up, or the owner cancelled
        | (InProgress, Received) // the attempt failed and another is allowed
        | (Failed, Received) => Ok(()), // the owner replays a failed task
        _ => Err(IllegalTransition { from, to }),
    }
}

/// How an attempt ended, as the external service reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded { result: Value },
    Failed { error: String },
}

impl Outcome {
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Succeeded { .. } => TaskStatus::Done,
            Self::Failed { .. } => TaskStatus::Failed,
        }
    }
}

/// The reason recorded when the owner cancels.
pub const CANCELLED: &str = "cancelled";

/// One legal status change, with everything the conditional write needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub task_id: TaskId,
    /// The status the task must be in for the write to apply.
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub at: Timestamp,
    /// Guard: the stored attempt count must equal this.
    pub expected_attempts: Option<u32>,
    /// Guard: the callback token digest stored for attempt `.0` must equal `.1`.
    pub expected_token: Option<(u32, String)>,
    /// Guard: `due_at` must still be what the writer saw (a heartbeat in between wins).
    pub expected_due: Option<Timestamp>,
    /// New attempt count.
    pub attempts: Option<u32>,
    /// Digest of the new attempt's callback token, appended to the task's tokens.
    pub new_token: Option<String>,
    /// New start of the attempt series.
    pub series_start: Option<u32>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Remove the task's error (a replay).
    pub clear_error: bool,
    /// New `due_at`; every transition sets it.
    pub due_at: Timestamp,
    /// New TTL (epoch seconds), when the transition resets it.
    pub expires_at: Option<i64>,
    /// What the task's history gains.
    pub entry: HistoryEntry,
}

impl Transition {
    fn new(task_id: &TaskId, from: TaskStatus, to: TaskStatus, at: Timestamp) -> Result<Self, IllegalTransition> {
        check(from, to)?;
        Ok(Self {
            task_id: task_id.clone(),
            from,
            to,
            at,
            expected_attempts: None,
            expected_token: None,
            expected_due: None,
            attempts: None,
            new_token: None,
            series_start: None,
            result: None,
            error: None,
            clear_error: false,
            due_at: at,
            expires_at: None,
            entry: HistoryEntry { status: to, at, attempt: 0, reason: None },
        })
    }

    fn legal(task_id: &TaskId, from: TaskStatus, to: TaskStatus, at: Timestamp) -> Self {
        Self::new(task_id, from, to, at).unwrap_or_else(|e| unreachable!("{e}: the constructors use legal transitions"))
    }

    /// RECEIVED → IN_PROGRESS for attempt `attempt` (1-based, over all series). Applies only if
    /// the task has had exactly `attempt − 1` attempts, so a repeated dispatch is a no-op.
    /// `token_digest` is the digest of the attempt's callback token; the callback is due by
    /// `deadline`.
    pub fn start(task_id: &TaskId, attempt: u32, token_digest: String, at: Timestamp, deadline: Timestamp) -> Self {
        let mut t = Self::legal(task_id, TaskStatus::Received, TaskStatus::InProgress, at);
        t.expected_attempts = Some(attempt.saturating_sub(1));
        t.attempts = Some(attempt);
        t.new_token = Some(token_digest);
        t.due_at = deadline;
        t.entry.attempt = attempt;
        t
    }

    /// IN_PROGRESS → DONE or FAILED as the external service reported for `attempt`, whose
    /// callback token has digest `token_digest`; resets the TTL to the result retention.
    pub fn finish(
        task_id: &TaskId,
        attempt: u32,
        token_digest: String,
        outcome: Outcome,
        at: Timestamp,
        ttl: &TtlPolicy,
    ) -> Self {
        let mut t = Self::legal(task_id, TaskStatus::InProgress, outcome.status(), at);
        t.expected_attempts = Some(attempt);
        t.expected_token = Some((attempt, token_digest));
        t.entry.attempt = attempt;
        match outcome {
            Outcome::Succeeded { result } => t.result = Some(result),
            Outcome::Failed { error } => {
                t.entry.reason = Some(error.clone());
                t.error = Some(error);
            }
        }
        t.expires_at = Some(ttl.finished_expiry(at));
        t
    }

    /// IN_PROGRESS → RECEIVED: attempt `attempt` failed for `reason`; the next one may be
    /// dispatched from `retry_at`.
    pub fn retry(
        task_id: &TaskId,
        attempt: u32,
        reason: impl Into<String>,
        at: Timestamp,
        retry_at: Timestamp,
    ) -> Self {
        let mut t = Self::legal(task_id, TaskStatus::InProgress, TaskStatus::Received, at);
        t.expected_attempts = Some(attempt);
        t.due_at = retry_at;
        t.entry.attempt = attempt;
        t.entry.reason = Some(reason.into());
        t
    }

    /// `from` → FAILED with `error`; resets the TTL to the result retention. `attempt` is the
    /// attempt the failure belongs to (also a guard when given).
    pub fn give_up(
        task_id: &TaskId,
        from: TaskStatus,
        attempt: Option<u32>,
        error: impl Into<String>,
        at: Timestamp,
        ttl: &TtlPolicy,
    ) -> Result<Self, IllegalTransition> {
        let mut t = Self::new(task_id, from, TaskStatus::Failed, at)?;
        let error = error.into();
        t.expected_attempts = attempt;
        t.entry.attempt = attempt.unwrap_or(0);
        t.entry.reason = Some(error.clone());
        t.error = Some(error);
        t.expires_at = Some(ttl.finished_expiry(at));
        Ok(t)
    }

    /// FAILED → RECEIVED: the owner replays a failed task; a new attempt series starts after
    /// the `attempts` made so far, and the task lives a new task TTL.
    pub fn replay(task_id: &TaskId, attempts: u32, at: Timestamp, ttl: &TtlPolicy) -> Self {
        let mut t = Self::legal(task_id, TaskStatus::Failed, TaskStatus::Received, at);
        t.expected_attempts = Some(attempts);
        t.series_start = Some(attempts);
        t.clear_error = true;
        t.expires_at = Some(ttl.new_task_expiry(at));
        t.entry.attempt = attempts;
        t.entry.reason = Some("replayed by its owner".into());
        t
    }

    /// Applies only while `due_at` is still `due` (what the writer read).
    pub fn if_due_unchanged(mut self, due: Timestamp) -> Self {
        self.expected_due = Some(due);
        self
    }

    /// Whether the conditional write matches a task as stored. An expired task matches nothing:
    /// storage deletes it late, and until then it must not come back to life.
    pub fn matches(&self, task: &Task) -> bool {
        task.task_id == self.task_id
            && !task.is_expired(self.at)
            && task.status == self.from
            && self.expected_attempts.is_none_or(|expected| task.attempts == expected)
            && self.expected_due.is_none_or(|due| task.due_at == due)
            && self.expected_token.as_ref().is_none_or(|(attempt, digest)| token_of(task, *attempt) == Some(digest))
    }

    /// The task after this transition (what storage holds once the write applied).
    pub fn applied_to(&self, task: &Task) -> Task {
        let mut next = task.clone();
        next.status = self.to;
        next.updated_at = self.at;
        next.due_at = self.due_at;
        if let Some(attempts) = self.attempts {
            next.attempts = attempts;
        }
        if let Some(series_start) = self.series_start {
            next.series_start = series_start;
        }
        if let Some(token) = &self.new_token {
            next.callback_tokens.push(token.clone());
        }
        if let Some(result) = &self.result {
            next.result = Some(result.clone());
        }
        if self.clear_error {
            next.error = None;
        }
        if let Some(error) = &self.error {
            next.error = Some(error.clone());
        }
        if let Some(expires_at) = self.expires_at {
            next.expires_at = expires_at;
        }
        next.history.push(self.entry.clone());
        next
    }
}

/// The stored token digest of attempt `attempt` (1-based).
pub fn token_of(task: &Task, attempt: u32) -> Option<&String> {
    attempt.checked_sub(1).and_then(|index| task.callback_tokens.get(index as usize))
}

/// A heartbeat: the external service is still working on attempt `attempt`; its callback is
/// now due by `deadline`. Not a status change, but guarded the same way as a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub task_id: TaskId,
    pub attempt: u32,
    pub token_digest: String,
    pub deadline: Timestamp,
    pub at: Timestamp,
}

impl Heartbeat {
    pub fn matches(&self, task: &Task) -> bool {
        task.task_id == self.task_id
            && !task.is_expired(self.at)
            && task.status == TaskStatus::InProgress
            && task.attempts == self.attempt
            && token_of(task, self.attempt) == Some(&self.token_digest)
    }

    pub fn applied_to(&self, task: &Task) -> Task {
        let mut next = task.clone();
        next.due_at = self.deadline;
        next.updated_at = self.at;
        next
    }
}

#[cfg(test)]
mod tests;
