//! What a completion webhook carries: `{"type", "timestamp", "data"}`, where `data` is the task
//! exactly as `GET /tasks/{id}` shows it, and `type` is `task.succeeded` (DONE) or `task.failed`
//! (FAILED, cancel included). Every attempt of one task's delivery has the same `webhook-id`,
//! so that a receiver can drop a delivery it already handled (Standard Webhooks).

use serde_json::{Value, json};

use crate::task::{TaskId, TaskStatus};
use crate::time::Timestamp;

/// The event type of a task that ended with `status`; `None` while it has not ended.
pub fn event_type(status: TaskStatus) -> Option<&'static str> {
    match status {
        TaskStatus::Done => Some("task.succeeded"),
        TaskStatus::Failed => Some("task.failed"),
        TaskStatus::Received | TaskStatus::InProgress => None,
    }
}

/// The `webhook-id` of every attempt of a task's delivery.
pub fn message_id(task_id: &TaskId) -> String {
    format!("msg_{task_id}")
}

/// The body of a delivery sent at `now` for a task that ended, given its view.
pub fn body(event_type: &str, view: Value, now: Timestamp) -> Vec<u8> {
    let envelope = json!({"type": event_type, "timestamp": now.to_rfc3339(), "data": view});
    serde_json::to_vec(&envelope).unwrap_or_else(|_| unreachable!("a JSON value serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_task_succeeded_and_a_failed_one_failed() {
        assert_eq!(event_type(TaskStatus::Done), Some("task.succeeded"));
        assert_eq!(event_type(TaskStatus::Failed), Some("task.failed"));
        assert_eq!(event_type(TaskStatus::Received), None);
        assert_eq!(event_type(TaskStatus::InProgress), None);
    }

    #[test]
    fn the_body_wraps_the_view_unchanged() {
        let view = json!({"task_id": "t", "status": "DONE", "result": {"n": 1}});
        let body: Value =
            serde_json::from_slice(&body("task.succeeded", view.clone(), Timestamp::from_millis(0))).unwrap();
        assert_eq!(body, json!({"type": "task.succeeded", "timestamp": "1970-01-01T00:00:00.000Z", "data": view}));
    }

    #[test]
    fn every_attempt_of_a_delivery_has_the_same_id() {
        let id = TaskId::generate();
        assert_eq!(message_id(&id), message_id(&id));
        assert!(message_id(&id).starts_with("msg_"));
    }
}
