//! The client's reads:
//! - `GET /tasks/{task_id}`: the calling client's task. Unknown ids, other clients' tasks and
//!   expired tasks all answer 404.
//! - `GET /tasks?status=&limit=&cursor=`: the caller's own tasks, newest first, a page at a time
//!   (from the client index, never a scan).

use lambda_http::http::StatusCode;
use taskfleet_adapters::DynamoKeys;
use taskfleet_adapters::{ConfigError, DynamoStore, SdkConfig};
use taskfleet_api::view::{TaskList, TaskView};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::{ClientKeys, StoredKeys};
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{Timestamp, service, validation};

/// Everything the function needs, built once per cold start.
pub struct App<S, K = StoredKeys<DynamoKeys>> {
    pub store: S,
    pub keys: K,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { store: DynamoStore::from_env(sdk)?, keys: DynamoKeys::cached_from_env(sdk)? })
    }
}

pub async fn handle<S: TaskStore, K: ClientKeys>(app: &App<S, K>, request: Request) -> Response<Body> {
    let answer = match request::route_key(&request).as_deref() {
        Some("GET /tasks") => list(app, &request).await,
        _ => show(app, &request).await,
    };
    answer.unwrap_or_else(ApiError::into_response)
}

async fn list<S: TaskStore, K: ClientKeys>(app: &App<S, K>, request: &Request) -> Result<Response<Body>, ApiError> {
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

async fn show<S: TaskStore, K: ClientKeys>(app: &App<S, K>, request: &Request) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys).await?;
    let task_id = request::task_id(request)?;
    let task =
        service::task_for_client(&app.store, &client, &task_id, Timestamp::now()).await?.ok_or(ApiError::NotFound)?;
    Ok(response::json(StatusCode::OK, &TaskView::from(&task)))
}

#[cfg(test)]
mod tests;
