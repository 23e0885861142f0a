//! `GET /tasks/{task_id}`: the calling client's task. Unknown ids, other clients' tasks and
//! expired tasks all answer 404.

use lambda_http::http::StatusCode;
use taskfleet_adapters::{ConfigError, DynamoStore, SdkConfig, config};
use taskfleet_api::view::TaskView;
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::ApiKeys;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{Timestamp, service};

/// Everything the function needs, built once per cold start.
pub struct App<S> {
    pub store: S,
    pub keys: ApiKeys,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { store: DynamoStore::from_env(sdk)?, keys: config::api_keys()? })
    }
}

pub async fn handle<S: TaskStore>(app: &App<S>, request: Request) -> Response<Body> {
    show(app, &request).await.unwrap_or_else(ApiError::into_response)
}

async fn show<S: TaskStore>(app: &App<S>, request: &Request) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys)?;
    let task_id = request::task_id(request)?;
    let task =
        service::task_for_client(&app.store, &client, &task_id, Timestamp::now()).await?.ok_or(ApiError::NotFound)?;
    Ok(response::json(StatusCode::OK, &TaskView::from(&task)))
}

#[cfg(test)]
mod tests;
