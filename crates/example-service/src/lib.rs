//! An example external service. `POST /jobs` with `{"task_id","payload","callback_url","attempt"}`
//! answers 202, and after `delay` POSTs the outcome to `callback_url`:
//! `{"status":"failed","error":…}` when the payload has a string `"fail"`, otherwise
//! `{"status":"succeeded","result":{"echo":<payload>,"attempt":n}}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a job "runs" before the callback.
    pub delay: Duration,
}

#[derive(Debug, Deserialize)]
struct Job {
    task_id: String,
    payload: Value,
    callback_url: String,
    attempt: u32,
}

struct Service {
    settings: Settings,
    client: reqwest::Client,
}

pub fn router(settings: Settings) -> Router {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    Router::new().route("/jobs", post(accept)).with_state(Arc::new(Service { settings, client }))
}

async fn accept(
    State(service): State<Arc<Service>>,
    job: Result<Json<Job>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let Json(job) = match job {
        Ok(job) => job,
        Err(rejection) => return (StatusCode::BAD_REQUEST, Json(json!({"error": rejection.body_text()}))),
    };
    tracing::info!(task_id = %job.task_id, attempt = job.attempt, "job accepted");
    let task_id = job.task_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(service.settings.delay).await;
        let outcome = outcome_of(&job);
        call_back(&service.client, &job.callback_url, &outcome).await;
    });
    (StatusCode::ACCEPTED, Json(json!({"accepted": task_id})))
}

fn outcome_of(job: &Job) -> Value {
    match job.payload.get("fail").and_then(Value::as_str) {
        Some(reason) => json!({"status": "failed", "error": reason}),
        None => json!({"status": "succeeded", "result": {"echo": job.payload, "attempt": job.attempt}}),
    }
}

/// Delivers a callback, retrying server errors and network failures a few times.
async fn call_back(client: &reqwest::Client, url: &str, outcome: &Value) {
    for attempt in 0..5u32 {
        match client.post(url).json(outcome).send().await {
            Ok(answer) if !answer.status().is_server_error() => {
                tracing::info!(status = answer.status().as_u16(), "callback delivered");
                return;
            }
            Ok(answer) => tracing::warn!(status = answer.status().as_u16(), "callback refused; retrying"),
            Err(error) => tracing::warn!(error = %error.without_url(), "callback failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::error!("callback given up");
}

/// Serves until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, settings: Settings) -> std::io::Result<()> {
    axum::serve(listener, router(settings)).await
}
