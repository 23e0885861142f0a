//! Called by the external service, with the attempt and token its callback URL carries:
//! - `POST /callbacks/{task_id}?attempt=n&token=…` with `{"status":"succeeded","result":…}` →
//!   DONE, or `{"status":"failed","error":"…"}` → FAILED. The same callback again answers 200
//!   and changes nothing; another outcome for an attempt already finished answers 409
//!   `conflict`; a callback for an attempt that is no longer current (it timed out and was
//!   retried, or the task was cancelled or replayed) answers 409 `stale_attempt` and is ignored.
//! - `POST /callbacks/{task_id}/heartbeat?attempt=n&token=…` → the attempt's callback is due a
//!   full `CALLBACK_TIMEOUT_SECONDS` from now.
//!
//! A wrong attempt or token answers 401 `invalid_callback_token` and changes nothing; so does a
//! task that does not exist (or has expired), with exactly the same answer, so that a caller
//! without an attempt's credentials cannot tell whether a task id exists. With signing secrets
//! (`WEBHOOK_SIGNING_SECRET_ARN` in AWS: read from Secrets Manager, refreshed every minute), a
//! callback must also carry a Standard Webhooks signature over its body, made within five minutes
//! with one of the secrets in force: otherwise 401 `invalid_signature`.
//!
//! Everything that can be judged without the store is judged before it, so such refusals cost
//! no DynamoDB request: the credentials' shape (attempt ≥ 1, a 43-character token), then the
//! signature, then for a callback the content type and the body (JSON, one of the two outcomes,
//! within the limits). Whether a well-formed token is the attempt's is only known to the store:
//! such a request costs the one conditional write that would have recorded it (DynamoDB bills a
//! write whose condition fails, at least one write unit, more for a large task item) — or, for a
//! result large enough for the blob store, one strongly consistent read instead, and no write.
//! Checking with a read first would make a forged callback cheaper but add a read to every
//! genuine one; signing secrets are the way to refuse strangers before the store.

use std::sync::Arc;

use lambda_http::http::StatusCode;
use serde_json::json;
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, S3Blobs, SdkConfig, config};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::blob::{BlobStore, Blobs};
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::{EventSink, TaskEvent, TaskStore};
use taskfleet_core::secrets::SecretSource;
use taskfleet_core::service::{self, CallbackResult};
use taskfleet_core::{Task, Timestamp, trace, validation};
use tracing::Instrument;

/// Everything the function needs, built once per cold start.
pub struct App<S, B = S3Blobs> {
    pub store: S,
    /// Where large results go.
    pub blobs: Blobs<B>,
    pub policies: Policies,
    pub events: Arc<dyn EventSink>,
    /// When set, every callback must carry a valid Standard Webhooks signature made with one of
    /// the secrets this source has in force.
    pub signing: Option<Arc<dyn SecretSource>>,
}

impl App<DynamoStore> {
    /// Reads the configuration, and the signing secrets (a secret that cannot be read fails).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            blobs: Blobs::new(S3Blobs::from_env(sdk)?, config::inline_max_bytes()?),
            policies: config::policies()?,
            events: Arc::new(EmfSink::from_env()),
            signing: config::signing(sdk).await?,
        })
    }
}

pub async fn handle<S: TaskStore, B: BlobStore>(app: &App<S, B>, request: Request) -> Response<Body> {
    // Once the callback is authenticated, its lines carry the task's id and trace.
    let answer = async { route(app, &request).await.unwrap_or_else(ApiError::into_response) };
    answer.instrument(trace::task_span(None)).await
}

async fn route<S: TaskStore, B: BlobStore>(app: &App<S, B>, request: &Request) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    let (attempt, token) = request::callback_credentials(request)?;
    let credentials = (attempt, token.as_str());
    let now = Timestamp::now();
    if let Some(source) = &app.signing {
        request::verify_signature(request, &*source.current().await, now)?;
    }
    if request::route_key(request).as_deref() == Some("POST /callbacks/{task_id}/heartbeat") {
        let answer = service::heartbeat(&app.store, &task_id, credentials, now, &app.policies).await?;
        return match answered(answer)? {
            Answer::Changed(task) | Answer::Same(task) => Ok(response::json(
                StatusCode::OK,
                &json!({"task_id": task.task_id.as_str(), "status": task.status.as_str(), "callback_due_at": task.due_at.to_rfc3339()}),
            )),
        };
    }
    let outcome = validation::parse_callback(request::json_body(request)?)?;
    let answer =
        service::record_outcome(&app.store, &app.blobs, &task_id, credentials, outcome, now, &app.policies.ttl).await?;
    let task = match answered(answer)? {
        Answer::Changed(task) => {
            tracing::info!(task_id = %task.task_id, status = %task.status, attempt, "task finished");
            app.events.record(TaskEvent::finished(&task));
            task
        }
        Answer::Same(task) => {
            tracing::info!(task_id = %task.task_id, attempt, "repeated callback ignored");
            task
        }
    };
    Ok(response::json(StatusCode::OK, &json!({"task_id": task.task_id.as_str(), "status": task.status.as_str()})))
}

enum Answer {
    Changed(Task),
    Same(Task),
}

fn answered(result: CallbackResult) -> Result<Answer, ApiError> {
    if let CallbackResult::Recorded(task) | CallbackResult::Repeated(task) | CallbackResult::Conflict(task) = &result {
        trace::note(task);
    }
    match result {
        CallbackResult::Recorded(task) => Ok(Answer::Changed(task)),
        CallbackResult::Repeated(task) => Ok(Answer::Same(task)),
        CallbackResult::Conflict(task) => {
            Err(ApiError::Conflict(format!("the attempt already ended: the task is {}", task.status)))
        }
        CallbackResult::Stale => Err(ApiError::StaleAttempt),
        // Alike, byte for byte: the answer must not tell whether the task exists.
        CallbackResult::Unauthorized | CallbackResult::Missing => Err(ApiError::InvalidCallbackToken),
    }
}

#[cfg(test)]
mod tests;
