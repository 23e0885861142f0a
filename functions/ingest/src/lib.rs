//! `POST /tasks`: `{"payload": {…}}` → a RECEIVED task → `202 {"task_id","status","created_at"}`
//! with `Location: /tasks/{task_id}`.

use lambda_http::http::header::LOCATION;
use lambda_http::http::{HeaderValue, StatusCode};
use taskfleet_adapters::{ConfigError, DynamoStore, SdkConfig, config};
use taskfleet_api::view::Accepted;
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::auth::ApiKeys;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{Timestamp, TtlPolicy, service, validation};

/// Everything the function needs, built once per cold start.
pub struct App<S> {
    pub store: S,
    pub keys: ApiKeys,
    pub ttl: TtlPolicy,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { store: DynamoStore::from_env(sdk)?, keys: config::api_keys()?, ttl: config::ttl_policy()? })
    }
}

pub async fn handle<S: TaskStore>(app: &App<S>, request: Request) -> Response<Body> {
    submit(app, &request).await.unwrap_or_else(ApiError::into_response)
}

async fn submit<S: TaskStore>(app: &App<S>, request: &Request) -> Result<Response<Body>, ApiError> {
    let client = request::client(request, &app.keys)?;
    let payload = validation::parse_submission(request::json_body(request)?)?;
    let task = service::submit(&app.store, &client, payload, Timestamp::now(), &app.ttl).await?;
    tracing::info!(task_id = %task.task_id, client_id = %client, "task received");
    let mut answer = response::json(StatusCode::ACCEPTED, &Accepted::from(&task));
    if let Ok(location) = HeaderValue::from_str(&format!("/tasks/{}", task.task_id)) {
        answer.headers_mut().insert(LOCATION, location);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests;
