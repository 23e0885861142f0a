use super::*;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use lambda_http::request::LambdaRequest;
use serde_json::Value;
use taskfleet_core::blob::{Content, DEFAULT_INLINE_MAX_BYTES};
use taskfleet_core::dispatch::{Step, Timer};
use taskfleet_core::lifecycle::{CANCELLED, Transition};
use taskfleet_core::memory::{MemoryStore, RecordedEvents};
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::{ExternalService, Job, WriteOutcome};
use taskfleet_core::retry::RetryPolicy;
use taskfleet_core::secrets::FixedSecrets;
use taskfleet_core::service::HandOver;
use taskfleet_core::signing::SigningSecrets;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token::{self, CallbackToken};
use taskfleet_core::{ClientId, ExternalError, Task, TaskId, TaskStatus, Timestamp, TtlPolicy};

const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;
const CALLBACK_TIMEOUT_SECONDS: u64 = 300;
/// The webhook's public base, as the caller puts it into callback URLs (API Gateway's
/// `$default` stage: no stage prefix in the path).
const CALLBACK_BASE: &str = "https://aaaaaaaaaa.execute-api.us-west-2.amazonaws.com";
const CALLBACK_ROUTE: &str = "POST /callbacks/{task_id}";
const HEARTBEAT_ROUTE: &str = "POST /callbacks/{task_id}/heartbeat";

/// An API Gateway HTTP API (payload format 2.0) event as Lambda receives it, trimmed from
/// aws_lambda_events' `example-apigw-v2-request-no-authorizer.json` and routed to
/// `POST /callbacks/{task_id}`. Route key, path, query, path parameters, headers and body are set
/// per test.
const CALLBACK_EVENT: &str = r#"{
    "version": "2.0",
    "routeKey": "POST /callbacks/{task_id}",
    "rawPath": "/callbacks/",
    "rawQueryString": "",
    "headers": {
        "accept": "*/*",
        "host": "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
        "user-agent": "external-service/1.0",
        "x-amzn-trace-id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
        "x-forwarded-for": "1.2.3.4",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https"
    },
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "aaaaaaaaaa",
        "domainName": "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
        "domainPrefix": "aaaaaaaaaa",
        "http": {
            "method": "POST",
            "path": "/callbacks/",
            "protocol": "HTTP/1.1",
            "sourceIp": "1.2.3.4",
            "userAgent": "external-service/1.0"
        },
        "requestId": "LV7fzho-PHcEJPw=",
        "routeKey": "POST /callbacks/{task_id}",
        "stage": "$default",
        "time": "21/Apr/2020:15:08:21 +0000",
        "timeEpoch": 1587481701067
    },
    "isBase64Encoded": false
}"#;

fn policies() -> Policies {
    Policies {
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
        retry: RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(10), max_delay: Duration::from_secs(60) },
        callback_timeout: Duration::from_secs(CALLBACK_TIMEOUT_SECONDS),
        dispatch_grace: Duration::from_secs(30),
    }
}

type TestApp = App<MemoryStore, MemoryBlobs>;

fn app() -> (TestApp, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App {
        store: MemoryStore::new(),
        blobs: Blobs::new(MemoryBlobs::new(), DEFAULT_INLINE_MAX_BYTES),
        policies: policies(),
        events: events.clone(),
        signing: None,
    };
    (app, events)
}

/// An external service that accepts every job and keeps the callback URL it was given.
#[derive(Default)]
struct Service {
    callback_urls: Mutex<Vec<String>>,
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        self.callback_urls.lock().unwrap().push(job.callback_url.to_owned());
        Ok(())
    }
}

/// Fires the deadline timer the dispatcher set for `attempt` of a task when its callback was due
/// by `due_at`; answers the task if it timed the attempt out.
async fn fire_deadline(
    app: &App<MemoryStore, MemoryBlobs>,
    task_id: &TaskId,
    (attempt, due_at): (u32, Timestamp),
    now: Timestamp,
) -> Option<Task> {
    let timer = Timer { task_id: task_id.clone(), attempt, step: Step::Deadline, due_at };
    service::deadline(&app.store, &timer, now, &app.policies).await.unwrap()
}

/// What the external service was told for one attempt: where to call back.
#[derive(Debug, Clone)]
struct Attempt {
    task_id: TaskId,
    attempt: u32,
    token: String,
}

impl Attempt {
    /// Reads the credentials out of a callback URL, checking its exact shape.
    fn from_url(url: &str) -> Self {
        let rest = url.strip_prefix(&format!("{CALLBACK_BASE}/callbacks/")).unwrap_or_else(|| panic!("{url}"));
        let (task_id, query) = rest.split_once("?attempt=").unwrap();
        let (attempt, token) = query.split_once("&token=").unwrap();
        assert!(token::is_well_formed(token), "{url}");
        Self { task_id: TaskId::parse(task_id).unwrap(), attempt: attempt.parse().unwrap(), token: token.to_owned() }
    }

    fn query(&self) -> String {
        format!("attempt={}&token={}", self.attempt, self.token)
    }
}

fn minutes_ago(minutes: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() - minutes * 60_000)
}

/// A task created five minutes ago.
async fn received(app: &TestApp) -> Task {
    let created = minutes_ago(5);
    let task =
        Task::received(ClientId::parse("alpha").unwrap(), created, created.plus_seconds(TASK_TTL).as_epoch_seconds());
    let payload_expires_at = app.policies.ttl.payload_expiry(created);
    app.store.insert(&task, &Content::Inline(json!({"n": 1})), payload_expires_at).await.unwrap();
    task
}

/// Hands attempt `attempt` of `task_id` over, as the caller does, a minute ago; what the
/// external service received.
async fn hand_over(app: &TestApp, task_id: &TaskId, attempt: u32) -> Attempt {
    let service = Service::default();
    let outcome = service::hand_over(
        &app.store,
        &app.blobs,
        &service,
        (task_id, attempt),
        CALLBACK_BASE,
        (minutes_ago(1), 0.5),
        &app.policies,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, HandOver::Accepted { .. }), "{outcome:?}");
    let urls = service.callback_urls.lock().unwrap();
    assert_eq!(urls.len(), 1);
    let handed = Attempt::from_url(&urls[0]);
    assert_eq!((&handed.task_id, handed.attempt), (task_id, attempt));
    handed
}

/// A task handed to the external service as attempt 1; its callback credentials.
async fn in_progress(app: &TestApp) -> (Task, Attempt) {
    let task = received(app).await;
    let attempt = hand_over(app, &task.task_id, 1).await;
    (current(app, &task.task_id).await, attempt)
}

async fn current(app: &TestApp, task_id: &TaskId) -> Task {
    app.store.get(task_id).await.unwrap().unwrap()
}

/// Builds the request the way lambda_http does in Lambda: the event JSON is deserialized into a
/// `LambdaRequest` and converted into an `http::Request`. The route key is set where API Gateway
/// sets it, at the top and in the request context; the query both raw and parsed.
fn request(
    route_key: &str,
    path: &str,
    task_id: &str,
    query: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> Request {
    let mut event: Value = serde_json::from_str(CALLBACK_EVENT).unwrap();
    event["routeKey"] = json!(route_key);
    event["requestContext"]["routeKey"] = json!(route_key);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"task_id": task_id});
    event["rawQueryString"] = json!(query);
    if !query.is_empty() {
        let parameters: serde_json::Map<String, Value> = query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), json!(value))
            })
            .collect();
        event["queryStringParameters"] = Value::Object(parameters);
    }
    if let Some(content_type) = content_type {
        event["headers"]["content-type"] = json!(content_type);
    }
    let body = body.unwrap_or("");
    event["headers"]["content-length"] = json!(body.len().to_string());
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    assert!(matches!(lambda, LambdaRequest::ApiGatewayV2(_)));
    Request::from(lambda)
}

/// `POST /callbacks/{task_id}?{query}` with a body of type `content_type`.
fn callback_with(task_id: &str, query: &str, content_type: Option<&str>, body: &str) -> Request {
    request(CALLBACK_ROUTE, &format!("/callbacks/{task_id}"), task_id, query, content_type, Some(body))
}

/// The callback the external service makes for `attempt`, with a JSON body.
fn callback(attempt: &Attempt, body: &str) -> Request {
    callback_with(attempt.task_id.as_str(), &attempt.query(), Some("application/json"), body)
}

/// `POST /callbacks/{task_id}/heartbeat?{query}`, without a body.
fn heartbeat_with(task_id: &str, query: &str) -> Request {
    request(HEARTBEAT_ROUTE, &format!("/callbacks/{task_id}/heartbeat"), task_id, query, None, None)
}

fn heartbeat(attempt: &Attempt) -> Request {
    heartbeat_with(attempt.task_id.as_str(), &attempt.query())
}

fn body_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

/// Asserts a JSON error answer and returns its message.
fn assert_error(response: &Response<Body>, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
    let body = body_json(response);
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

const SUCCEEDED: &str = r#"{"status":"succeeded","result":{"answer":42}}"#;

// ---------------------------------------------------------------------------------------------
// Outcomes

#[tokio::test]
async fn a_success_callback_finishes_the_task_with_its_result() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let before = Timestamp::now();
    let response = handle(
        &app,
        callback(&attempt, r#"{"status": "succeeded", "result": {"answer": 42, "parts": [1, 2.5, null]}}"#),
    )
    .await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
    assert_eq!(body_json(&response), json!({"task_id": task.task_id.as_str(), "status": "DONE"}));
    let stored = current(&app, &task.task_id).await;
    assert_eq!(stored.status, TaskStatus::Done);
    assert_eq!(stored.result, Some(Content::Inline(json!({"answer": 42, "parts": [1, 2.5, null]}))));
    assert_eq!(app.blobs.store.keys(), Vec::<String>::new(), "a small result stays inline");
    assert_eq!(stored.error, None);
    assert_eq!(stored.attempts, 1);
    assert_eq!(app.store.payload(&task.task_id).await.unwrap(), Some(Content::Inline(json!({"n": 1}))));
    assert_eq!(stored.created_at, task.created_at);
    assert_eq!(stored.callback_tokens, BTreeMap::from([(1, token::digest(&attempt.token))]));
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.due_at, stored.updated_at, "a finished task is due when it finished");
    // The TTL is reset to the result retention from the moment the task finished.
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(stored.history[..task.history.len()], task.history[..]);
    assert_eq!(
        stored.history[task.history.len()..],
        [HistoryEntry { status: TaskStatus::Done, at: stored.updated_at, attempt: 1, reason: None }]
    );
    // The latency runs from creation (five minutes ago) to now.
    let latency = stored.updated_at.millis_since(stored.created_at);
    assert!(latency >= 300_000, "{latency}");
    assert_eq!(events.events(), [TaskEvent::Finished { status: TaskStatus::Done, latency_ms: Some(latency) }]);
}

#[tokio::test]
async fn a_failure_callback_fails_the_task_with_its_error() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let response = handle(&app, callback(&attempt, r#"{"status":"failed","error":"no capacity left"}"#)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(body_json(&response), json!({"task_id": task.task_id.as_str(), "status": "FAILED"}));
    let stored = current(&app, &task.task_id).await;
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.error.as_deref(), Some("no capacity left"));
    assert_eq!(stored.result, None);
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(
        stored.history.last(),
        Some(&HistoryEntry {
            status: TaskStatus::Failed,
            at: stored.updated_at,
            attempt: 1,
            reason: Some("no capacity left".into())
        })
    );
    let latency = stored.updated_at.millis_since(stored.created_at);
    assert_eq!(events.events(), [TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(latency) }]);

    // Repeating it is harmless; succeeding afterwards is a conflict.
    let again = handle(&app, callback(&attempt, r#"{"status":"failed","error":"no capacity left"}"#)).await;
    assert_eq!(again.status().as_u16(), 200);
    let late = handle(&app, callback(&attempt, r#"{"status":"succeeded","result":{}}"#)).await;
    assert_eq!(assert_error(&late, 409, "conflict"), "the attempt already ended: the task is FAILED");
    assert_eq!(current(&app, &task.task_id).await, stored);
    assert_eq!(events.events().len(), 1);
}

#[tokio::test]
async fn the_same_callback_again_answers_200_and_changes_nothing() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let first = handle(&app, callback(&attempt, SUCCEEDED)).await;
    assert_eq!(first.status().as_u16(), 200);
    let after_first = current(&app, &task.task_id).await;

    // Same outcome, different formatting: still the same result.
    let again = handle(&app, callback(&attempt, "{ \"result\": { \"answer\": 42 }, \"status\": \"succeeded\" }")).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(body_json(&again), body_json(&first));
    assert_eq!(current(&app, &task.task_id).await, after_first);
    assert_eq!(events.events().len(), 1, "one finish, one event: {:?}", events.events());
}

#[tokio::test]
async fn a_different_outcome_for_a_finished_attempt_answers_409_and_changes_nothing() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    assert_eq!(handle(&app, callback(&attempt, SUCCEEDED)).await.status().as_u16(), 200);
    let done = current(&app, &task.task_id).await;

    let failed = handle(&app, callback(&attempt, r#"{"status":"failed","error":"too late"}"#)).await;
    assert_eq!(assert_error(&failed, 409, "conflict"), "the attempt already ended: the task is DONE");

    let other_result = handle(&app, callback(&attempt, r#"{"status":"succeeded","result":{"answer":43}}"#)).await;
    assert_error(&other_result, 409, "conflict");
    assert_eq!(current(&app, &task.task_id).await, done);
    assert_eq!(events.events().len(), 1);
}

#[tokio::test]
async fn a_failure_reported_as_cancelled_is_the_services_own_outcome_not_a_cancel() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let reported = r#"{"status":"failed","error":"cancelled"}"#;
    assert_eq!(handle(&app, callback(&attempt, reported)).await.status().as_u16(), 200);
    let failed = current(&app, &task.task_id).await;
    assert_eq!((failed.error.as_deref(), failed.cancelled), (Some(CANCELLED), false));

    assert_eq!(handle(&app, callback(&attempt, reported)).await.status().as_u16(), 200, "a repeat");
    let other = handle(&app, callback(&attempt, SUCCEEDED)).await;
    assert_eq!(assert_error(&other, 409, "conflict"), "the attempt already ended: the task is FAILED");
    assert_eq!(current(&app, &task.task_id).await, failed);
    assert_eq!(events.events().len(), 1);
}

/// A success callback whose result is `{"blob":"xxx…"}`, `size` bytes of compact JSON.
fn large_result(size: usize) -> (Value, String) {
    let result = json!({"blob": "x".repeat(size - 11)});
    assert_eq!(result.to_string().len(), size);
    (result.clone(), json!({"status": "succeeded", "result": result}).to_string())
}

#[tokio::test]
async fn a_large_result_is_kept_in_the_blob_store() {
    let (mut app, events) = app();
    app.blobs.inline_max = 64;
    let (task, attempt) = in_progress(&app).await;
    let (result, body) = large_result(200);
    let response = handle(&app, callback(&attempt, &body)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(body_json(&response), json!({"task_id": task.task_id.as_str(), "status": "DONE"}));

    let stored = current(&app, &task.task_id).await;
    assert_eq!(stored.status, TaskStatus::Done);
    let Some(Content::Stored { key }) = &stored.result else { panic!("not stored apart: {:?}", stored.result) };
    assert!(key.starts_with(&format!("results/{}/1/", task.task_id)), "{key}");
    assert_eq!(app.blobs.store.keys(), std::slice::from_ref(key));
    let blob = app.blobs.store.get(key).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&blob).unwrap(), result);
    assert_eq!(events.events().len(), 1);

    // The same large result again: a repeat, nothing new written; another one: a conflict.
    let again = handle(&app, callback(&attempt, &body)).await;
    assert_eq!(again.status().as_u16(), 200);
    let (_, other) = large_result(201);
    assert_error(&handle(&app, callback(&attempt, &other)).await, 409, "conflict");
    assert_eq!(app.blobs.store.keys(), std::slice::from_ref(key));
    assert_eq!(current(&app, &task.task_id).await, stored);
    assert_eq!(events.events().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[tokio::test]
async fn a_wrong_token_is_refused_with_401_and_changes_nothing() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let (_, other_task) = in_progress(&app).await;
    let forged = CallbackToken::generate().unwrap();
    let id = task.task_id.as_str();
    for query in [
        // A well-formed token that is not this attempt's.
        format!("attempt=1&token={}", forged.expose()),
        // Another task's valid token.
        format!("attempt=1&token={}", other_task.token),
        // Not shaped like a token at all.
        "attempt=1&token=abc".to_owned(),
        format!("attempt=1&token={}x", attempt.token),
        // The digest that is stored, presented as if it were the token.
        format!("attempt=1&token={}", token::digest(&attempt.token)),
    ] {
        let response = handle(&app, callback_with(id, &query, Some("application/json"), SUCCEEDED)).await;
        let message = assert_error(&response, 401, "invalid_callback_token");
        assert_eq!(message, "the callback URL's attempt and token do not match this task", "{query}");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
    // The right one still works afterwards.
    assert_eq!(handle(&app, callback(&attempt, SUCCEEDED)).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_forged_callback_with_a_large_result_writes_nothing_anywhere() {
    let (mut app, events) = app();
    app.blobs.inline_max = 64;
    let (task, attempt) = in_progress(&app).await;
    let (_, body) = large_result(10_000);
    let forged = Attempt { token: CallbackToken::generate().unwrap().expose().to_owned(), ..attempt.clone() };
    let response = handle(&app, callback(&forged, &body)).await;
    assert_error(&response, 401, "invalid_callback_token");
    // Nor does a well-formed token under a number that is not the current attempt's.
    let wrong_attempt = Attempt { attempt: 2, ..attempt.clone() };
    assert_error(&handle(&app, callback(&wrong_attempt, &body)).await, 401, "invalid_callback_token");
    // Nor a callback for a task that does not exist.
    let stranger = Attempt { task_id: TaskId::generate(), ..forged };
    assert_error(&handle(&app, callback(&stranger, &body)).await, 401, "invalid_callback_token");

    assert_eq!(app.blobs.store.keys(), Vec::<String>::new(), "no blob for an unauthenticated caller");
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
    // The real callback is then stored as usual.
    assert_eq!(handle(&app, callback(&attempt, &body)).await.status().as_u16(), 200);
    assert_eq!(app.blobs.store.keys().len(), 1);
}

#[tokio::test]
async fn missing_or_malformed_credentials_are_refused_with_401() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    let id = task.task_id.as_str();
    for query in [
        String::new(),
        format!("token={}", attempt.token),
        "attempt=1".to_owned(),
        format!("attempt=0&token={}", attempt.token),
        format!("attempt=one&token={}", attempt.token),
        format!("attempt=-1&token={}", attempt.token),
        format!("attempt=&token={}", attempt.token),
    ] {
        let response = handle(&app, callback_with(id, &query, Some("application/json"), SUCCEEDED)).await;
        assert_error(&response, 401, "invalid_callback_token");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
}

#[tokio::test]
async fn the_right_token_under_another_attempt_number_is_refused_with_401() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    for number in [2, 7] {
        let wrong = Attempt { attempt: number, ..attempt.clone() };
        assert_error(&handle(&app, callback(&wrong, SUCCEEDED)).await, 401, "invalid_callback_token");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
}

#[tokio::test]
async fn credentials_are_checked_before_the_body() {
    let (app, _) = app();
    let (task, _) = in_progress(&app).await;
    let response = handle(&app, callback_with(task.task_id.as_str(), "", Some("text/plain"), "nonsense")).await;
    assert_error(&response, 401, "invalid_callback_token");
}

#[tokio::test]
async fn a_task_never_handed_over_has_no_token_to_match() {
    let (app, _) = app();
    let task = received(&app).await;
    let guess = Attempt {
        task_id: task.task_id.clone(),
        attempt: 1,
        token: CallbackToken::generate().unwrap().expose().into(),
    };
    assert_error(&handle(&app, callback(&guess, SUCCEEDED)).await, 401, "invalid_callback_token");
    assert_eq!(current(&app, &task.task_id).await, task);
}

// ---------------------------------------------------------------------------------------------
// Attempts that are no longer current

#[tokio::test]
async fn a_callback_for_an_attempt_that_timed_out_and_was_retried_is_stale() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    // The sweeper runs after the callback deadline (and before the task expires): attempt 1
    // timed out, another will come.
    let far_future = Timestamp::now().plus_seconds(CALLBACK_TIMEOUT_SECONDS + 60);
    let running = current(&app, &task.task_id).await;
    let timed_out = fire_deadline(&app, &task.task_id, (running.attempts, running.due_at), far_future).await;
    assert!(timed_out.is_some());
    let retried = current(&app, &task.task_id).await;
    assert_eq!((retried.status, retried.attempts), (TaskStatus::Received, 1));

    let response = handle(&app, callback(&attempt, SUCCEEDED)).await;
    let message = assert_error(&response, 409, "stale_attempt");
    assert_eq!(message, "this callback belongs to an attempt that is no longer current; it was ignored");
    assert_eq!(current(&app, &task.task_id).await, retried);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn only_the_current_attempts_callback_counts() {
    let (app, events) = app();
    let (task, first) = in_progress(&app).await;
    let now = Timestamp::now();
    let retry = Transition::retry(&task.task_id, 1, "attempt 1: no callback within 300 s", now, now);
    assert!(matches!(app.store.apply(&retry).await.unwrap(), WriteOutcome::Applied(_)));
    let second = hand_over(&app, &task.task_id, 2).await;
    assert_ne!(first.token, second.token, "every attempt has its own token");
    let started = current(&app, &task.task_id).await;
    assert_eq!(
        started.callback_tokens,
        BTreeMap::from([(1, token::digest(&first.token)), (2, token::digest(&second.token))])
    );

    // Attempt 1 reports late: ignored. Attempt 1's token under attempt 2's number: refused.
    assert_error(&handle(&app, callback(&first, SUCCEEDED)).await, 409, "stale_attempt");
    let mixed = Attempt { attempt: 2, ..first.clone() };
    assert_error(&handle(&app, callback(&mixed, SUCCEEDED)).await, 401, "invalid_callback_token");
    assert_eq!(current(&app, &task.task_id).await, started);

    // Attempt 2 reports: recorded.
    let response = handle(&app, callback(&second, r#"{"status":"succeeded","result":{"attempt":2}}"#)).await;
    assert_eq!(response.status().as_u16(), 200);
    let done = current(&app, &task.task_id).await;
    assert_eq!(
        (done.status, done.attempts, done.result),
        (TaskStatus::Done, 2, Some(Content::Inline(json!({"attempt": 2}))))
    );
    assert_eq!(
        done.history.iter().map(|e| (e.status, e.attempt)).collect::<Vec<_>>(),
        [
            (TaskStatus::Received, 0),
            (TaskStatus::InProgress, 1),
            (TaskStatus::Received, 1),
            (TaskStatus::InProgress, 2),
            (TaskStatus::Done, 2)
        ]
    );
    assert_eq!(events.events().len(), 1);
    // And attempt 1 reporting after that is still stale, not a conflict.
    assert_error(&handle(&app, callback(&first, SUCCEEDED)).await, 409, "stale_attempt");
}

#[tokio::test]
async fn a_callback_for_a_cancelled_task_is_stale() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let ttl = app.policies.ttl;
    let cancelled = service::cancel(&app.store, &task.client_id, &task.task_id, Timestamp::now(), &ttl).await.unwrap();
    assert!(matches!(cancelled, service::OwnerAction::Applied(_)), "{cancelled:?}");
    let before = current(&app, &task.task_id).await;
    assert_eq!((before.error.as_deref(), before.cancelled), (Some(CANCELLED), true));

    // Even a failure in the very words of the cancel: the service did not end this attempt.
    for body in [SUCCEEDED, r#"{"status":"failed","error":"gave up"}"#, r#"{"status":"failed","error":"cancelled"}"#] {
        let response = handle(&app, callback(&attempt, body)).await;
        assert_error(&response, 409, "stale_attempt");
    }
    assert_error(&handle(&app, heartbeat(&attempt)).await, 409, "stale_attempt");
    assert_eq!(current(&app, &task.task_id).await, before);
    assert_eq!(events.events(), []);
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

#[tokio::test]
async fn a_heartbeat_moves_the_callback_deadline() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    // Handed over a minute ago: due four minutes from now.
    assert_eq!(task.due_at, task.updated_at.plus_seconds(CALLBACK_TIMEOUT_SECONDS));
    let before = Timestamp::now();
    let response = handle(&app, heartbeat(&attempt)).await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
    let stored = current(&app, &task.task_id).await;
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert_eq!(stored.attempts, 1);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.due_at, stored.updated_at.plus_seconds(CALLBACK_TIMEOUT_SECONDS));
    assert!(stored.due_at > task.due_at);
    assert_eq!(stored.history, task.history, "a heartbeat is not a step of the task's life");
    let extended = app.policies.ttl.new_task_expiry(stored.updated_at);
    assert_eq!(stored.expires_at, extended, "a heartbeat gives the task a new TTL, so a long job is not lost to it");
    assert_eq!(
        body_json(&response),
        json!({
            "task_id": task.task_id.as_str(),
            "status": "IN_PROGRESS",
            "callback_due_at": stored.due_at.to_rfc3339()
        })
    );
    assert_eq!(events.events(), []);

    // The old deadline's timer, when it fires, leaves the attempt alone.
    let at_old_deadline = task.due_at.plus_seconds(1);
    assert_eq!(fire_deadline(&app, &task.task_id, (task.attempts, task.due_at), at_old_deadline).await, None);
    assert_eq!(current(&app, &task.task_id).await, stored);

    // The callback still finishes the attempt.
    assert_eq!(handle(&app, callback(&attempt, SUCCEEDED)).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_heartbeat_needs_the_attempts_credentials() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    let id = task.task_id.as_str();
    for query in [
        format!("attempt=1&token={}", CallbackToken::generate().unwrap().expose()),
        format!("attempt=2&token={}", attempt.token),
        format!("token={}", attempt.token),
        "attempt=1".to_owned(),
        String::new(),
    ] {
        assert_error(&handle(&app, heartbeat_with(id, &query)).await, 401, "invalid_callback_token");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
}

#[tokio::test]
async fn a_heartbeat_for_a_finished_or_unknown_task_changes_nothing() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    assert_eq!(handle(&app, callback(&attempt, SUCCEEDED)).await.status().as_u16(), 200);
    let done = current(&app, &task.task_id).await;
    assert_error(&handle(&app, heartbeat(&attempt)).await, 409, "conflict");
    assert_eq!(current(&app, &task.task_id).await, done);

    let unknown = Attempt { task_id: TaskId::generate(), ..attempt };
    assert_error(&handle(&app, heartbeat(&unknown)).await, 401, "invalid_callback_token");
}

// ---------------------------------------------------------------------------------------------
// Unknown tasks and bad requests

/// An answer as the caller sees it: status, headers and body bytes.
#[derive(Debug, PartialEq)]
struct Exactly {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn exactly(response: &Response<Body>) -> Exactly {
    Exactly {
        status: response.status().as_u16(),
        headers: response.headers().iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())).collect(),
        body: response.body().as_ref().to_vec(),
    }
}

/// Builds a request for an attempt's credentials.
type MakeRequest = fn(&Attempt) -> Request;

#[tokio::test]
async fn an_unknown_task_answers_exactly_like_a_wrong_token() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    let forged = Attempt { token: CallbackToken::generate().unwrap().expose().to_owned(), ..attempt.clone() };
    let stranger = Attempt { task_id: TaskId::generate(), ..forged.clone() };
    let never_handed_over = Attempt { task_id: received(&app).await.task_id, ..forged.clone() };
    let requests: [(&str, MakeRequest); 3] = [
        ("success", |a| callback(a, SUCCEEDED)),
        ("failure", |a| callback(a, r#"{"status":"failed","error":"gave up"}"#)),
        ("heartbeat", heartbeat),
    ];
    for (name, make) in requests {
        let wrong_token = exactly(&handle(&app, make(&forged)).await);
        assert_eq!(wrong_token.status, 401, "{name}");
        assert_eq!(exactly(&handle(&app, make(&stranger)).await), wrong_token, "{name}: unknown task");
        assert_eq!(exactly(&handle(&app, make(&never_handed_over)).await), wrong_token, "{name}: no token yet");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
}

#[tokio::test]
async fn a_large_result_for_an_unknown_task_answers_exactly_like_one_with_a_wrong_token() {
    let (mut app, _) = app();
    app.blobs.inline_max = 64;
    let (_, attempt) = in_progress(&app).await;
    let (_, body) = large_result(1_000);
    let forged = Attempt { token: CallbackToken::generate().unwrap().expose().to_owned(), ..attempt };
    let stranger = Attempt { task_id: TaskId::generate(), ..forged.clone() };
    let wrong_token = exactly(&handle(&app, callback(&forged, &body)).await);
    assert_eq!(wrong_token.status, 401);
    assert_eq!(exactly(&handle(&app, callback(&stranger, &body)).await), wrong_token);
    assert_eq!(app.blobs.store.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn requests_that_can_be_refused_without_the_store_cost_no_store_request() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let id = task.task_id.as_str();
    let query = attempt.query();
    let (reads, writes) = (app.store.reads(), app.store.writes());
    let mut refused = Vec::new();
    for bad in [
        String::new(),
        "attempt=0&token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        "attempt=1&token=short".to_owned(),
        format!("attempt=1&token={}!", &attempt.token[..42]),
        format!("attempt=1&token={}", "A".repeat(10_000)),
    ] {
        refused.push(handle(&app, callback_with(id, &bad, Some("application/json"), SUCCEEDED)).await);
        refused.push(handle(&app, heartbeat_with(id, &bad)).await);
    }
    refused.push(handle(&app, callback_with(id, &query, Some("text/plain"), SUCCEEDED)).await);
    refused.push(handle(&app, callback(&attempt, r#"{"status":"#)).await);
    refused.push(handle(&app, callback(&attempt, "")).await);
    refused.push(handle(&app, callback(&attempt, r#"{"status":"done"}"#)).await);
    let too_long = json!({"status": "failed", "error": "e".repeat(2_000)}).to_string();
    refused.push(handle(&app, callback(&attempt, &too_long)).await);
    refused.push(handle(&app, callback_with("not-a-task", &query, Some("application/json"), SUCCEEDED)).await);
    for response in &refused {
        assert!(response.status().is_client_error(), "{:?}", response.status());
    }
    assert_eq!((app.store.reads(), app.store.writes()), (reads, writes), "no store request for any of them");

    // A well-formed token that is not the attempt's can only be judged by the store: it costs
    // the one conditional write that would have recorded it, and nothing else.
    let forged = Attempt { token: CallbackToken::generate().unwrap().expose().to_owned(), ..attempt.clone() };
    assert_error(&handle(&app, callback(&forged, SUCCEEDED)).await, 401, "invalid_callback_token");
    assert_eq!((app.store.reads(), app.store.writes()), (reads, writes + 1));
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn with_signing_an_unsigned_callback_costs_no_store_request() {
    let (mut app, _) = app();
    app.signing = Some(FixedSecrets::shared(SigningSecrets::parse(OLD_SECRET).unwrap()));
    let (task, attempt) = in_progress(&app).await;
    let (reads, writes) = (app.store.reads(), app.store.writes());
    assert_error(&handle(&app, callback(&attempt, SUCCEEDED)).await, 401, "invalid_signature");
    assert_error(&handle(&app, heartbeat(&attempt)).await, 401, "invalid_signature");
    assert_eq!((app.store.reads(), app.store.writes()), (reads, writes));
    assert_eq!(current(&app, &task.task_id).await, task);
}

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";

/// A source whose secrets the test replaces, as a rotation in the secret store does.
#[derive(Debug)]
struct Rotating(Mutex<Arc<SigningSecrets>>);

impl Rotating {
    fn holding(spec: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Arc::new(SigningSecrets::parse(spec).unwrap()))))
    }

    fn rotate(&self, spec: &str) {
        *self.0.lock().unwrap() = Arc::new(SigningSecrets::parse(spec).unwrap());
    }
}

impl SecretSource for Rotating {
    fn current(&self) -> taskfleet_core::secrets::SecretsFuture<'_> {
        let secrets = self.0.lock().unwrap().clone();
        Box::pin(async move { secrets })
    }
}

/// `request` signed with `spec` over `body`, now.
fn signed(mut request: Request, spec: &str, body: &str) -> Request {
    use taskfleet_core::signing;
    let signed = SigningSecrets::parse(spec).unwrap().sign("msg_1", Timestamp::now(), body.as_bytes());
    let headers = request.headers_mut();
    headers.insert(signing::ID, signed.id.parse().unwrap());
    headers.insert(signing::TIMESTAMP, signed.timestamp.parse().unwrap());
    headers.insert(signing::SIGNATURE, signed.signature.parse().unwrap());
    request
}

#[tokio::test]
async fn each_callback_is_verified_with_the_secrets_in_force_when_it_arrives() {
    let (mut app, _) = app();
    let source = Rotating::holding(OLD_SECRET);
    app.signing = Some(source.clone());
    let (task, attempt) = in_progress(&app).await;
    assert_error(&handle(&app, signed(heartbeat(&attempt), NEW_SECRET, "")).await, 401, "invalid_signature");
    assert_eq!(handle(&app, signed(heartbeat(&attempt), OLD_SECRET, "")).await.status().as_u16(), 200);
    // During the rotation both verify; afterwards only the new one.
    source.rotate(&format!("{NEW_SECRET},{OLD_SECRET}"));
    assert_eq!(handle(&app, signed(heartbeat(&attempt), OLD_SECRET, "")).await.status().as_u16(), 200);
    assert_eq!(handle(&app, signed(heartbeat(&attempt), NEW_SECRET, "")).await.status().as_u16(), 200);
    source.rotate(NEW_SECRET);
    let old = signed(callback(&attempt, SUCCEEDED), OLD_SECRET, SUCCEEDED);
    assert_error(&handle(&app, old).await, 401, "invalid_signature");
    assert_eq!(current(&app, &task.task_id).await.status, TaskStatus::InProgress);
    let new = signed(callback(&attempt, SUCCEEDED), NEW_SECRET, SUCCEEDED);
    assert_eq!(handle(&app, new).await.status().as_u16(), 200);
    assert_eq!(current(&app, &task.task_id).await.status, TaskStatus::Done);
}

#[tokio::test]
async fn a_callback_for_an_expired_task_answers_like_a_wrong_token() {
    let (app, events) = app();
    // Finished, then outlived its retention; storage has not deleted it yet.
    let issued = CallbackToken::generate().unwrap();
    let created = minutes_ago(60);
    let mut task = Task::received(ClientId::parse("alpha").unwrap(), created, created.as_epoch_seconds());
    task.status = TaskStatus::Done;
    task.attempts = 1;
    task.result = Some(Content::Inline(json!({"answer": 42})));
    task.callback_tokens = BTreeMap::from([(1, issued.digest())]);
    task.expires_at = Timestamp::now().as_epoch_seconds() - 1;
    app.store.insert(&task, &Content::Inline(json!({})), task.expires_at).await.unwrap();

    let attempt = Attempt { task_id: task.task_id.clone(), attempt: 1, token: issued.expose().to_owned() };
    // Neither the repeat nor another outcome reveals it.
    for body in [SUCCEEDED, r#"{"status":"succeeded","result":{"answer":43}}"#] {
        assert_error(&handle(&app, callback(&attempt, body)).await, 401, "invalid_callback_token");
    }
    assert_error(&handle(&app, heartbeat(&attempt)).await, 401, "invalid_callback_token");
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_unknown_status_value_is_refused_with_400() {
    let (app, _) = app();
    let (task, attempt) = in_progress(&app).await;
    for body in [
        r#"{"status":"done","result":{}}"#,
        r#"{"status":"SUCCEEDED","result":{}}"#,
        r#"{"status":"cancelled"}"#,
        r#"{"result":{}}"#,
        r#"{"status":"succeeded"}"#,
        r#"{"status":"failed","error":"  "}"#,
        r#"{"status":"succeeded","result":{},"extra":1}"#,
    ] {
        let response = handle(&app, callback(&attempt, body)).await;
        assert_error(&response, 400, "invalid_request");
    }
    assert_eq!(current(&app, &task.task_id).await, task);
}

#[tokio::test]
async fn malformed_or_undeclared_bodies_and_bad_ids_are_refused() {
    let (app, events) = app();
    let (task, attempt) = in_progress(&app).await;
    let id = task.task_id.as_str();
    let query = attempt.query();

    let malformed = handle(&app, callback(&attempt, r#"{"status":"#)).await;
    assert_error(&malformed, 400, "malformed_json");

    let empty = handle(&app, callback(&attempt, "")).await;
    assert_eq!(assert_error(&empty, 400, "malformed_json"), "the request body is empty; a JSON object is required");

    let text = handle(&app, callback_with(id, &query, Some("text/plain"), SUCCEEDED)).await;
    assert_error(&text, 415, "unsupported_media_type");
    let undeclared = handle(&app, callback_with(id, &query, None, SUCCEEDED)).await;
    assert_error(&undeclared, 415, "unsupported_media_type");

    let bad_id = handle(&app, callback_with("not-a-task", &query, Some("application/json"), SUCCEEDED)).await;
    assert_error(&bad_id, 400, "invalid_task_id");

    let too_long = json!({"status": "failed", "error": "e".repeat(2_000)}).to_string();
    let large = handle(&app, callback(&attempt, &too_long)).await;
    assert_eq!(assert_error(&large, 413, "too_large"), "`error` is larger than the 1024 bytes allowed");

    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
}
