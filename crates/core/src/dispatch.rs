//! What the dispatcher hands on: which stored changes start an attempt, and the message it sends.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::task::{TaskId, TaskStatus};
use crate::time::Timestamp;

/// The part of a stored task the dispatcher looks at, read from a stream image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub status: TaskStatus,
    pub attempts: u32,
    pub due_at: Timestamp,
}

/// How far in the future a RECEIVED task's `due_at` may be for the dispatcher to send it at
/// once (clock differences between writers); later ones are retries waiting for their time,
/// which the sweeper dispatches when due.
pub const DUE_SLACK_MILLIS: i64 = 1_000;

/// "Hand task `task_id` to the external service as attempt `attempt`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchMessage {
    pub task_id: String,
    pub attempt: u32,
}

impl DispatchMessage {
    /// Reads a message body back: the task and the attempt it asks for.
    pub fn parse(body: &str) -> Result<(TaskId, u32), ValidationError> {
        let message: DispatchMessage =
            serde_json::from_str(body).map_err(|e| ValidationError::Schema(e.to_string()))?;
        if message.attempt == 0 {
            return Err(ValidationError::Schema("`attempt` starts at 1".into()));
        }
        Ok((TaskId::parse(&message.task_id)?, message.attempt))
    }
}

/// The dispatch a stored change calls for, if any: a change that puts a task into RECEIVED
/// and makes it due now.
///
/// A record whose old image equals its new one is a no-op write (the emulator emits those;
/// DynamoDB does not) and dispatches nothing. A retry waiting for its time is left to the
/// sweeper. Removals (TTL deletions) have no new image and dispatch nothing.
pub fn dispatch_for(
    task_id: &TaskId,
    old: Option<Snapshot>,
    new: Option<Snapshot>,
    now: Timestamp,
) -> Option<DispatchMessage> {
    let new = new.filter(|new| new.status == TaskStatus::Received)?;
    if old == Some(new) || new.due_at.as_millis() > now.as_millis().saturating_add(DUE_SLACK_MILLIS) {
        return None;
    }
    Some(DispatchMessage { task_id: task_id.as_str().to_owned(), attempt: new.attempts.saturating_add(1) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn snap(status: TaskStatus, attempts: u32) -> Option<Snapshot> {
        Some(Snapshot { status, attempts, due_at: NOW })
    }

    fn dispatch_for(task_id: &TaskId, old: Option<Snapshot>, new: Option<Snapshot>) -> Option<DispatchMessage> {
        super::dispatch_for(task_id, old, new, NOW)
    }

    #[test]
    fn a_new_received_task_is_dispatched_as_attempt_one() {
        let id = TaskId::generate();
        assert_eq!(
            dispatch_for(&id, None, snap(Received, 0)),
            Some(DispatchMessage { task_id: id.to_string(), attempt: 1 })
        );
    }

    #[test]
    fn a_no_op_write_on_a_received_task_dispatches_nothing() {
        assert_eq!(dispatch_for(&TaskId::generate(), snap(Received, 0), snap(Received, 0)), None);
    }

    #[test]
    fn changes_that_do_not_end_in_received_dispatch_nothing() {
        let id = TaskId::generate();
        assert_eq!(dispatch_for(&id, snap(Received, 0), snap(InProgress, 1)), None);
        assert_eq!(dispatch_for(&id, snap(InProgress, 1), snap(Done, 1)), None);
        assert_eq!(dispatch_for(&id, snap(InProgress, 1), snap(Failed, 1)), None);
    }

    #[test]
    fn a_removal_dispatches_nothing() {
        assert_eq!(dispatch_for(&TaskId::generate(), snap(Received, 0), None), None);
    }

    #[test]
    fn returning_to_received_dispatches_the_next_attempt() {
        let id = TaskId::generate();
        assert_eq!(dispatch_for(&id, snap(InProgress, 2), snap(Received, 2)).map(|m| m.attempt), Some(3));
    }

    #[test]
    fn a_retry_waiting_for_its_time_is_left_to_the_sweeper() {
        let id = TaskId::generate();
        let later = |millis| {
            Some(Snapshot { status: Received, attempts: 1, due_at: Timestamp::from_millis(NOW.as_millis() + millis) })
        };
        assert_eq!(dispatch_for(&id, snap(InProgress, 1), later(30_000)), None);
        assert_eq!(dispatch_for(&id, snap(InProgress, 1), later(DUE_SLACK_MILLIS)).map(|m| m.attempt), Some(2));
    }

    #[test]
    fn the_message_is_plain_json() {
        let message = DispatchMessage { task_id: "t".into(), attempt: 2 };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(json, r#"{"task_id":"t","attempt":2}"#);
        assert_eq!(serde_json::from_str::<DispatchMessage>(&json).unwrap(), message);
        assert!(serde_json::from_str::<DispatchMessage>(r#"{"task_id":"t"}"#).is_err());
    }

    #[test]
    fn a_message_parses_back_to_task_and_attempt() {
        let id = TaskId::generate();
        let body = serde_json::to_string(&DispatchMessage { task_id: id.to_string(), attempt: 4 }).unwrap();
        assert_eq!(DispatchMessage::parse(&body), Ok((id, 4)));
    }

    #[test]
    fn a_bad_message_is_refused() {
        let id = TaskId::generate();
        assert!(DispatchMessage::parse("").is_err());
        assert!(DispatchMessage::parse(r#"{"task_id":"x","attempt":1}"#).is_err());
        assert!(DispatchMessage::parse(&format!(r#"{{"task_id":"{id}","attempt":0}}"#)).is_err());
        assert!(DispatchMessage::parse(&format!(r#"{{"task_id":"{id}","attempt":-1}}"#)).is_err());
    }
}
