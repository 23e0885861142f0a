//! What clients see of a task.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use taskfleet_core::blob::{BlobStore, Content};
use taskfleet_core::completion::rotation::IssuedSecret;
use taskfleet_core::{StoreError, Task};

/// How long a `result_url` lets its holder read the result.
pub const RESULT_URL_VALIDITY: Duration = Duration::from_secs(15 * 60);

/// `GET /tasks/{task_id}`: status, outcome, attempts and timestamps (RFC 3339, UTC). The
/// payload is not echoed back. A small result is shown inline as `result`; a large one (kept in
/// the blob store) as `result_url`, a short-lived link that GETs it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `true` when the owner cancelled the task (absent otherwise): a service may report a
    /// failure whose `error` also reads "cancelled".
    #[serde(skip_serializing_if = "is_false")]
    pub cancelled: bool,
    pub attempts: u32,
    pub created_at: String,
    /// When the client scheduled the task to start: present for the task's whole life when the
    /// submission asked for a time later than itself (a past `run_at` means at once and is not
    /// shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    pub updated_at: String,
    pub expires_at: String,
    /// The latest steps: why the task is where it is.
    pub history: Vec<HistoryView>,
    /// How many earlier steps are not shown (only the latest are kept).
    #[serde(skip_serializing_if = "is_zero")]
    pub history_omitted: u32,
    /// The task's trace id (W3C, 32 hex digits): the submitter's, or one started for the task.
    /// Absent only on tasks stored before trace ids were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Where the task's completion webhook goes, as the submitter gave it (absent: none asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The completion webhook's delivery once the task ended: `pending` (attempts made so far),
    /// `delivered` or `failed` (given up). Absent without a `webhook_url` or before the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
}

impl TaskView {
    /// `task` as `GET /tasks/{task_id}` shows it, and as its completion webhook carries it: a
    /// result kept in the blob store as a `result_url` presigned for [`RESULT_URL_VALIDITY`].
    pub async fn shown(task: &Task, blobs: &impl BlobStore) -> Result<Self, StoreError> {
        let mut view = Self::from(task);
        if let Some(Content::Stored { key }) = &task.result {
            view.result_url = Some(blobs.presign_get(key, RESULT_URL_VALIDITY).await?);
        }
        Ok(view)
    }
}

/// [`TaskView::webhook`].
#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub state: &'static str,
    pub attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub status: &'static str,
    pub at: String,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        Self {
            task_id: task.task_id.to_string(),
            status: task.status.as_str(),
            result: match &task.result {
                Some(Content::Inline(value)) => Some(value.clone()),
                _ => None,
            },
            result_url: None,
            error: task.error.clone(),
            cancelled: task.cancelled,
            attempts: task.attempts,
            created_at: task.created_at.to_rfc3339(),
            run_at: task.run_at.map(taskfleet_core::Timestamp::to_rfc3339),
            updated_at: task.updated_at.to_rfc3339(),
            expires_at: taskfleet_core::Timestamp::from_millis(task.expires_at.saturating_mul(1000)).to_rfc3339(),
            history: task
                .history
                .iter()
                .map(|entry| HistoryView {
                    status: entry.status.as_str(),
                    at: entry.at.to_rfc3339(),
                    attempt: entry.attempt,
                    reason: entry.reason.clone(),
                })
                .collect(),
            history_omitted: task.history_omitted,
            trace_id: task.trace_id.as_ref().map(ToString::to_string),
            webhook_url: task.webhook_url.clone(),
            webhook: task
                .delivery()
                .map(|delivery| WebhookView { state: delivery.state.as_str(), attempts: delivery.attempts }),
        }
    }
}

/// `POST /tasks` answers this (202), and `POST /tasks/batch` for each task it took.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub task_id: String,
    pub status: &'static str,
    pub created_at: String,
    /// As in [`TaskView::run_at`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// As in [`TaskView::trace_id`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl From<&Task> for Accepted {
    fn from(task: &Task) -> Self {
        Self {
            task_id: task.task_id.to_string(),
            status: task.status.as_str(),
            created_at: task.created_at.to_rfc3339(),
            run_at: task.run_at.map(taskfleet_core::Timestamp::to_rfc3339),
            trace_id: task.trace_id.as_ref().map(ToString::to_string),
        }
    }
}

/// `GET /tasks`: one page of the caller's tasks, newest first.
#[derive(Debug, Serialize)]
pub struct TaskList {
    pub tasks: Vec<TaskSummaryView>,
    /// Pass as `cursor` for the next page; null when there is no more.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TaskSummaryView {
    pub task_id: String,
    pub status: &'static str,
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
}

impl From<&taskfleet_core::ports::ListPage> for TaskList {
    fn from(page: &taskfleet_core::ports::ListPage) -> Self {
        Self {
            tasks: page
                .tasks
                .iter()
                .map(|t| TaskSummaryView {
                    task_id: t.task_id.to_string(),
                    status: t.status.as_str(),
                    attempts: t.attempts,
                    created_at: t.created_at.to_rfc3339(),
                    updated_at: t.updated_at.to_rfc3339(),
                    expires_at: taskfleet_core::Timestamp::from_millis(t.expires_at.saturating_mul(1000)).to_rfc3339(),
                })
                .collect(),
            next_cursor: page.next.as_ref().map(taskfleet_core::validation::encode_cursor),
        }
    }
}

/// `POST /webhook-secret` answers this (200), the only time the secret is shown: the client's
/// new completion-webhook secret, its version, and after a rotation until when the previous
/// secret keeps signing (RFC 3339). No `Debug`: it is never printed.
#[derive(Serialize)]
pub struct SecretView {
    /// `whsec_…`.
    pub secret: String,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<String>,
}

impl From<IssuedSecret> for SecretView {
    fn from(issued: IssuedSecret) -> Self {
        Self {
            secret: issued.secret,
            version: issued.version,
            previous_secret_valid_until: issued.previous_until.map(taskfleet_core::Timestamp::to_rfc3339),
        }
    }
}
