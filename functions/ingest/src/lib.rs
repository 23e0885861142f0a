//! The client's writes:
//! - `POST /tasks` `{"payload": {…}}` → a RECEIVED task → `202 {"task_id","status","created_at"}`
//!   with `Location: /tasks/{task_id}`. With an `Idempotency-Key` header, repeating the same
//!   request answers `200` with the same task; the same key with another payload answers 409
//!   `idempotency_conflict`, and a repeat whose task has expired answers 409
//!   `idempotency_task_gone` (the task is never created again).
//! - `DELETE /tasks/{task_id}` cancels an unfinished task (→ FAILED, `"cancelled": true`, error
//!   "cancelled"); again answers 200 unchanged; a task that finished otherwise answers 409.
//! - `POST /tasks/{task_id}/retry` replays a FAILED task with a fresh attempt series, at most
//!   `MAX_REPLAYS` (10) times; then 409.
//!
//! A payload whose compact JSON is larger than `INLINE_MAX_BYTES` is kept in the blob store (S3),
//! the task item keeping its key.

use std::sync::Arc;

use lambda_http::http::header::LOCATION;
use lambda_http::http::{HeaderValue, StatusCode};
use taskfleet_adapters::DynamoKeyRecords;
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, S3Blobs, SdkConfig, config};
use taskfleet_api::view::{Accepted, TaskView};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::{CachedAuthenticator, KeyAuthenticator};
use taskfleet_core::blob::{BlobStore, Blobs};
use taskfleet_core::lifecycle::MAX_REPLAYS;
use taskfleet_core::ports::{EventSink, TaskEvent, TaskStore};
use taskfleet_core::service::{self, OwnerAction, SubmitError, Submitted};
use taskfleet_core::{ClientId, Task, TaskStatus, Timestamp, TtlPolicy, validation};

/// The header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Everything the function needs, built once per cold start.
pub struct App<S, K = CachedAuthenticator<DynamoKeyRecords>, B = S3Blobs> {
    pub store: S,
    pub keys: K,
    /// Where large payloads go.
    pub blobs: Blobs<B>,
    pub ttl: TtlPolicy,
    pub events: Arc<dyn EventSink>,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            keys: DynamoKeyRecords::cached_from_env(sdk)?,
            blobs: Blobs::new(S3Blobs::from_env(sdk)?, config::inline_max_bytes()?),
            ttl: config::ttl_policy()?,
            events: Arc::new(EmfSink::from_env()),
        })
    }
}

pub async fn handle<S: TaskStore, K: KeyAuthenticator, B: BlobStore>(
    app: &App<S, K, B>,
    request: Request,
) -> Response<Body> {
    route(app, &request).await.unwrap_or_else(ApiError::into_response)
}

async fn route<S: TaskStore, K: KeyAuthenticator, B: BlobStore>(
    app: &App<S, K, B>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys).await?;
    match request::route_key(request).as_deref() {
        Some("DELETE /tasks/{task_id}") => cancel(app, &client, request).await,
        Some("POST /tasks/{task_id}/retry") => replay(app, &client, request).await,
        _ => submit(app, &client, request).await,
    }
}

async fn submit<S: TaskStore, K: KeyAuthenticator, B: BlobStore>(
    app: &App<S, K, B>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let key = match request.headers().get(IDEMPOTENCY_KEY) {
        Some(value) => Some(validation::parse_idempotency_key(value.to_str().unwrap_or("\u{0}"))?),
        None => None,
    };
    let payload = validation::parse_submission(request::json_body(request)?)?;
    let submitted = service::submit(&app.store, &app.blobs, client, payload, key, Timestamp::now(), &app.ttl)
        .await
        .map_err(|e| match e {
            SubmitError::KeyReused => ApiError::IdempotencyConflict,
            SubmitError::TaskGone => ApiError::IdempotencyTaskGone,
            SubmitError::Store(e) => ApiError::Store(e),
        })?;
    let (status, task) = match &submitted {
        Submitted::Created(task) => {
            tracing::info!(task_id = %task.task_id, client_id = %client, "task received");
            app.events.record(TaskEvent::Created);
            (StatusCode::ACCEPTED, task)
        }
        Submitted::Existing(task) => {
            tracing::info!(task_id = %task.task_id, client_id = %client, "idempotent repeat");
            (StatusCode::OK, task)
        }
    };
    Ok(located(response::json(status, &Accepted::from(task)), task))
}

async fn cancel<S: TaskStore, K: KeyAuthenticator, B>(
    app: &App<S, K, B>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    match service::cancel(&app.store, client, &task_id, Timestamp::now(), &app.ttl).await? {
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

async fn replay<S: TaskStore, K: KeyAuthenticator, B>(
    app: &App<S, K, B>,
    client: &ClientId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    match service::replay(&app.store, client, &task_id, Timestamp::now(), &app.ttl).await? {
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
