//! The task state machine: which status may follow which, and the transitions built on it.
//!
//! ```text
//! RECEIVED ──start──▶ IN_PROGRESS ──succeeded──▶ DONE
//!     │                    │
//!     └──────fail──────────┴───────failed──────▶ FAILED
//! ```
//!
//! Storage applies a [`Transition`] as one conditional write naming `from` (and, where it
//! matters, the attempt), so a late or repeated event can never move a task backwards or
//! finish it twice: the write simply does not match.

use serde_json::Value;
use thiserror::Error;

use crate::task::{Task, TaskId, TaskStatus};
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
        (Received, InProgress) | (Received, Failed) | (InProgress, Done) | (InProgress, Failed) => Ok(()),
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

/// One legal status change, with everything the conditional write needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub task_id: TaskId,
    /// The status the task must be in for the write to apply.
    pub from: TaskStatus,
    pub to: TaskStatus,
    /// When set, the stored attempt count must equal this for the write to apply.
    pub expected_attempts: Option<u32>,
    /// The attempt count after the write, when the transition changes it.
    pub attempts: Option<u32>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub at: Timestamp,
    /// The new TTL (epoch seconds), when the transition resets it.
    pub expires_at: Option<i64>,
}

impl Transition {
    fn new(task_id: &TaskId, from: TaskStatus, to: TaskStatus, at: Timestamp) -> Result<Self, IllegalTransition> {
        check(from, to)?;
        Ok(Self {
            task_id: task_id.clone(),
            from,
            to,
            expected_attempts: None,
            attempts: None,
            result: None,
            error: None,
            at,
            expires_at: None,
        })
    }

    /// RECEIVED → IN_PROGRESS for attempt `attempt` (1-based). Applies only if the task has
    /// had exactly `attempt - 1` attempts, so a repeated dispatch of the same attempt is a no-op.
    pub fn start(task_id: &TaskId, attempt: u32, at: Timestamp) -> Self {
        let mut transition = Self::new(task_id, TaskStatus::Received, TaskStatus::InProgress, at)
            .unwrap_or_else(|_| unreachable!("RECEIVED → IN_PROGRESS is a legal transition"));
        transition.expected_attempts = Some(attempt.saturating_sub(1));
        transition.attempts = Some(attempt);
        transition
    }

    /// IN_PROGRESS → DONE or FAILED as the external service reported; resets the TTL to the
    /// result retention.
    pub fn finish(task_id: &TaskId, outcome: Outcome, at: Timestamp, ttl: &TtlPolicy) -> Self {
        let to = outcome.status();
        let mut transition = Self::new(task_id, TaskStatus::InProgress, to, at)
            .unwrap_or_else(|_| unreachable!("IN_PROGRESS → DONE/FAILED is a legal transition"));
        match outcome {
            Outcome::Succeeded { result } => transition.result = Some(result),
            Outcome::Failed { error } => transition.error = Some(error),
        }
        transition.expires_at = Some(ttl.finished_expiry(at));
        transition
    }

    /// `from` → FAILED with `error` (the fleet gives up on the task); resets the TTL.
    pub fn fail(
        task_id: &TaskId,
        from: TaskStatus,
        error: impl Into<String>,
        at: Timestamp,
        ttl: &TtlPolicy,
    ) -> Result<Self, IllegalTransition> {
        let mut transition = Self::new(task_id, from, TaskStatus::Failed, at)?;
        transition.error = Some(error.into());
        transition.expires_at = Some(ttl.finished_expiry(at));
        Ok(transition)
    }

    /// Whether the conditional write matches a task as stored.
    pub fn matches(&self, task: &Task) -> bool {
        task.task_id == self.task_id
            && task.status == self.from
            && self.expected_attempts.is_none_or(|expected| task.attempts == expected)
    }

    /// The task after this transition (what storage holds once the write applied).
    pub fn applied_to(&self, task: &Task) -> Task {
        let mut next = task.clone();
        next.status = self.to;
        next.updated_at = self.at;
        if let Some(attempts) = self.attempts {
            next.attempts = attempts;
        }
        if let Some(result) = &self.result {
            next.result = Some(result.clone());
        }
        if let Some(error) = &self.error {
            next.error = Some(error.clone());
        }
        if let Some(expires_at) = self.expires_at {
            next.expires_at = expires_at;
        }
        next
    }

    /// Scopes the transition to one attempt: it applies only while the task is on that attempt.
    pub fn for_attempt(mut self, attempt: u32) -> Self {
        self.expected_attempts = Some(attempt);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    fn task_id() -> TaskId {
        TaskId::generate()
    }

    #[test]
    fn a_received_task_may_start_or_fail() {
        assert_eq!(check(Received, InProgress), Ok(()));
        assert_eq!(check(Received, Failed), Ok(()));
    }

    #[test]
    fn a_received_task_cannot_finish_without_starting() {
        assert!(check(Received, Done).is_err());
    }

    #[test]
    fn a_task_in_progress_may_finish_either_way() {
        assert_eq!(check(InProgress, Done), Ok(()));
        assert_eq!(check(InProgress, Failed), Ok(()));
    }

    #[test]
    fn a_task_never_moves_backwards() {
        assert!(check(InProgress, Received).is_err());
        assert!(check(Done, InProgress).is_err());
        assert!(check(Failed, InProgress).is_err());
    }

    #[test]
    fn a_finished_task_never_changes_again() {
        for to in TaskStatus::ALL {
            assert_eq!(check(Done, to), Err(IllegalTransition { from: Done, to }));
            assert_eq!(check(Failed, to), Err(IllegalTransition { from: Failed, to }));
        }
    }

    #[test]
    fn no_status_moves_to_itself() {
        for status in TaskStatus::ALL {
            assert!(check(status, status).is_err(), "{status} → {status}");
        }
    }

    #[test]
    fn exactly_four_transitions_are_legal() {
        let legal: Vec<(TaskStatus, TaskStatus)> = TaskStatus::ALL
            .into_iter()
            .flat_map(|from| TaskStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|&(from, to)| check(from, to).is_ok())
            .collect();
        assert_eq!(legal, [(Received, InProgress), (Received, Failed), (InProgress, Done), (InProgress, Failed)]);
    }

    #[test]
    fn starting_attempt_n_requires_n_minus_one_attempts_so_far() {
        let t = Transition::start(&task_id(), 3, Timestamp::from_millis(0));
        assert_eq!((t.from, t.to), (Received, InProgress));
        assert_eq!(t.expected_attempts, Some(2));
        assert_eq!(t.attempts, Some(3));
        assert_eq!(t.expires_at, None, "starting keeps the task's TTL");
    }

    #[test]
    fn finishing_records_the_outcome_and_resets_the_ttl_to_result_retention() {
        let ttl = TtlPolicy::new(3_600, 86_400);
        let at = Timestamp::from_millis(1_000_000);
        let done =
            Transition::finish(&task_id(), Outcome::Succeeded { result: serde_json::json!({"ok": 1}) }, at, &ttl);
        assert_eq!((done.from, done.to), (InProgress, Done));
        assert_eq!(done.result, Some(serde_json::json!({"ok": 1})));
        assert_eq!(done.error, None);
        assert_eq!(done.expires_at, Some(1_000 + 86_400));

        let failed = Transition::finish(&task_id(), Outcome::Failed { error: "boom".into() }, at, &ttl);
        assert_eq!((failed.from, failed.to), (InProgress, Failed));
        assert_eq!(failed.error.as_deref(), Some("boom"));
        assert_eq!(failed.result, None);
        assert_eq!(failed.expires_at, Some(1_000 + 86_400));
    }

    #[test]
    fn failing_is_refused_from_a_finished_status() {
        let ttl = TtlPolicy::new(3_600, 86_400);
        let at = Timestamp::from_millis(0);
        assert!(Transition::fail(&task_id(), Received, "x", at, &ttl).is_ok());
        assert!(Transition::fail(&task_id(), InProgress, "x", at, &ttl).is_ok());
        assert_eq!(
            Transition::fail(&task_id(), Done, "x", at, &ttl),
            Err(IllegalTransition { from: Done, to: Failed })
        );
        assert!(Transition::fail(&task_id(), Failed, "x", at, &ttl).is_err());
    }

    #[test]
    fn a_transition_can_be_scoped_to_one_attempt() {
        let ttl = TtlPolicy::new(3_600, 86_400);
        let t = Transition::fail(&task_id(), InProgress, "x", Timestamp::from_millis(0), &ttl).unwrap().for_attempt(2);
        assert_eq!(t.expected_attempts, Some(2));
        assert_eq!(t.attempts, None);
    }
}
