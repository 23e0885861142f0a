//! Errors of the domain and of its ports. Each is mapped once, at the edge, to an HTTP answer
//! or a Lambda error.

use thiserror::Error;

/// Input a caller sent that the fleet will not accept. The message is safe to show the caller
/// and never echoes the input itself (a refused JSON body is described by
/// `validation::describe`, which leaves out what serde_json would quote).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("the task id is not a task id this service issued")]
    InvalidTaskId,
    #[error("the client id must be 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.'")]
    InvalidClientId,
    #[error("unknown status; expected one of RECEIVED, IN_PROGRESS, DONE, FAILED")]
    UnknownStatus,
    #[error("the request body is empty; a JSON object is required")]
    EmptyBody,
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not match the schema: {0}")]
    Schema(String),
    #[error("{0}")]
    Header(String),
    #[error("{0}")]
    Parameter(String),
    #[error("`{field}` is larger than the {limit} bytes allowed")]
    TooLarge { field: &'static str, limit: usize },
    #[error("`run_at` is more than 7 days ahead; a task can be scheduled at most 7 days ahead")]
    RunAtTooFar,
    /// A `webhook_url` that may not be called (see `completion::destination`): why, in words
    /// that name at most the address it points at.
    #[error("{0}")]
    WebhookUrl(String),
}

/// Storage failed or holds something unexpected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("a task with this id already exists")]
    AlreadyExists,
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored item could not be read: {0}")]
    Corrupt(String),
}

/// Publishing a message failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("publishing failed: {0}")]
pub struct PublishError(pub String);

/// Pushing metrics failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("pushing metrics failed: {0}")]
pub struct MetricsError(pub String);

/// The external service did not accept a job.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExternalError {
    #[error("the external service answered {status}")]
    Rejected { status: u16, retry_after_seconds: Option<u64> },
    /// The service answered with a redirect (3xx). Redirects are never followed: following one
    /// would re-send the payload, the callback token and the signature to wherever it points. A
    /// redirect is a misconfiguration (`EXTERNAL_SERVICE_URL` is not where jobs are accepted),
    /// so it is a permanent refusal, like any other 4xx.
    #[error("the external service answered {status}, a redirect; redirects are not followed")]
    Redirected { status: u16 },
    #[error("the external service did not answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("the external service could not be reached: {0}")]
    Unreachable(String),
}
