//! The client's reads:
//! - `GET /tasks/{task_id}[?wait=N]`: the calling client's task. Unknown ids, other clients'
//!   tasks and expired tasks all answer 404. A large result (kept in the blob store) is shown as
//!   `result_url`, a presigned GET valid for [`RESULT_URL_VALIDITY`]. With `wait=N` (0-20 whole
//!   seconds, else 400) it answers as soon as the task is DONE or FAILED, or after N seconds
//!   with the task as it is then: the same view (`service::task_when_finished` reads it again
//!   after pauses growing from 0.1 s to 0.5 s). Such a request may take N seconds more than
//!   [`REQUEST_DEADLINE`] before it answers 503 (the function's Lambda timeout leaves room).
//! - `GET /tasks?status=&limit=&cursor=`: the caller's own tasks, newest first, a page at a time
//!   (from the client index, never a scan).

use lambda_http::http::StatusCode;
use std::time::Duration;

pub use taskfleet_api::view::RESULT_URL_VALIDITY;

use taskfleet_adapters::DynamoKeyRecords;
use taskfleet_adapters::{ConfigError, DynamoStore, S3Blobs, SdkConfig};
use taskfleet_api::error::{self, REQUEST_DEADLINE};
use taskfleet_api::view::{TaskList, TaskView};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::{CachedAuthenticator, KeyAuthenticator};
use taskfleet_core::blob::BlobStore;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{Timestamp, service, trace, validation};
use tracing::Instrument;

/// Everything the function needs, built once per cold start.
pub struct App<S, K = CachedAuthenticator<DynamoKeyRecords>, B = S3Blobs> {
    pub store: S,
    pub keys: K,
    /// Where large results are (the function only presigns reads of them).
    pub blobs: B,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            keys: DynamoKeyRecords::cached_from_env(sdk)?,
            blobs: S3Blobs::from_env(sdk)?,
        })
    }
}

pub async fn handle<S: TaskStore, K: KeyAuthenticator, B: BlobStore>(
    app: &App<S, K, B>,
    request: Request,
) -> Response<Body> {
    let listing = request::route_key(&request).as_deref() == Some("GET /tasks");
    // A waiting read may take its wait on top of a normal request's budget (a `wait` that is not
    // one is refused at once, below).
    let wait = if listing { Duration::ZERO } else { wait_of(&request).unwrap_or_default() };
    let answer = async {
        let answer = if listing { list(app, &request).await } else { show(app, &request).await };
        answer.unwrap_or_else(ApiError::into_response)
    };
    error::within(REQUEST_DEADLINE + wait, answer.instrument(trace::task_span(None))).await
}

fn wait_of(request: &Request) -> Result<Duration, ApiError> {
    Ok(validation::parse_wait(request::query(request, "wait").as_deref())?)
}

async fn list<S: TaskStore, K: KeyAuthenticator, B>(
    app: &App<S, K, B>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys).await?;
    let parameter = |name: &str| request::query(request, name);
    let query = validation::parse_list_query(
        parameter("status").as_deref(),
        parameter("limit").as_deref(),
        parameter("cursor").as_deref(),
    )?;
    let page =
        service::list_tasks(&app.store, &client, query.status, query.limit, query.after, Timestamp::now()).await?;
    Ok(response::json(StatusCode::OK, &TaskList::from(&page)))
}

async fn show<S: TaskStore, K: KeyAuthenticator, B: BlobStore>(
    app: &App<S, K, B>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys).await?;
    let task_id = request::task_id(request)?;
    let wait = wait_of(request)?;
    let task = service::task_when_finished(&app.store, &client, &task_id, wait).await?.ok_or(ApiError::NotFound)?;
    trace::note(&task);
    Ok(response::json(StatusCode::OK, &TaskView::shown(&task, &app.blobs).await?))
}

#[cfg(test)]
mod tests;
