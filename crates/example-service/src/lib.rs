//! An example external service. `POST /jobs` with `{"task_id","payload","callback_url","attempt"}`
//! answers 202, and after `delay` POSTs the outcome to `callback_url`:
//! `{"status":"failed","error":…}` when the payload has a string `"fail"`, otherwise
//! `{"status":"succeeded","result":{"echo":<payload>,"attempt":n}}`.
//!
//! [`Chaos`] makes it misbehave the way real services do — refuse jobs, answer slowly, call back
//! twice or never — for the fault tests; [`Stats`] counts what it was asked to do.
//!
//! `POST /_chaos` changes the misbehaviour while it runs (a game day flips a failure on and off
//! without a restart): a JSON object with any of `refuse`, `slow`, `duplicate_callback`,
//! `drop_callback` (ratios 0-1), `slow_ms`, `answer_after_ms`; it answers the settings now in
//! force, as `GET /_chaos` does. The binary listens on 127.0.0.1 only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use taskfleet_core::Timestamp;
use taskfleet_core::signing::{self, Signed, SigningSecrets};

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How long a job "runs" before the callback.
    pub delay: Duration,
    /// When set, jobs must carry a valid Standard Webhooks signature and callbacks are signed.
    pub signing: Option<SigningSecrets>,
    pub chaos: Chaos,
    pub stats: Arc<Stats>,
}

/// Ways to misbehave: probabilities in [0, 1], and a few fixed behaviours.
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// Answer 503 instead of accepting the job.
    pub refuse: f64,
    /// Every job takes this long to be answered (a service slow to accept).
    pub answer_after: Duration,
    /// Answer the `nth` job (counted from 1) 429 with `Retry-After: retry_after_seconds`.
    pub throttle: Option<Throttle>,
    /// Wait `slow_by` before answering (either way).
    pub slow: f64,
    pub slow_by: Duration,
    /// Send the callback twice.
    pub duplicate_callback: f64,
    /// Accept the job and never call back.
    pub drop_callback: f64,
}

/// A one-off 429 (see [`Chaos::throttle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub nth: usize,
    pub retry_after_seconds: u64,
}

/// How the service answered a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// Accepted, and the callback will never come.
    AcceptedAndLost,
    /// 503.
    Refused,
    /// 429 with `Retry-After`.
    Throttled,
}

/// One job request as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub task_id: String,
    pub attempt: u32,
    /// When the request arrived (wall clock, like the fleet's history).
    pub at: Timestamp,
    /// When it was answered, and how.
    pub answered_at: Timestamp,
    pub answer: Answer,
    /// The `traceparent` header it carried, if any.
    pub traceparent: Option<String>,
}

/// What the service was asked to do.
#[derive(Debug, Default)]
pub struct Stats {
    accepts: Mutex<HashMap<String, u32>>,
    requests: Mutex<HashMap<String, Vec<u32>>>,
    callback_urls: Mutex<HashMap<String, String>>,
    arrivals: Mutex<Vec<Arrival>>,
    /// Job requests so far (numbers them from 1).
    order: std::sync::atomic::AtomicUsize,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts a job request in flight while it lives.
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = stats.in_flight.fetch_add(1, SeqCst) + 1;
        stats.most_in_flight.fetch_max(now, SeqCst);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Stats {
    /// Every job request, in the order they were answered.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The most job requests the service was handling at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn journal(&self, job: &Job, at: Timestamp, answer: Answer) -> usize {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let arrival = Arrival {
            task_id: job.task_id.clone(),
            attempt: job.attempt,
            at,
            answered_at: Timestamp::now(),
            answer,
            traceparent: job.traceparent.clone(),
        };
        arrivals.push(arrival);
        arrivals.len()
    }

    /// The attempt numbers of the job requests per task (accepted or refused), in arrival order.
    pub fn requests(&self) -> HashMap<String, Vec<u32>> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Accepted jobs per task.
    pub fn accepts(&self) -> HashMap<String, u32> {
        self.accepts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The callback URL of the latest accepted job per task.
    pub fn callback_urls(&self) -> HashMap<String, String> {
        self.callback_urls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn count(map: &Mutex<HashMap<String, u32>>, task_id: &str) {
        *map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(task_id.to_owned()).or_default() += 1;
    }
}

#[derive(Debug, Deserialize)]
struct Job {
    task_id: String,
    payload: Value,
    callback_url: String,
    attempt: u32,
    /// From the request's `traceparent` header, not the body.
    #[serde(skip)]
    traceparent: Option<String>,
}

struct Service {
    settings: Settings,
    /// The misbehaviour in force: `settings.chaos`, then whatever `POST /_chaos` set.
    chaos: Mutex<Chaos>,
    client: reqwest::Client,
}

impl Service {
    fn chaos(&self) -> Chaos {
        self.chaos.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The runtime-adjustable part of [`Chaos`], as `/_chaos` reads and answers it.
#[derive(Debug, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct ChaosUpdate {
    pub refuse: Option<f64>,
    pub slow: Option<f64>,
    pub slow_ms: Option<u64>,
    pub answer_after_ms: Option<u64>,
    pub duplicate_callback: Option<f64>,
    pub drop_callback: Option<f64>,
}

impl ChaosUpdate {
    fn of(chaos: &Chaos) -> Self {
        Self {
            refuse: Some(chaos.refuse),
            slow: Some(chaos.slow),
            slow_ms: u64::try_from(chaos.slow_by.as_millis()).ok(),
            answer_after_ms: u64::try_from(chaos.answer_after.as_millis()).ok(),
            duplicate_callback: Some(chaos.duplicate_callback),
            drop_callback: Some(chaos.drop_callback),
        }
    }

    /// Applies the fields given; a ratio outside 0-1 is an error.
    fn apply(&self, chaos: &mut Chaos) -> Result<(), String> {
        for (name, ratio) in [
            ("refuse", self.refuse),
            ("slow", self.slow),
            ("duplicate_callback", self.duplicate_callback),
            ("drop_callback", self.drop_callback),
        ] {
            if ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(format!("{name} must be a ratio from 0 to 1"));
            }
        }
        if let Some(v) = self.refuse {
            chaos.refuse = v;
        }
        if let Some(v) = self.slow {
            chaos.slow = v;
        }
        if let Some(v) = self.slow_ms {
            chaos.slow_by = Duration::from_millis(v);
        }
        if let Some(v) = self.answer_after_ms {
            chaos.answer_after = Duration::from_millis(v);
        }
        if let Some(v) = self.duplicate_callback {
            chaos.duplicate_callback = v;
        }
        if let Some(v) = self.drop_callback {
            chaos.drop_callback = v;
        }
        Ok(())
    }
}

/// The largest job body the service reads.
pub const JOB_BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router(settings: Settings) -> Router {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let chaos = Mutex::new(settings.chaos.clone());
    Router::new()
        .route("/jobs", post(accept))
        .route("/_chaos", get(show_chaos).post(change_chaos))
        // Jobs carry payloads of up to 4 MiB (axum's default limit is 2 MB).
        .layer(axum::extract::DefaultBodyLimit::max(JOB_BODY_LIMIT))
        .with_state(Arc::new(Service { settings, chaos, client }))
}

async fn show_chaos(State(service): State<Arc<Service>>) -> Json<ChaosUpdate> {
    Json(ChaosUpdate::of(&service.chaos()))
}

async fn change_chaos(State(service): State<Arc<Service>>, body: Bytes) -> (StatusCode, Json<Value>) {
    let update: ChaosUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({"error": error.to_string()}))),
    };
    let mut chaos = service.chaos.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(error) = update.apply(&mut chaos) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": error})));
    }
    let now = ChaosUpdate::of(&chaos);
    tracing::info!(?now, "chaos changed");
    (StatusCode::OK, Json(serde_json::to_value(now).unwrap_or_default()))
}

async fn accept(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Json<Value>) {
    if let Some(secrets) = &service.settings.signing {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let verified = match (header(signing::ID), header(signing::TIMESTAMP), header(signing::SIGNATURE)) {
            (Some(id), Some(timestamp), Some(signature)) => {
                secrets.verify(&Signed { id, timestamp, signature }, &body, Timestamp::now()).is_ok()
            }
            _ => false,
        };
        if !verified {
            return (
                StatusCode::UNAUTHORIZED,
                HeaderMap::new(),
                Json(json!({"error": "bad or missing webhook signature"})),
            );
        }
    }
    let mut job: Job = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(error) => return (StatusCode::BAD_REQUEST, HeaderMap::new(), Json(json!({"error": error.to_string()}))),
    };
    job.traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let chaos = &service.chaos();
    let stats = &service.settings.stats;
    let arrived = Timestamp::now();
    let in_flight = InFlight::enter(stats);
    let number = stats.order.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    service
        .settings
        .stats
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(job.task_id.clone())
        .or_default()
        .push(job.attempt);
    if fastrand::f64() < chaos.slow {
        tokio::time::sleep(chaos.slow_by).await;
    }
    tokio::time::sleep(chaos.answer_after).await;
    if let Some(throttle) = chaos.throttle.filter(|t| t.nth == number) {
        tracing::info!(task_id = %job.task_id, attempt = job.attempt, "job throttled (chaos)");
        stats.journal(&job, arrived, Answer::Throttled);
        drop(in_flight);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", throttle.retry_after_seconds.into());
        return (StatusCode::TOO_MANY_REQUESTS, headers, Json(json!({"error": "slow down"})));
    }
    if fastrand::f64() < chaos.refuse {
        tracing::info!(task_id = %job.task_id, attempt = job.attempt, "job refused (chaos)");
        stats.journal(&job, arrived, Answer::Refused);
        return (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new(), Json(json!({"error": "try again later"})));
    }
    Stats::count(&service.settings.stats.accepts, &job.task_id);
    service
        .settings
        .stats
        .callback_urls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(job.task_id.clone(), job.callback_url.clone());
    tracing::info!(task_id = %job.task_id, attempt = job.attempt, "job accepted");
    let task_id = job.task_id.clone();
    let (drop_it, twice) = (fastrand::f64() < chaos.drop_callback, fastrand::f64() < chaos.duplicate_callback);
    stats.journal(&job, arrived, if drop_it { Answer::AcceptedAndLost } else { Answer::Accepted });
    drop(in_flight);
    if !drop_it {
        tokio::spawn(async move {
            tokio::time::sleep(service.settings.delay).await;
            let outcome = outcome_of(&job);
            let signing = service.settings.signing.as_ref();
            call_back(&service.client, signing, &job.callback_url, &outcome).await;
            if twice {
                call_back(&service.client, signing, &job.callback_url, &outcome).await;
            }
        });
    }
    (StatusCode::ACCEPTED, HeaderMap::new(), Json(json!({"accepted": task_id})))
}

fn outcome_of(job: &Job) -> Value {
    match job.payload.get("fail").and_then(Value::as_str) {
        Some(reason) => json!({"status": "failed", "error": reason}),
        None => json!({"status": "succeeded", "result": {"echo": job.payload, "attempt": job.attempt}}),
    }
}

/// Delivers a callback, retrying server errors and network failures a few times.
async fn call_back(client: &reqwest::Client, signing: Option<&SigningSecrets>, url: &str, outcome: &Value) {
    let body = outcome.to_string();
    let message_id = format!("cb_{}", fastrand::u64(..));
    for attempt in 0..5u32 {
        let mut request = client.post(url).header("content-type", "application/json");
        if let Some(secrets) = signing {
            // Signed afresh per delivery (a fresh timestamp), under one message id.
            let signed = secrets.sign(&message_id, Timestamp::now(), body.as_bytes());
            request = request
                .header(signing::ID, signed.id)
                .header(signing::TIMESTAMP, signed.timestamp)
                .header(signing::SIGNATURE, signed.signature);
        }
        match request.body(body.clone()).send().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chaos_update_changes_only_what_it_names() {
        let mut chaos = Chaos { refuse: 0.1, slow_by: Duration::from_millis(2_000), ..Chaos::default() };
        let update: ChaosUpdate = serde_json::from_str(r#"{"refuse": 1, "answer_after_ms": 50}"#).unwrap();
        update.apply(&mut chaos).unwrap();
        assert_eq!(chaos.refuse, 1.0);
        assert_eq!(chaos.answer_after, Duration::from_millis(50));
        assert_eq!(chaos.slow_by, Duration::from_millis(2_000), "untouched");
        let now = ChaosUpdate::of(&chaos);
        assert_eq!((now.refuse, now.slow_ms, now.drop_callback), (Some(1.0), Some(2_000), Some(0.0)));
        let bad: ChaosUpdate = serde_json::from_str(r#"{"drop_callback": 1.5}"#).unwrap();
        assert!(bad.apply(&mut chaos).is_err());
        assert_eq!(chaos.drop_callback, 0.0);
    }
}
