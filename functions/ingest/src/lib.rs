//! The client's writes:
//! - `POST /tasks` `{"payload": {…}, "run_at"?: RFC 3339, "webhook_url"?: URL}` → a RECEIVED
//!   task → `202 {"task_id","status","created_at","run_at"?,"trace_id"}` with
//!   `Location: /tasks/{task_id}`. A `run_at` later than now (at most 7 days ahead, else 400
//!   `run_at_too_far`) schedules the task: it waits RECEIVED until then. A valid W3C
//!   `traceparent` header puts the task in the caller's trace; otherwise it starts a trace of its
//!   own. With an `Idempotency-Key` header, repeating the same request answers `200` with the
//!   same task; the same key with another payload, `run_at` or `webhook_url` answers 409
//!   `idempotency_conflict`, and a repeat whose task has expired answers 409
//!   `idempotency_task_gone` (the task is never created again). A `webhook_url`
//!   (see [`webhooks`]) is where the fleet POSTs the task, signed, when it ends: it must pass the
//!   destination rules (400 `invalid_webhook_url`; 503 `webhook_host_unresolved` when its host
//!   cannot be resolved now) and the client must have a secret (409 `webhook_secret_missing`);
//!   an idempotency key is bound to it as to the payload.
//! - `POST /tasks/batch` `{"tasks": [{"payload", "run_at"?, "idempotency_key"?, "webhook_url"?},
//!   …]}` (1 to 100) → `200 {"results": […]}`, one result per item in order: what `POST /tasks` would have
//!   answered for it alone (`{"task_id","status",…}`) or its error (`{"error":{"code","message"}}`).
//!   A bad item does not stop the others; `idempotency_key` is the item's `Idempotency-Key`.
//!   The items share the request's trace when it has a valid `traceparent`; otherwise each task
//!   starts its own.
//! - `DELETE /tasks/{task_id}` cancels an unfinished task (→ FAILED, `"cancelled": true`, error
//!   "cancelled"), a scheduled one waiting for its `run_at` included; again answers 200
//!   unchanged; a task that finished otherwise answers 409.
//! - `POST /tasks/{task_id}/retry` replays a FAILED task with a fresh attempt series, at most
//!   `MAX_REPLAYS` (10) times; then 409.
//! - `POST /webhook-secret` creates or rotates the client's completion-webhook secret → `200
//!   {"secret": "whsec_…", "version", "previous_secret_valid_until"?}` (`Cache-Control: no-store`),
//!   shown this once; after a rotation the previous secret keeps signing until then. Two
//!   rotations at once: one answers 409.
//!
//! A payload whose compact JSON is larger than `INLINE_MAX_BYTES` is kept in the blob store (S3),
//! the task item keeping its key. Every line logged about a task is in its span
//! (`taskfleet_core::trace::task_span`): it carries the task id and the trace id.

pub mod webhooks;

use std::sync::Arc;

use lambda_http::http::header::LOCATION;
use lambda_http::http::{HeaderValue, StatusCode};
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, S3Blobs, SdkConfig, config};
use taskfleet_adapters::{DynamoKeyRecords, DynamoSecretRecords};
use taskfleet_api::view::{Accepted, TaskView};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::{CachedAuthenticator, KeyAuthenticator};
use taskfleet_core::blob::{BlobStore, Blobs};
use taskfleet_core::lifecycle::MAX_REPLAYS;
use taskfleet_core::ports::{EventSink, SecretRecords, TaskEvent, TaskStore};
use taskfleet_core::service::{self, NewTask, OwnerAction, SubmitError, Submitted};
use taskfleet_core::trace::{self, TraceId};
use taskfleet_core::{ClientId, Task, TaskStatus, Timestamp, TtlPolicy, validation};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::Instrument;
use webhooks::{SecretOnFile, Webhooks};

/// The header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Everything the function needs, built once per cold start.
pub struct App<S, K = CachedAuthenticator<DynamoKeyRecords>, B = S3Blobs, R = DynamoSecretRecords> {
    pub store: S,
    pub keys: K,
    /// Where large payloads go.
    pub blobs: Blobs<B>,
    pub ttl: TtlPolicy,
    pub events: Arc<dyn EventSink>,
    /// Completion webhooks: the `webhook_url` checks and the clients' secrets.
    pub webhooks: Webhooks<R>,
}

impl App<DynamoStore> {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            keys: DynamoKeyRecords::cached_from_env(sdk)?,
            blobs: Blobs::new(S3Blobs::from_env(sdk)?, config::inline_max_bytes()?),
            ttl: config::ttl_policy()?,
            events: Arc::new(EmfSink::from_env()),
            webhooks: Webhooks::from_env(sdk).await?,
        })
    }
}

pub async fn handle<S: TaskStore, K: KeyAuthenticator, B: BlobStore, R: SecretRecords>(
    app: &App<S, K, B, R>,
    request: Request,
) -> Response<Body> {
    // The request's lines (its refusal too) are in the span of the task it is about.
    let span = trace::task_span(None);
    async { route(app, &request).await.unwrap_or_else(ApiError::into_response) }.instrument(span).await
}

async fn route<S: TaskStore, K: KeyAuthenticator, B: BlobStore, R: SecretRecords>(
    app: &App<S, K, B, R>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys).await?;
    match request::route_key(request).as_deref() {
        Some("POST /webhook-secret") => webhooks::issue_secret(&app.webhooks, &client).await,
        Some("DELETE /tasks/{task_id}") => cancel(app, &client, request).await,
        Some("POST /tasks/{task_id}/retry") => replay(app, &client, request).await,
        Some("POST /tasks/batch") => submit_batch(app, &client, request).await,
        _ => submit(app, &client, request).await,
    }
}

async fn submit<S: TaskStore, K: KeyAuthenticator, B: BlobStore, R: SecretRecords>(
    app: &App<S, K, B, R>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let key = match request.headers().get(IDEMPOTENCY_KEY) {
        Some(value) => Some(validation::parse_idempotency_key(value.to_str().unwrap_or("\u{0}"))?),
        None => None,
    };
    let submission = validation::parse_submission(request::json_body(request)?, app.webhooks.rules())?;
    let trace = request::trace(request);
    let secret = SecretOnFile::new(&app.webhooks, client);
    let (status, task) = submit_one(app, (client, &secret), submission, key, trace, Timestamp::now()).await?;
    Ok(located(response::json(status, &Accepted::from(&task)), &task))
}

/// Stores one submission of `client` (whose secret record is looked up in `secret`, if need be)
/// in trace `trace`, as `POST /tasks` does: 202 and the new task, or 200 and the task an
/// earlier submission with the same idempotency key created.
async fn submit_one<S: TaskStore, K, B: BlobStore, R: SecretRecords>(
    app: &App<S, K, B, R>,
    (client, secret): (&ClientId, &SecretOnFile<'_, R>),
    submission: validation::Submission,
    key: Option<&str>,
    trace: TraceId,
    now: Timestamp,
) -> Result<(StatusCode, Task), ApiError> {
    validation::check_run_at(submission.run_at, now)?;
    let webhook_url = match submission.webhook_url {
        Some(url) => Some(secret.admit(&url).await?),
        None => None,
    };
    let new = NewTask { payload: submission.payload, run_at: submission.run_at, trace_id: Some(trace), webhook_url };
    let submitted =
        service::submit_task(&app.store, &app.blobs, client, new, key, now, &app.ttl).await.map_err(|e| match e {
            SubmitError::KeyReused => ApiError::IdempotencyConflict,
            SubmitError::TaskGone => ApiError::IdempotencyTaskGone,
            SubmitError::Store(e) => ApiError::Store(e),
        })?;
    let (Submitted::Created(task) | Submitted::Existing(task)) = &submitted;
    trace::note(task);
    let run_at = task.run_at.map(Timestamp::to_rfc3339);
    Ok(match submitted {
        Submitted::Created(task) => {
            let webhook = task.webhook_url.is_some();
            tracing::info!(task_id = %task.task_id, client_id = %client, run_at, webhook, "task received");
            app.events.record(TaskEvent::Created);
            (StatusCode::ACCEPTED, task)
        }
        Submitted::Existing(task) => {
            tracing::info!(task_id = %task.task_id, client_id = %client, "idempotent repeat");
            (StatusCode::OK, task)
        }
    })
}

/// What one item of a batch came to: its task, as `POST /tasks` answers it, or its error.
#[derive(Serialize)]
#[serde(untagged)]
enum ItemResult {
    Stored(Accepted),
    Refused(Value),
}

/// Items of a batch stored at once.
pub const BATCH_CONCURRENCY: usize = 8;

/// `POST /tasks/batch`: each item as `POST /tasks` would take it alone, [`BATCH_CONCURRENCY`] at
/// a time, answered in order. A request that is not a batch at all is refused whole (400).
async fn submit_batch<S: TaskStore, K, B: BlobStore, R: SecretRecords>(
    app: &App<S, K, B, R>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let items = validation::parse_batch(request::json_body(request)?, app.webhooks.rules())?;
    // One look-up of the client's secret record for every item that names a webhook_url.
    let secret = &SecretOnFile::new(&app.webhooks, client);
    // One trace for the whole batch if the client sent a valid one; else a trace per task.
    let shared = request::parent_trace(request);
    let now = Timestamp::now();
    let results: Vec<ItemResult> = futures_util::stream::iter(items)
        .map(|item| {
            let trace = shared.clone().unwrap_or_else(TraceId::generate);
            async move {
                let stored = match item {
                    Ok(item) => {
                        let key = item.idempotency_key.as_deref();
                        submit_one(app, (client, secret), item.submission, key, trace, now).await.map(|(_, task)| task)
                    }
                    Err(invalid) => Err(ApiError::Invalid(invalid)),
                };
                match stored {
                    Ok(task) => ItemResult::Stored(Accepted::from(&task)),
                    Err(error) => ItemResult::Refused(error.into_item()),
                }
            }
            .instrument(trace::task_span(None))
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    Ok(response::json(StatusCode::OK, &json!({ "results": results })))
}

async fn cancel<S: TaskStore, K: KeyAuthenticator, B, R>(
    app: &App<S, K, B, R>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    let action = service::cancel(&app.store, client, &task_id, Timestamp::now(), &app.ttl).await?;
    if let OwnerAction::Applied(task) | OwnerAction::Unchanged(task) | OwnerAction::Refused(task) = &action {
        trace::note(task);
    }
    match action {
        OwnerAction::Applied(task) => {
            tracing::info!(%task_id, "task cancelled");
            app.events.record(TaskEvent::finished(&task));
            Ok(response::json(StatusCode::OK, &TaskView::from(&task)))
        }
        OwnerAction::Unchanged(task) => Ok(response::json(StatusCode::OK, &TaskView::from(&task))),
        OwnerAction::Refused(task) => {
            Err(ApiError::Conflict(format!("the task is {} and cannot be cancelled", describe(&task))))
        }
        OwnerAction::Missing => Err(ApiError::NotFound),
    }
}

async fn replay<S: TaskStore, K: KeyAuthenticator, B, R>(
    app: &App<S, K, B, R>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    let action = service::replay(&app.store, client, &task_id, Timestamp::now(), &app.ttl).await?;
    if let OwnerAction::Applied(task) | OwnerAction::Unchanged(task) | OwnerAction::Refused(task) = &action {
        trace::note(task);
    }
    match action {
        OwnerAction::Applied(task) => {
            tracing::info!(%task_id, "task replayed");
            Ok(located(response::json(StatusCode::ACCEPTED, &TaskView::from(&task)), &task))
        }
        OwnerAction::Unchanged(task) | OwnerAction::Refused(task) if task.replays >= MAX_REPLAYS => {
            Err(ApiError::Conflict(format!("the task was retried {MAX_REPLAYS} times, the most allowed")))
        }
        OwnerAction::Unchanged(task) | OwnerAction::Refused(task) => {
            Err(ApiError::Conflict(format!("the task is {}; only a FAILED task can be retried", describe(&task))))
        }
        OwnerAction::Missing => Err(ApiError::NotFound),
    }
}

fn describe(task: &Task) -> String {
    match task.status {
        TaskStatus::Failed if task.cancelled => "FAILED (cancelled)".to_owned(),
        status => status.to_string(),
    }
}

fn located(mut answer: Response<Body>, task: &Task) -> Response<Body> {
    if let Ok(location) = HeaderValue::from_str(&format!("/tasks/{}", task.task_id)) {
        answer.headers_mut().insert(LOCATION, location);
    }
    answer
}

#[cfg(test)]
mod tests;
