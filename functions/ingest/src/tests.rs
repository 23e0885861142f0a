use super::*;

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};
use taskfleet_adapters::config::MasterKeySource;
use taskfleet_core::auth::fixed::FixedKeys;
use taskfleet_core::blob::{Content, DEFAULT_INLINE_MAX_BYTES};
use taskfleet_core::completion::client_secret::{DEFAULT_GRACE, MasterKey};
use taskfleet_core::completion::destination::Rules;
use taskfleet_core::lifecycle::{CANCELLED, MAX_REPLAYS, Outcome, Transition};
use taskfleet_core::memory::{MemoryStore, RecordedEvents};
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::WriteOutcome;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token;
use taskfleet_core::validation::{MAX_BODY_BYTES, MAX_IDEMPOTENCY_KEY_LEN, MAX_PAYLOAD_BYTES};
use taskfleet_core::{ClientId, TaskId, TaskStatus};

const ALPHA_KEY: &str = "alpha-key-0123456789";
const BETA_KEY: &str = "beta-key-0123456789x";
const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;

/// An API Gateway HTTP API (payload format 2.0) event as Lambda receives it, trimmed from
/// aws_lambda_events' `example-apigw-v2-request-no-authorizer.json` and routed to `POST /tasks`.
/// Headers and body are set per test; the owner routes (`DELETE /tasks/{task_id}`,
/// `POST /tasks/{task_id}/retry`) change the route key, method, path and path parameters.
const POST_TASKS_EVENT: &str = r#"{
    "version": "2.0",
    "routeKey": "POST /tasks",
    "rawPath": "/tasks",
    "rawQueryString": "",
    "headers": {
        "accept": "*/*",
        "host": "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
        "user-agent": "curl/7.58.0",
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
            "path": "/tasks",
            "protocol": "HTTP/1.1",
            "sourceIp": "1.2.3.4",
            "userAgent": "curl/7.58.0"
        },
        "requestId": "LV7fzho-PHcEJPw=",
        "routeKey": "POST /tasks",
        "stage": "$default",
        "time": "21/Apr/2020:15:08:21 +0000",
        "timeEpoch": 1587481701067
    },
    "isBase64Encoded": false
}"#;

type TestApp = App<MemoryStore, FixedKeys, MemoryBlobs, MemoryStore>;

/// The master key of the tests' clients' webhook secrets.
const MASTER_KEY: &str = "whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn master() -> MasterKey {
    MasterKey::parse(MASTER_KEY).unwrap()
}

/// The webhook side with `records`, as in local runs (loopback receivers allowed).
fn webhooks_over<R>(records: R) -> Webhooks<R> {
    Webhooks::new(records, MasterKeySource::Fixed(master()), Rules { allow_loopback: true }, DEFAULT_GRACE)
}

fn app() -> (TestApp, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App {
        store: MemoryStore::new(),
        keys: FixedKeys::parse(&format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}")).unwrap(),
        blobs: Blobs::new(MemoryBlobs::new(), DEFAULT_INLINE_MAX_BYTES),
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
        events: events.clone(),
        webhooks: webhooks_over(MemoryStore::new()),
    };
    (app, events)
}

/// Builds the request the way lambda_http does in Lambda: the event JSON is deserialized into a
/// `LambdaRequest` and converted into an `http::Request`.
fn into_request(event: Value) -> Request {
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    assert!(matches!(lambda, LambdaRequest::ApiGatewayV2(_)));
    Request::from(lambda)
}

fn request_with(headers: &[(&str, &str)], body: Option<&str>, base64: bool) -> Request {
    let mut event: Value = serde_json::from_str(POST_TASKS_EVENT).unwrap();
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    if let Some(body) = body {
        event["headers"]["content-length"] = json!(body.len().to_string());
        event["body"] = json!(body);
        event["isBase64Encoded"] = json!(base64);
    }
    into_request(event)
}

fn post(headers: &[(&str, &str)], body: &str) -> Request {
    request_with(headers, Some(body), false)
}

fn json_post(body: &str) -> Request {
    post(&[("x-api-key", ALPHA_KEY), ("content-type", "application/json")], body)
}

fn keyed_post(api_key: &str, idempotency_key: &str, body: &str) -> Request {
    post(&[("x-api-key", api_key), ("content-type", "application/json"), ("idempotency-key", idempotency_key)], body)
}

/// A request on one of the owner routes, e.g. `DELETE /tasks/{task_id}`: the route key is set
/// where API Gateway sets it, at the top and in the request context.
fn owner_request(method: &str, route_key: &str, path: &str, task_id: &str, api_key: Option<&str>) -> Request {
    let mut event: Value = serde_json::from_str(POST_TASKS_EVENT).unwrap();
    event["routeKey"] = json!(route_key);
    event["requestContext"]["routeKey"] = json!(route_key);
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"task_id": task_id});
    event["headers"]["content-length"] = json!("0");
    if let Some(key) = api_key {
        event["headers"]["x-api-key"] = json!(key);
    }
    into_request(event)
}

fn delete(task_id: &str, api_key: Option<&str>) -> Request {
    owner_request("DELETE", "DELETE /tasks/{task_id}", &format!("/tasks/{task_id}"), task_id, api_key)
}

fn retry(task_id: &str, api_key: Option<&str>) -> Request {
    owner_request("POST", "POST /tasks/{task_id}/retry", &format!("/tasks/{task_id}/retry"), task_id, api_key)
}

fn body_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Asserts a JSON error answer and returns its message.
fn assert_error(response: &Response<Body>, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(header(response, "content-type"), Some("application/json"));
    let body = body_json(response);
    assert_eq!(body["error"]["code"], code, "{body}");
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 1, "only `error` at the top level: {body}");
    assert_eq!(body["error"].as_object().unwrap().len(), 2, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// How many tasks the store holds, of any status (`count` sees only active ones): every
/// client's listing.
async fn stored_count(app: &TestApp) -> u64 {
    let mut total = 0;
    for client in ["alpha", "beta"] {
        let client = ClientId::parse(client).unwrap();
        let page = app.store.list(&client, None, 1_000, None, Timestamp::now()).await.unwrap();
        assert_eq!(page.next, None);
        total += page.tasks.len() as u64;
    }
    total
}

async fn current(app: &TestApp, task_id: &TaskId) -> Task {
    app.store.get(task_id).await.unwrap().unwrap()
}

/// The payload stored with the task.
async fn payload_of(app: &TestApp, task_id: &TaskId) -> Content {
    app.store.payload(task_id).await.unwrap().unwrap()
}

/// Submits `{"payload":{"n":1}}` for alpha through the handler; the new task's id.
async fn submitted(app: &TestApp) -> TaskId {
    let response = handle(app, json_post(r#"{"payload":{"n":1}}"#)).await;
    assert_eq!(response.status().as_u16(), 202);
    TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap()
}

fn later(millis: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + millis)
}

/// Starts attempt `attempt` of a RECEIVED task, as the caller would.
async fn start(app: &TestApp, task_id: &TaskId, attempt: u32) {
    let at = later(0);
    let start = Transition::start(
        task_id,
        attempt,
        token::digest(&format!("token-{attempt}")),
        (at, at.plus_seconds(900)),
        &TtlPolicy::default(),
    );
    assert!(matches!(app.store.apply(&start).await.unwrap(), WriteOutcome::Applied(_)));
}

async fn apply(app: &TestApp, transition: Transition) -> Task {
    match app.store.apply(&transition).await.unwrap() {
        WriteOutcome::Applied(task) => task,
        WriteOutcome::Rejected(current) => panic!("{transition:?} rejected on {current:?}"),
    }
}

/// A task that went through two attempts: the first timed out and was retried, the second was
/// refused for good.
async fn failed_after_two_attempts(app: &TestApp) -> TaskId {
    let task_id = submitted(app).await;
    start(app, &task_id, 1).await;
    apply(app, Transition::retry(&task_id, 1, "attempt 1: no callback within 900 s", later(0), later(0))).await;
    start(app, &task_id, 2).await;
    let give_up = Transition::give_up(
        &task_id,
        TaskStatus::InProgress,
        Some(2),
        "attempt 2: the external service answered 422",
        later(0),
        &app.ttl,
    )
    .unwrap();
    apply(app, give_up).await;
    task_id
}

async fn done(app: &TestApp) -> TaskId {
    let task_id = submitted(app).await;
    start(app, &task_id, 1).await;
    let finish = Transition::finish(
        &task_id,
        1,
        token::digest("token-1"),
        Outcome::Succeeded { result: Content::Inline(json!({"ok": true})) },
        later(0),
        &app.ttl,
    );
    apply(app, finish).await;
    task_id
}

/// What `TaskView` shows of a stored task.
fn view_of(task: &Task) -> Value {
    let history: Vec<Value> = task
        .history
        .iter()
        .map(|entry| {
            let mut view =
                json!({"status": entry.status.as_str(), "at": entry.at.to_rfc3339(), "attempt": entry.attempt});
            if let Some(reason) = &entry.reason {
                view["reason"] = json!(reason);
            }
            view
        })
        .collect();
    let mut view = json!({
        "task_id": task.task_id.as_str(),
        "status": task.status.as_str(),
        "attempts": task.attempts,
        "created_at": task.created_at.to_rfc3339(),
        "updated_at": task.updated_at.to_rfc3339(),
        "expires_at": Timestamp::from_millis(task.expires_at * 1000).to_rfc3339(),
        "history": history,
    });
    if let Some(Content::Inline(result)) = &task.result {
        view["result"] = result.clone();
    }
    if task.history_omitted > 0 {
        view["history_omitted"] = json!(task.history_omitted);
    }
    if let Some(error) = &task.error {
        view["error"] = json!(error);
    }
    if task.cancelled {
        view["cancelled"] = json!(true);
    }
    if let Some(run_at) = task.run_at {
        view["run_at"] = json!(run_at.to_rfc3339());
    }
    if let Some(trace) = &task.trace_id {
        view["trace_id"] = json!(trace.as_str());
    }
    view
}

mod features;
mod webhooks;

// ---------------------------------------------------------------------------------------------
// POST /tasks

#[tokio::test]
async fn a_submission_is_accepted_with_its_location_and_stored_as_received() {
    let (app, events) = app();
    let before = Timestamp::now();
    let response =
        handle(&app, json_post(r#"{"payload": {"n": 1, "nested": {"list": [1, 2.5, "x"], "none": null}}}"#)).await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body = body_json(&response);
    let object = body.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "status", "task_id", "trace_id"]);
    assert_eq!(body["status"], "RECEIVED");

    let task_id = TaskId::parse(body["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(header(&response, "location"), Some(format!("/tasks/{task_id}").as_str()));

    let task = current(&app, &task_id).await;
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!(task.client_id, ClientId::parse("alpha").unwrap());
    assert_eq!(
        payload_of(&app, &task_id).await,
        Content::Inline(json!({"n": 1, "nested": {"list": [1, 2.5, "x"], "none": null}}))
    );
    assert_eq!(app.blobs.store.keys(), Vec::<String>::new(), "a small payload stays inline");
    assert_eq!(task.attempts, 0);
    assert_eq!(task.series_start, 0);
    assert_eq!(task.result, None);
    assert_eq!(task.error, None);
    assert!(before <= task.created_at && task.created_at <= after);
    assert_eq!(task.updated_at, task.created_at);
    // Due for dispatch at once.
    assert_eq!(task.due_at, task.created_at);
    assert_eq!(task.expires_at, task.created_at.plus_seconds(TASK_TTL).as_epoch_seconds());
    assert_eq!(task.callback_tokens, BTreeMap::new());
    assert_eq!((task.history_omitted, task.replays), (0, 0));
    assert_eq!(
        task.history,
        [HistoryEntry { status: TaskStatus::Received, at: task.created_at, attempt: 0, reason: None }]
    );
    assert_eq!(body["created_at"], task.created_at.to_rfc3339());
    assert_eq!(stored_count(&app).await, 1);
    assert_eq!(events.events(), [TaskEvent::Created]);
}

#[tokio::test]
async fn each_submission_gets_its_own_task_for_the_calling_client() {
    let (app, events) = app();
    let first = body_json(&handle(&app, json_post(r#"{"payload":{}}"#)).await);
    let second =
        handle(&app, post(&[("x-api-key", BETA_KEY), ("content-type", "application/json")], r#"{"payload":{}}"#)).await;
    assert_eq!(second.status().as_u16(), 202);
    let second = body_json(&second);
    assert_ne!(first["task_id"], second["task_id"]);

    let second_id = TaskId::parse(second["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(current(&app, &second_id).await.client_id.as_str(), "beta");
    assert_eq!(stored_count(&app).await, 2);
    assert_eq!(events.events(), [TaskEvent::Created, TaskEvent::Created]);
}

#[tokio::test]
async fn json_with_a_charset_and_a_base64_encoded_body_is_accepted() {
    let (app, _) = app();
    // `{"payload":{"n":1}}`, as API Gateway forwards a body it treats as binary.
    let request = request_with(
        &[("x-api-key", ALPHA_KEY), ("content-type", "application/json; charset=utf-8")],
        Some("eyJwYXlsb2FkIjp7Im4iOjF9fQ=="),
        true,
    );
    let response = handle(&app, request).await;
    assert_eq!(response.status().as_u16(), 202);
    let task_id = TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(payload_of(&app, &task_id).await, Content::Inline(json!({"n": 1})));
}

#[tokio::test]
async fn a_missing_api_key_is_refused_with_401() {
    let (app, events) = app();
    let response = handle(&app, post(&[("content-type", "application/json")], r#"{"payload":{}}"#)).await;
    let message = assert_error(&response, 401, "unauthorized");
    assert_eq!(message, "a valid x-api-key header is required");
    assert_eq!(response.headers().get("location"), None);
    assert_eq!(stored_count(&app).await, 0);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_unknown_or_empty_api_key_is_refused_with_401() {
    let (app, _) = app();
    for key in ["not-a-known-key-at-all", "", &ALPHA_KEY[1..]] {
        let response =
            handle(&app, post(&[("x-api-key", key), ("content-type", "application/json")], r#"{"payload":{}}"#)).await;
        assert_error(&response, 401, "unauthorized");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn the_key_is_checked_before_the_body() {
    let (app, _) = app();
    let response = handle(&app, post(&[("content-type", "text/plain")], "nonsense")).await;
    assert_error(&response, 401, "unauthorized");
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_refused_with_415() {
    let (app, _) = app();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        let response =
            handle(&app, post(&[("x-api-key", ALPHA_KEY), ("content-type", content_type)], r#"{"payload":{}}"#)).await;
        let message = assert_error(&response, 415, "unsupported_media_type");
        assert_eq!(message, "the body must be sent as application/json");
    }
    let without = handle(&app, post(&[("x-api-key", ALPHA_KEY)], r#"{"payload":{}}"#)).await;
    assert_error(&without, 415, "unsupported_media_type");
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn malformed_json_is_refused_with_400() {
    let (app, _) = app();
    for body in [r#"{"payload": {"#, "payload=1", "{'payload': {}}"] {
        let response = handle(&app, json_post(body)).await;
        let message = assert_error(&response, 400, "malformed_json");
        assert!(message.starts_with("the request body is not valid JSON"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_empty_body_is_refused_with_400() {
    let (app, _) = app();
    let no_body = request_with(&[("x-api-key", ALPHA_KEY), ("content-type", "application/json")], None, false);
    for request in [no_body, json_post(""), json_post(" \n")] {
        let message = assert_error(&handle(&app, request).await, 400, "malformed_json");
        assert_eq!(message, "the request body is empty; a JSON object is required");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_that_is_not_an_object_is_refused_with_400() {
    let (app, _) = app();
    for body in [r#"{"payload": [1, 2]}"#, r#"{"payload": "text"}"#, r#"{"payload": null}"#, r#"{"payload": 7}"#] {
        let response = handle(&app, json_post(body)).await;
        let message = assert_error(&response, 400, "invalid_request");
        assert!(message.contains("`payload` must be a JSON object"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_unknown_or_missing_field_is_refused_with_400() {
    let (app, _) = app();
    let unknown = handle(&app, json_post(r#"{"payload": {}, "priority": 1}"#)).await;
    let message = assert_error(&unknown, 400, "invalid_request");
    // Which fields belong, not what was sent: an error message never echoes the input.
    assert!(message.contains("unknown field, expected one of `payload`") && !message.contains("priority"), "{message}");

    let missing = handle(&app, json_post(r#"{"data": {}}"#)).await;
    assert_error(&missing, 400, "invalid_request");

    let not_an_object = handle(&app, json_post("[]")).await;
    assert_error(&not_an_object, 400, "invalid_request");
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_with_413() {
    let (app, _) = app();
    let body = json!({"payload": {"s": "a".repeat(MAX_PAYLOAD_BYTES)}}).to_string();
    assert!(body.len() <= MAX_BODY_BYTES);
    let response = handle(&app, json_post(&body)).await;
    let message = assert_error(&response, 413, "too_large");
    assert_eq!(message, format!("`payload` is larger than the {MAX_PAYLOAD_BYTES} bytes allowed"));
    assert_eq!(stored_count(&app).await, 0);

    // Just under the limit still fits.
    let fits = json!({"payload": {"s": "a".repeat(MAX_PAYLOAD_BYTES - 16)}}).to_string();
    assert_eq!(handle(&app, json_post(&fits)).await.status().as_u16(), 202);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let (app, _) = app();
    let body = format!(r#"{{"payload": {{}}}}{}"#, " ".repeat(MAX_BODY_BYTES));
    let response = handle(&app, json_post(&body)).await;
    let message = assert_error(&response, 413, "too_large");
    assert_eq!(message, format!("`body` is larger than the {MAX_BODY_BYTES} bytes allowed"));
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_over_the_inline_limit_is_kept_in_the_blob_store() {
    let (mut app, events) = app();
    app.blobs.inline_max = 64;
    let large = json!({"image": "x".repeat(100), "sizes": [64, 128]});
    let response = handle(&app, json_post(&json!({"payload": large}).to_string())).await;
    assert_eq!(response.status().as_u16(), 202);
    let task_id = TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap();

    // The blob holds the payload; the task store only its key.
    let key = format!("payloads/{task_id}");
    assert_eq!(app.blobs.store.keys(), std::slice::from_ref(&key));
    assert_eq!(payload_of(&app, &task_id).await, Content::Stored { key: key.clone() });
    let blob = app.blobs.store.get(&key).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&blob).unwrap(), large);
    assert_eq!(current(&app, &task_id).await.status, TaskStatus::Received);
    assert_eq!(events.events(), [TaskEvent::Created]);

    // One at the limit stays inline and writes no blob.
    let at_limit = json!({"s": "y".repeat(64 - 8)});
    assert_eq!(at_limit.to_string().len(), 64);
    let response = handle(&app, json_post(&json!({"payload": at_limit}).to_string())).await;
    let small_id = TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(payload_of(&app, &small_id).await, Content::Inline(at_limit));
    assert_eq!(app.blobs.store.keys(), [key]);
}

#[tokio::test]
async fn a_payload_of_exactly_4_mib_is_accepted_and_one_byte_more_is_refused() {
    // The documented limit: 4 MiB of compact JSON.
    assert_eq!(MAX_PAYLOAD_BYTES, 4_194_304);
    let (app, _) = app();
    // `{"s":"…"}`: eight bytes around the string.
    let payload_of_size = |size: usize| json!({"s": "a".repeat(size - 8)});
    let largest = payload_of_size(MAX_PAYLOAD_BYTES);
    assert_eq!(largest.to_string().len(), 4_194_304);
    let body = json!({"payload": largest}).to_string();
    assert!(body.len() <= MAX_BODY_BYTES);
    let response = handle(&app, json_post(&body)).await;
    assert_eq!(response.status().as_u16(), 202);
    let task_id = TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap();
    // Far above the inline limit: kept in the blob store, byte for byte.
    let key = format!("payloads/{task_id}");
    assert_eq!(payload_of(&app, &task_id).await, Content::Stored { key: key.clone() });
    assert_eq!(app.blobs.store.get(&key).await.unwrap().unwrap().len(), MAX_PAYLOAD_BYTES);

    let one_more = payload_of_size(MAX_PAYLOAD_BYTES + 1);
    assert_eq!(one_more.to_string().len(), 4_194_305);
    let response = handle(&app, json_post(&json!({"payload": one_more}).to_string())).await;
    let message = assert_error(&response, 413, "too_large");
    assert_eq!(message, "`payload` is larger than the 4194304 bytes allowed");
    assert_eq!(stored_count(&app).await, 1);
    assert_eq!(app.blobs.store.keys(), [key], "a refused payload writes no blob");
}

// ---------------------------------------------------------------------------------------------
// POST /tasks with an Idempotency-Key

#[tokio::test]
async fn repeating_a_keyed_submission_answers_200_with_the_same_task() {
    let (app, events) = app();
    let first = handle(&app, keyed_post(ALPHA_KEY, "order-42/attempt#1", r#"{"payload":{"a":1,"b":[1,2]}}"#)).await;
    assert_eq!(first.status().as_u16(), 202);
    let first_body = body_json(&first);
    let task_id = TaskId::parse(first_body["task_id"].as_str().unwrap()).unwrap();
    let stored = current(&app, &task_id).await;

    // The same request again, and the same payload written differently (key order, spacing).
    for body in [r#"{"payload":{"a":1,"b":[1,2]}}"#, r#"{ "payload": { "b": [1, 2], "a": 1 } }"#] {
        let again = handle(&app, keyed_post(ALPHA_KEY, "order-42/attempt#1", body)).await;
        assert_eq!(again.status().as_u16(), 200, "{body}");
        assert_eq!(header(&again, "content-type"), Some("application/json"));
        assert_eq!(header(&again, "location"), Some(format!("/tasks/{task_id}").as_str()));
        assert_eq!(body_json(&again), first_body);
    }
    assert_eq!(first_body["status"], "RECEIVED");
    assert_eq!(first_body["created_at"], stored.created_at.to_rfc3339());
    assert_eq!(stored_count(&app).await, 1);
    assert_eq!(current(&app, &task_id).await, stored);
    assert_eq!(events.events(), [TaskEvent::Created], "one task, one TasksCreated");
}

#[tokio::test]
async fn a_repeat_answers_the_task_as_it_is_now() {
    let (app, _) = app();
    let first = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{}}"#)).await;
    let task_id = body_json(&first)["task_id"].as_str().unwrap().to_owned();
    assert_eq!(handle(&app, delete(&task_id, Some(ALPHA_KEY))).await.status().as_u16(), 200);

    let again = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{}}"#)).await;
    assert_eq!(again.status().as_u16(), 200);
    let body = body_json(&again);
    assert_eq!(body["task_id"], task_id);
    assert_eq!(body["status"], "FAILED");
    assert_eq!(stored_count(&app).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_refused_with_409() {
    let (app, events) = app();
    let first = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{"n":1}}"#)).await;
    assert_eq!(first.status().as_u16(), 202);

    let other = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{"n":2}}"#)).await;
    let message = assert_error(&other, 409, "idempotency_conflict");
    assert_eq!(message, "this Idempotency-Key was already used with a different payload");
    assert_eq!(other.headers().get("location"), None);
    assert_eq!(stored_count(&app).await, 1);
    assert_eq!(events.events(), [TaskEvent::Created]);
}

#[tokio::test]
async fn a_repeat_whose_task_expired_is_refused_with_409_and_creates_nothing() {
    let (app, events) = app();
    let first = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{}}"#)).await;
    let task_id = TaskId::parse(body_json(&first)["task_id"].as_str().unwrap()).unwrap();
    // Cancelled with no retention: the task has expired (and may be deleted any time).
    let client = ClientId::parse("alpha").unwrap();
    let cancelled = service::cancel(&app.store, &client, &task_id, later(-5_000), &TtlPolicy::new(TASK_TTL, 1)).await;
    assert!(matches!(cancelled, Ok(OwnerAction::Applied(_))), "{cancelled:?}");

    let again = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{}}"#)).await;
    let message = assert_error(&again, 409, "idempotency_task_gone");
    assert_eq!(message, "the task this Idempotency-Key created has expired; use a new key");
    assert_eq!(again.headers().get("location"), None);
    assert_eq!(current(&app, &task_id).await.status, TaskStatus::Failed, "the task is not created again");
    assert_eq!(events.events(), [TaskEvent::Created]);
}

#[tokio::test]
async fn a_claimed_key_whose_task_may_have_been_deleted_is_not_created_again() {
    let (app, events) = app();
    // A claim older than the task TTL whose task is not stored: it may have run and expired.
    let payload = json!({"n": 1});
    let lost = TaskId::generate();
    let claimed_at = later(-(TASK_TTL as i64 + 1) * 1_000);
    let record = taskfleet_core::ports::IdempotencyRecord {
        client_id: ClientId::parse("alpha").unwrap(),
        key_digest: token::digest("k-2"),
        request_digest: token::digest(&payload.to_string()),
        task_id: lost.clone(),
        created_at: claimed_at,
        expires_at: app.ttl.payload_expiry(claimed_at),
    };
    assert_eq!(app.store.claim(&record).await.unwrap(), None);

    let again = handle(&app, keyed_post(ALPHA_KEY, "k-2", r#"{"payload":{"n":1}}"#)).await;
    assert_error(&again, 409, "idempotency_task_gone");
    assert_eq!(app.store.get(&lost).await.unwrap(), None);
    assert_eq!(stored_count(&app).await, 0);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn idempotency_keys_belong_to_one_client() {
    let (app, events) = app();
    let alpha = body_json(&handle(&app, keyed_post(ALPHA_KEY, "shared", r#"{"payload":{}}"#)).await);
    let beta = handle(&app, keyed_post(BETA_KEY, "shared", r#"{"payload":{}}"#)).await;
    assert_eq!(beta.status().as_u16(), 202);
    let beta = body_json(&beta);
    assert_ne!(alpha["task_id"], beta["task_id"]);
    let beta_id = TaskId::parse(beta["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(current(&app, &beta_id).await.client_id.as_str(), "beta");
    // A keyless submission is never a repeat.
    assert_eq!(handle(&app, json_post(r#"{"payload":{}}"#)).await.status().as_u16(), 202);
    assert_eq!(stored_count(&app).await, 3);
    assert_eq!(events.events(), [TaskEvent::Created; 3]);
}

#[tokio::test]
async fn an_invalid_idempotency_key_is_refused_with_400() {
    let (app, events) = app();
    let too_long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
    for key in ["", " ", "a b", "é", "clé-1", too_long.as_str()] {
        let response = handle(&app, keyed_post(ALPHA_KEY, key, r#"{"payload":{}}"#)).await;
        let message = assert_error(&response, 400, "invalid_request");
        assert_eq!(message, "Idempotency-Key must be 1-255 visible ASCII characters", "{key:?}");
    }
    assert_eq!(stored_count(&app).await, 0);
    assert_eq!(events.events(), []);

    // The longest allowed key is accepted.
    let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN);
    assert_eq!(handle(&app, keyed_post(ALPHA_KEY, &longest, r#"{"payload":{}}"#)).await.status().as_u16(), 202);
}

// ---------------------------------------------------------------------------------------------
// DELETE /tasks/{task_id}

#[tokio::test]
async fn the_owner_cancels_a_received_task() {
    let (app, events) = app();
    let task_id = submitted(&app).await;
    let before = Timestamp::now();
    let response = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let task = current(&app, &task_id).await;
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!((task.error.as_deref(), task.cancelled), (Some(CANCELLED), true));
    assert_eq!(task.attempts, 0);
    assert!(before <= task.updated_at && task.updated_at <= after);
    assert_eq!(task.expires_at, task.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(
        task.history[1..],
        [HistoryEntry {
            status: TaskStatus::Failed,
            at: task.updated_at,
            attempt: 0,
            reason: Some("cancelled".into())
        }]
    );

    let body = body_json(&response);
    assert_eq!(body, view_of(&task));
    assert_eq!(body["status"], "FAILED");
    assert_eq!(body["error"], "cancelled");
    assert_eq!(body["cancelled"], true);
    assert_eq!(body["history"].as_array().unwrap().len(), 2);
    assert!(body.get("payload").is_none());
    let latency = task.updated_at.millis_since(task.created_at);
    assert_eq!(
        events.events(),
        [TaskEvent::Created, TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(latency) }]
    );
}

#[tokio::test]
async fn the_owner_cancels_a_task_in_progress() {
    let (app, _) = app();
    let task_id = submitted(&app).await;
    start(&app, &task_id, 1).await;
    let response = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    let task = current(&app, &task_id).await;
    assert_eq!((task.status, task.attempts, task.error.as_deref()), (TaskStatus::Failed, 1, Some("cancelled")));
    let last = task.history.last().unwrap();
    assert_eq!((last.status, last.attempt, last.reason.as_deref()), (TaskStatus::Failed, 1, Some("cancelled")));
    assert_eq!(body_json(&response), view_of(&task));
}

#[tokio::test]
async fn cancelling_again_answers_200_and_changes_nothing() {
    let (app, events) = app();
    let task_id = submitted(&app).await;
    let first = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(first.status().as_u16(), 200);
    let cancelled = current(&app, &task_id).await;

    let again = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(body_json(&again), body_json(&first));
    assert_eq!(current(&app, &task_id).await, cancelled);
    assert_eq!(events.events().len(), 2, "Created and one Finished: {:?}", events.events());
}

#[tokio::test]
async fn another_client_cannot_cancel_and_sees_404() {
    let (app, _) = app();
    let task_id = submitted(&app).await;
    let before = current(&app, &task_id).await;
    let foreign = handle(&app, delete(task_id.as_str(), Some(BETA_KEY))).await;
    let message = assert_error(&foreign, 404, "not_found");
    assert_eq!(message, "no such task");
    let unknown = handle(&app, delete(TaskId::generate().as_str(), Some(BETA_KEY))).await;
    assert_eq!(body_json(&unknown), body_json(&foreign), "a foreign task looks exactly like a missing one");
    assert_eq!(current(&app, &task_id).await, before);
}

#[tokio::test]
async fn a_finished_task_cannot_be_cancelled() {
    let (app, events) = app();
    let task_id = done(&app).await;
    let before = current(&app, &task_id).await;
    let response = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is DONE and cannot be cancelled");
    assert_eq!(current(&app, &task_id).await, before);

    let failed = failed_after_two_attempts(&app).await;
    let response = handle(&app, delete(failed.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is FAILED and cannot be cancelled");
    assert_eq!(current(&app, &failed).await.error.as_deref(), Some("attempt 2: the external service answered 422"));
    assert_eq!(events.events(), [TaskEvent::Created, TaskEvent::Created]);
}

#[tokio::test]
async fn a_task_the_service_failed_with_the_error_cancelled_cannot_be_cancelled() {
    let (app, events) = app();
    let task_id = submitted(&app).await;
    start(&app, &task_id, 1).await;
    let reported = Outcome::Failed { error: CANCELLED.into() };
    apply(&app, Transition::finish(&task_id, 1, token::digest("token-1"), reported, later(0), &app.ttl)).await;
    let failed = current(&app, &task_id).await;
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.cancelled),
        (TaskStatus::Failed, Some(CANCELLED), false)
    );

    let response = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is FAILED and cannot be cancelled");
    assert_eq!(current(&app, &task_id).await, failed);
    assert_eq!(events.events(), [TaskEvent::Created]);
}

#[tokio::test]
async fn cancel_checks_the_key_and_the_id() {
    let (app, _) = app();
    let task_id = submitted(&app).await;
    assert_error(&handle(&app, delete(task_id.as_str(), None)).await, 401, "unauthorized");
    assert_error(&handle(&app, delete(task_id.as_str(), Some("not-a-known-key-at-all"))).await, 401, "unauthorized");
    assert_error(&handle(&app, delete("not-a-uuid", Some(ALPHA_KEY))).await, 400, "invalid_task_id");
    assert_eq!(current(&app, &task_id).await.status, TaskStatus::Received);
}

// ---------------------------------------------------------------------------------------------
// POST /tasks/{task_id}/retry

#[tokio::test]
async fn the_owner_replays_a_failed_task_with_a_new_attempt_series() {
    let (app, events) = app();
    let task_id = failed_after_two_attempts(&app).await;
    let failed = current(&app, &task_id).await;
    let before = Timestamp::now();
    let response = handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(header(&response, "location"), Some(format!("/tasks/{task_id}").as_str()));
    let task = current(&app, &task_id).await;
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!(task.attempts, 2);
    assert_eq!(task.series_start, 2, "the next attempt is the first of a new series");
    assert_eq!(task.attempt_in_series(), 0);
    assert_eq!(task.error, None);
    assert!(before <= task.updated_at && task.updated_at <= after);
    assert_eq!(task.due_at, task.updated_at, "due for dispatch at once");
    assert_eq!(task.expires_at, task.updated_at.plus_seconds(TASK_TTL).as_epoch_seconds());
    assert_eq!(task.callback_tokens, failed.callback_tokens);
    assert_eq!(task.history[..failed.history.len()], failed.history[..]);
    assert_eq!(
        task.history[failed.history.len()..],
        [HistoryEntry {
            status: TaskStatus::Received,
            at: task.updated_at,
            attempt: 2,
            reason: Some("replayed by its owner".into())
        }]
    );
    let body = body_json(&response);
    assert_eq!(body, view_of(&task));
    assert!(body.get("error").is_none());
    assert_eq!(
        body["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect::<Vec<_>>(),
        ["RECEIVED", "IN_PROGRESS", "RECEIVED", "IN_PROGRESS", "FAILED", "RECEIVED"]
    );
    assert_eq!(events.events(), [TaskEvent::Created]);
}

#[tokio::test]
async fn a_cancelled_task_can_be_replayed() {
    let (app, _) = app();
    let task_id = submitted(&app).await;
    assert_eq!(handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await.status().as_u16(), 200);
    let response = handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 202);
    let task = current(&app, &task_id).await;
    assert_eq!((task.status, task.attempts, task.series_start, task.error), (TaskStatus::Received, 0, 0, None));
}

#[tokio::test]
async fn only_a_failed_task_can_be_replayed() {
    let (app, _) = app();
    let received = submitted(&app).await;
    let response = handle(&app, retry(received.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is RECEIVED; only a FAILED task can be retried");
    assert_eq!(response.headers().get("location"), None);

    let in_progress = submitted(&app).await;
    start(&app, &in_progress, 1).await;
    let response = handle(&app, retry(in_progress.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is IN_PROGRESS; only a FAILED task can be retried");

    let finished = done(&app).await;
    let before = current(&app, &finished).await;
    let response = handle(&app, retry(finished.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is DONE; only a FAILED task can be retried");
    assert_eq!(current(&app, &finished).await, before);
}

#[tokio::test]
async fn replaying_twice_is_refused_the_second_time() {
    let (app, _) = app();
    let task_id = failed_after_two_attempts(&app).await;
    assert_eq!(handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await.status().as_u16(), 202);
    let replayed = current(&app, &task_id).await;
    let again = handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_error(&again, 409, "conflict");
    assert_eq!(current(&app, &task_id).await, replayed);
}

#[tokio::test]
async fn a_task_is_replayed_at_most_max_replays_times() {
    let (app, events) = app();
    assert_eq!(MAX_REPLAYS, 10);
    let task_id = failed_after_two_attempts(&app).await;
    for replay in 1..=MAX_REPLAYS {
        let response = handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await;
        assert_eq!(response.status().as_u16(), 202, "replay {replay}");
        assert_eq!(current(&app, &task_id).await.replays, replay);
        // It fails again (here: its owner cancels it).
        assert_eq!(handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await.status().as_u16(), 200);
    }
    let failed = current(&app, &task_id).await;
    assert_eq!((failed.status, failed.replays), (TaskStatus::Failed, MAX_REPLAYS));

    let refused = handle(&app, retry(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(assert_error(&refused, 409, "conflict"), "the task was retried 10 times, the most allowed");
    assert_eq!(refused.headers().get("location"), None);
    assert_eq!(current(&app, &task_id).await, failed, "nothing changed");
    let finished = events.events().iter().filter(|e| matches!(e, TaskEvent::Finished { .. })).count();
    assert_eq!(finished, MAX_REPLAYS as usize, "one per cancel, none for the refusal");
}

#[tokio::test]
async fn another_client_cannot_replay_and_sees_404() {
    let (app, _) = app();
    let task_id = failed_after_two_attempts(&app).await;
    let before = current(&app, &task_id).await;
    let response = handle(&app, retry(task_id.as_str(), Some(BETA_KEY))).await;
    assert_eq!(assert_error(&response, 404, "not_found"), "no such task");
    assert_eq!(current(&app, &task_id).await, before);
    assert_error(&handle(&app, retry(TaskId::generate().as_str(), Some(ALPHA_KEY))).await, 404, "not_found");
    assert_error(&handle(&app, retry(task_id.as_str(), None)).await, 401, "unauthorized");
    assert_error(&handle(&app, retry("nope", Some(ALPHA_KEY))).await, 400, "invalid_task_id");
}
