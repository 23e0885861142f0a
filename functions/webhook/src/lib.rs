//! `POST /callbacks/{task_id}`, called by the external service:
//! `{"status":"succeeded","result":…}` → DONE, `{"status":"failed","error":"…"}` → FAILED.
//! The same callback again answers 200 and changes nothing; a different outcome for a task
//! already finished answers 409.

use lambda_http::http::StatusCode;
use serde_json::json;
use taskfleet_adapters::{ConfigError, DynamoStore, SdkConfig, config};
use taskfleet_api::{ApiError, Body, Request, Response, request, response};
use taskfleet_core::ports::TaskStore;
use taskfleet_core::service::{self, CallbackResult};
use taskfleet_core::{Timestamp, TtlPolicy, validation};

/// Everything the function needs, built once per cold start.
pub struct App<S> {
    pub store: S,
    pub ttl: TtlPolicy,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { store: DynamoStore::from_env(sdk)?, ttl: config::ttl_policy()? })
    }
}

pub async fn handle<S: TaskStore>(app: &App<S>, request: Request) -> Response<Body> {
    callback(app, &request).await.unwrap_or_else(ApiError::into_response)
}

async fn callback<S: TaskStore>(app: &App<S>, request: &Request) -> Result<Response<Body>, ApiError> {
    let task_id = request::task_id(request)?;
    let outcome = validation::parse_callback(request::json_body(request)?)?;
    let answer = |task: &taskfleet_core::Task| {
        response::json(StatusCode::OK, &json!({"task_id": task.task_id.as_str(), "status": task.status.as_str()}))
    };
    match service::record_outcome(&app.store, &task_id, outcome, Timestamp::now(), &app.ttl).await? {
        CallbackResult::Recorded(task) => {
            tracing::info!(task_id = %task.task_id, status = %task.status, attempts = task.attempts, "task finished");
            Ok(answer(&task))
        }
        CallbackResult::Repeated(task) => {
            tracing::info!(task_id = %task.task_id, "repeated callback ignored");
            Ok(answer(&task))
        }
        CallbackResult::Conflict(task) => {
            Err(ApiError::Conflict(format!("the task is {} and cannot take this outcome", task.status)))
        }
        CallbackResult::Missing => Err(ApiError::NotFound),
    }
}

#[cfg(test)]
mod tests;
