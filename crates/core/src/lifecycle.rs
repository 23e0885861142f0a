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
//! A cancel is a FAILED task with [`Task::cancelled`] set (and the error [`CANCELLED`]): the
//! flag, not the error text, tells it from a service that reported a failure in that word.
//!
//! Every change to a stored task is a [`Transition`] of one [`Kind`]. A transition is two
//! lists: its [`Guard`]s — what the stored task must be for the change to apply — and its
//! [`Write`]s — what the change sets. Storage applies both as one conditional write (the
//! in-memory store with [`Guard::holds`] and [`Write::apply`], DynamoDB as a condition and an
//! update expression built from the same lists), so the stores cannot drift apart. A late or
//! repeated event finds the task moved on and changes nothing: it can never move a task
//! backwards or finish an attempt twice.
//!
//! What a task item can grow by is bounded: the callback-token digests of the latest
//! [`TOKENS_KEPT`] attempts, the latest [`HISTORY_KEPT`] history entries (with a count of the
//! rest), at most [`MAX_REPLAYS`] replays.

use thiserror::Error;

use crate::blob::Content;
use crate::completion::delivery::{Delivery, DeliveryState};
use crate::task::{HistoryEntry, Task, TaskId, TaskStatus};
use crate::time::Timestamp;
use crate::ttl::TtlPolicy;

/// Callback-token digests kept per task: those of the latest attempts. A callback for an older
/// attempt cannot be authenticated any more and is refused like a forged one.
pub const TOKENS_KEPT: u32 = 8;
/// History entries kept per task: the latest; `history_omitted` counts the older ones.
pub const HISTORY_KEPT: usize = 20;
/// How often the owner may replay a failed task.
pub const MAX_REPLAYS: u32 = 10;

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
    Succeeded { result: Content },
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

/// The error and history reason recorded when the owner cancels. Only for people: whether a
/// task was cancelled is [`Task::cancelled`], since a service may report a failure in this word.
pub const CANCELLED: &str = "cancelled";

/// What must hold of the stored task for a transition to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// The task has not expired at this time: storage deletes expired items late, and until
    /// then they must not come back to life.
    Unexpired(Timestamp),
    /// The task has expired at this time (only the sweeper's [`Kind::Expire`] wants that).
    Expired(Timestamp),
    /// The task is in this status.
    Status(TaskStatus),
    /// The task has had exactly this many attempts.
    Attempts(u32),
    /// The callback-token digest kept for `attempt` is `digest`.
    Token { attempt: u32, digest: String },
    /// `due_at` is still what the writer read (a heartbeat in between wins).
    DueAt(Timestamp),
    /// The task was replayed fewer times than this.
    ReplaysBelow(u32),
    /// Its completion webhook is pending with exactly this many attempts made (no delivery
    /// stored: pending, none made).
    DeliveryPending { made: u32 },
}

impl Guard {
    pub fn holds(&self, task: &Task) -> bool {
        match self {
            Self::Unexpired(now) => !task.is_expired(*now),
            Self::Expired(now) => task.is_expired(*now),
            Self::Status(status) => task.status == *status,
            Self::Attempts(attempts) => task.attempts == *attempts,
            Self::Token { attempt, digest } => token_of(task, *attempt) == Some(digest),
            Self::DueAt(due) => task.due_at == *due,
            Self::ReplaysBelow(limit) => task.replays < *limit,
            Self::DeliveryPending { made } => match &task.webhook {
                None => *made == 0,
                Some(delivery) => delivery.state == DeliveryState::Pending && delivery.attempts == *made,
            },
        }
    }
}

/// One thing a transition sets.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Status(TaskStatus),
    UpdatedAt(Timestamp),
    DueAt(Timestamp),
    Attempts(u32),
    /// Keeps the callback-token digest of `attempt`, and forgets the one of attempt
    /// `attempt − TOKENS_KEPT`.
    Token {
        attempt: u32,
        digest: String,
    },
    SeriesStart(u32),
    Result(Content),
    Error(String),
    ClearError,
    /// Whether the owner cancelled the task.
    Cancelled(bool),
    /// New TTL (epoch seconds).
    ExpiresAt(i64),
    /// Appends to the history (which keeps the latest [`HISTORY_KEPT`] entries).
    History(HistoryEntry),
    /// Counts one more replay.
    CountReplay,
    /// The completion webhook's delivery as it now stands.
    Delivery(Delivery),
    /// Forgets the delivery (a replayed task gets a new one when it ends again).
    ClearDelivery,
}

impl Write {
    pub fn apply(&self, task: &mut Task) {
        match self {
            Self::Status(status) => task.status = *status,
            Self::UpdatedAt(at) => task.updated_at = *at,
            Self::DueAt(due) => task.due_at = *due,
            Self::Attempts(attempts) => task.attempts = *attempts,
            Self::Token { attempt, digest } => {
                task.callback_tokens.insert(*attempt, digest.clone());
                if let Some(forgotten) = forgotten_token(*attempt) {
                    task.callback_tokens.remove(&forgotten);
                }
            }
            Self::SeriesStart(start) => task.series_start = *start,
            Self::Result(result) => task.result = Some(result.clone()),
            Self::Error(error) => task.error = Some(error.clone()),
            Self::ClearError => task.error = None,
            Self::Cancelled(cancelled) => task.cancelled = *cancelled,
            Self::ExpiresAt(expires_at) => task.expires_at = *expires_at,
            Self::History(entry) => {
                task.history.push(entry.clone());
                task.bound_history();
            }
            Self::CountReplay => task.replays = task.replays.saturating_add(1),
            Self::Delivery(delivery) => task.webhook = Some(delivery.clone()),
            Self::ClearDelivery => task.webhook = None,
        }
    }
}

/// The attempt whose token digest is forgotten when `attempt` starts.
pub fn forgotten_token(attempt: u32) -> Option<u32> {
    attempt.checked_sub(TOKENS_KEPT).filter(|&old| old > 0)
}

/// The kinds of change a stored task goes through.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// RECEIVED → IN_PROGRESS: attempt `attempt` starts; its callback is due by `deadline`; the
    /// task lives at least until `expires_at` (a new task TTL from now).
    Start { attempt: u32, token_digest: String, deadline: Timestamp, expires_at: i64 },
    /// IN_PROGRESS → DONE or FAILED, as the service reported for `attempt`.
    Finish { attempt: u32, token_digest: String, outcome: Outcome, expires_at: i64 },
    /// IN_PROGRESS → RECEIVED: `attempt` failed for `reason`; the next may start at `retry_at`.
    Retry { attempt: u32, reason: String, retry_at: Timestamp },
    /// `from` → FAILED with `error` (no attempts left, a permanent refusal, a payload gone).
    GiveUp { from: TaskStatus, attempt: Option<u32>, error: String, expires_at: i64 },
    /// `from` (RECEIVED or IN_PROGRESS) → FAILED, cancelled by the owner after `attempts`.
    Cancel { from: TaskStatus, attempts: u32, expires_at: i64 },
    /// FAILED → RECEIVED: the owner replays; a new series starts after `attempts`.
    Replay { attempts: u32, expires_at: i64 },
    /// IN_PROGRESS, unchanged: the service still works on `attempt`; its callback is now due by
    /// `deadline`, and the task lives until `expires_at` (a new task TTL from now), so that a
    /// long job is not lost to its TTL. Not a status change, and not a history entry.
    Heartbeat { attempt: u32, token_digest: String, deadline: Timestamp, expires_at: i64 },
    /// RECEIVED, unchanged but due again now: the sweeper re-dispatches a task whose message was
    /// lost. The new `due_at` is its lease: the next sweep leaves it alone for the dispatch grace.
    Redispatch { attempts: u32 },
    /// `from` (RECEIVED or IN_PROGRESS) → FAILED ([`EXPIRED`]): the task's TTL passed while it
    /// was active. Applies only to an expired task, so that it leaves the status index.
    Expire { from: TaskStatus, attempts: u32 },
    /// DONE or FAILED, unchanged: attempt `delivery.attempts` of its completion webhook ended
    /// (`note` says how) and the delivery is now `delivery`. Applies while the task, ended
    /// after `attempts` attempts, waits for exactly that attempt; a retry later than the task's
    /// retention keeps the task until then (`expires_at`).
    Deliver { status: TaskStatus, attempts: u32, delivery: Delivery, note: String, expires_at: Option<i64> },
}

/// The error recorded when a task's TTL passed before it finished.
pub const EXPIRED: &str = "expired";

/// One change of one stored task: its kind, when, and (for the sweeper) the deadline it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub task_id: TaskId,
    pub at: Timestamp,
    pub kind: Kind,
    /// Applies only while `due_at` is still this.
    pub seen_due: Option<Timestamp>,
}

impl Transition {
    fn of(task_id: &TaskId, at: Timestamp, kind: Kind) -> Self {
        Self { task_id: task_id.clone(), at, kind, seen_due: None }
    }

    /// RECEIVED → IN_PROGRESS for attempt `attempt` (1-based, over all series). Applies only if
    /// the task has had exactly `attempt − 1` attempts, so a repeated dispatch is a no-op.
    /// `token_digest` is the digest of the attempt's callback token; the callback is due by
    /// `deadline`.
    pub fn start(
        task_id: &TaskId,
        attempt: u32,
        token_digest: String,
        (at, deadline): (Timestamp, Timestamp),
        ttl: &TtlPolicy,
    ) -> Self {
        Self::of(task_id, at, Kind::Start { attempt, token_digest, deadline, expires_at: ttl.new_task_expiry(at) })
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
        Self::of(task_id, at, Kind::Finish { attempt, token_digest, outcome, expires_at: ttl.finished_expiry(at) })
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
        Self::of(task_id, at, Kind::Retry { attempt, reason: reason.into(), retry_at })
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
        check(from, TaskStatus::Failed)?;
        let kind = Kind::GiveUp { from, attempt, error: error.into(), expires_at: ttl.finished_expiry(at) };
        Ok(Self::of(task_id, at, kind))
    }

    /// `from` → FAILED, cancelled by the owner (error [`CANCELLED`], [`Task::cancelled`] set);
    /// applies only while the task has had `attempts` attempts, so the attempt the owner saw is
    /// the one cancelled. Resets the TTL to the result retention.
    pub fn cancel(
        task_id: &TaskId,
        from: TaskStatus,
        attempts: u32,
        at: Timestamp,
        ttl: &TtlPolicy,
    ) -> Result<Self, IllegalTransition> {
        check(from, TaskStatus::Failed)?;
        Ok(Self::of(task_id, at, Kind::Cancel { from, attempts, expires_at: ttl.finished_expiry(at) }))
    }

    /// FAILED → RECEIVED: the owner replays a failed task; a new attempt series starts after
    /// the `attempts` made so far, and the task lives a new task TTL.
    pub fn replay(task_id: &TaskId, attempts: u32, at: Timestamp, ttl: &TtlPolicy) -> Self {
        Self::of(task_id, at, Kind::Replay { attempts, expires_at: ttl.new_task_expiry(at) })
    }

    /// The service is still working on `attempt`: its callback is now due by `deadline`.
    pub fn heartbeat(
        task_id: &TaskId,
        attempt: u32,
        token_digest: String,
        (at, deadline): (Timestamp, Timestamp),
        ttl: &TtlPolicy,
    ) -> Self {
        Self::of(task_id, at, Kind::Heartbeat { attempt, token_digest, deadline, expires_at: ttl.new_task_expiry(at) })
    }

    /// RECEIVED, due again from `at`: the sweeper re-dispatches a task whose message was lost,
    /// while it has had `attempts` attempts and is due at `seen_due`.
    pub fn redispatch(task_id: &TaskId, attempts: u32, seen_due: Timestamp, at: Timestamp) -> Self {
        Self::of(task_id, at, Kind::Redispatch { attempts }).if_due_unchanged(seen_due)
    }

    /// `from` → FAILED ([`EXPIRED`]): the task expired while active, after `attempts` attempts.
    pub fn expire(task_id: &TaskId, from: TaskStatus, attempts: u32, at: Timestamp) -> Result<Self, IllegalTransition> {
        check(from, TaskStatus::Failed)?;
        Ok(Self::of(task_id, at, Kind::Expire { from, attempts }))
    }

    /// Attempt `delivery.attempts` of the completion webhook of `task` (ended) ended at `at`, as
    /// `note` says; the delivery is now `delivery`. A retry due after the task's expiry keeps
    /// the task a result retention after it.
    pub fn deliver(task: &Task, delivery: Delivery, note: impl Into<String>, at: Timestamp, ttl: &TtlPolicy) -> Self {
        let expires_at =
            delivery.next_at.map(|next| ttl.finished_expiry(next)).filter(|expiry| *expiry > task.expires_at);
        let kind =
            Kind::Deliver { status: task.status, attempts: task.attempts, delivery, note: note.into(), expires_at };
        Self::of(&task.task_id, at, kind)
    }

    /// Applies only while `due_at` is still `due` (what the writer read).
    pub fn if_due_unchanged(mut self, due: Timestamp) -> Self {
        self.seen_due = Some(due);
        self
    }

    /// The status the task must be in.
    pub fn from(&self) -> TaskStatus {
        match &self.kind {
            Kind::Start { .. } | Kind::Redispatch { .. } => TaskStatus::Received,
            Kind::Finish { .. } | Kind::Retry { .. } | Kind::Heartbeat { .. } => TaskStatus::InProgress,
            Kind::GiveUp { from, .. } | Kind::Cancel { from, .. } | Kind::Expire { from, .. } => *from,
            Kind::Replay { .. } => TaskStatus::Failed,
            Kind::Deliver { status, .. } => *status,
        }
    }

    /// The status the task is in afterwards.
    pub fn to(&self) -> TaskStatus {
        match &self.kind {
            Kind::Start { .. } | Kind::Heartbeat { .. } => TaskStatus::InProgress,
            Kind::Finish { outcome, .. } => outcome.status(),
            Kind::Retry { .. } | Kind::Replay { .. } | Kind::Redispatch { .. } => TaskStatus::Received,
            Kind::GiveUp { .. } | Kind::Cancel { .. } | Kind::Expire { .. } => TaskStatus::Failed,
            Kind::Deliver { status, .. } => *status,
        }
    }

    /// What the stored task must be for this transition to apply. Every store checks exactly
    /// these.
    pub fn guards(&self) -> Vec<Guard> {
        let alive = match self.kind {
            Kind::Expire { .. } => Guard::Expired(self.at),
            _ => Guard::Unexpired(self.at),
        };
        let mut guards = vec![alive, Guard::Status(self.from())];
        match &self.kind {
            Kind::Start { attempt, .. } => guards.push(Guard::Attempts(attempt.saturating_sub(1))),
            Kind::Finish { attempt, token_digest, .. } | Kind::Heartbeat { attempt, token_digest, .. } => {
                guards.push(Guard::Attempts(*attempt));
                guards.push(Guard::Token { attempt: *attempt, digest: token_digest.clone() });
            }
            Kind::Retry { attempt, .. } => guards.push(Guard::Attempts(*attempt)),
            Kind::GiveUp { attempt, .. } => guards.extend(attempt.map(Guard::Attempts)),
            Kind::Cancel { attempts, .. } | Kind::Redispatch { attempts } | Kind::Expire { attempts, .. } => {
                guards.push(Guard::Attempts(*attempts));
            }
            Kind::Replay { attempts, .. } => {
                guards.push(Guard::Attempts(*attempts));
                guards.push(Guard::ReplaysBelow(MAX_REPLAYS));
            }
            Kind::Deliver { attempts, delivery, .. } => {
                guards.push(Guard::Attempts(*attempts));
                guards.push(Guard::DeliveryPending { made: delivery.attempts.saturating_sub(1) });
            }
        }
        guards.extend(self.seen_due.map(Guard::DueAt));
        guards
    }

    /// What this transition sets. Every store writes exactly these.
    pub fn writes(&self) -> Vec<Write> {
        let at = self.at;
        let entry = |attempt: u32, reason: Option<String>| {
            Write::History(HistoryEntry { status: self.to(), at, attempt, reason })
        };
        let mut writes = vec![Write::UpdatedAt(at)];
        match &self.kind {
            Kind::Start { attempt, token_digest, deadline, expires_at } => writes.extend([
                Write::Status(self.to()),
                Write::DueAt(*deadline),
                Write::Attempts(*attempt),
                Write::Token { attempt: *attempt, digest: token_digest.clone() },
                Write::ExpiresAt(*expires_at),
                entry(*attempt, None),
            ]),
            Kind::Finish { attempt, outcome, expires_at, .. } => {
                writes.extend([Write::Status(self.to()), Write::DueAt(at), Write::ExpiresAt(*expires_at)]);
                match outcome {
                    Outcome::Succeeded { result } => {
                        writes.extend([Write::Result(result.clone()), entry(*attempt, None)]);
                    }
                    Outcome::Failed { error } => {
                        writes.extend([Write::Error(error.clone()), entry(*attempt, Some(error.clone()))]);
                    }
                }
            }
            Kind::Retry { attempt, reason, retry_at } => {
                writes.extend([
                    Write::Status(self.to()),
                    Write::DueAt(*retry_at),
                    entry(*attempt, Some(reason.clone())),
                ]);
            }
            Kind::GiveUp { attempt, error, expires_at, .. } => writes.extend([
                Write::Status(self.to()),
                Write::DueAt(at),
                Write::Error(error.clone()),
                Write::ExpiresAt(*expires_at),
                entry(attempt.unwrap_or(0), Some(error.clone())),
            ]),
            Kind::Cancel { attempts, expires_at, .. } => writes.extend([
                Write::Status(self.to()),
                Write::DueAt(at),
                Write::Error(CANCELLED.to_owned()),
                Write::Cancelled(true),
                Write::ExpiresAt(*expires_at),
                entry(*attempts, Some(CANCELLED.to_owned())),
            ]),
            Kind::Replay { attempts, expires_at } => writes.extend([
                Write::Status(self.to()),
                Write::DueAt(at),
                Write::SeriesStart(*attempts),
                Write::ClearError,
                Write::Cancelled(false),
                Write::ExpiresAt(*expires_at),
                Write::CountReplay,
                Write::ClearDelivery,
                entry(*attempts, Some("replayed by its owner".into())),
            ]),
            Kind::Heartbeat { deadline, expires_at, .. } => {
                writes.extend([Write::DueAt(*deadline), Write::ExpiresAt(*expires_at)]);
            }
            Kind::Redispatch { .. } => writes.push(Write::DueAt(at)),
            Kind::Expire { attempts, .. } => writes.extend([
                Write::Status(self.to()),
                Write::DueAt(at),
                Write::Error(EXPIRED.to_owned()),
                entry(*attempts, Some(EXPIRED.to_owned())),
            ]),
            Kind::Deliver { attempts, delivery, note, expires_at, .. } => {
                writes.extend([Write::Delivery(delivery.clone()), entry(*attempts, Some(note.clone()))]);
                writes.extend(expires_at.map(Write::ExpiresAt));
            }
        }
        writes
    }

    /// Whether the conditional write matches a task as stored.
    pub fn matches(&self, task: &Task) -> bool {
        task.task_id == self.task_id && self.guards().iter().all(|guard| guard.holds(task))
    }

    /// The task after this transition (what storage holds once the write applied).
    pub fn applied_to(&self, task: &Task) -> Task {
        let mut next = task.clone();
        for write in self.writes() {
            write.apply(&mut next);
        }
        next
    }
}

/// The stored token digest of attempt `attempt` (1-based), while it is kept.
pub fn token_of(task: &Task, attempt: u32) -> Option<&String> {
    task.callback_tokens.get(&attempt)
}

#[cfg(test)]
mod tests;
