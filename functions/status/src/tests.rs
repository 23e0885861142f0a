use super::*;

use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};
use taskfleet_core::auth::fixed::FixedKeys;
use taskfleet_core::blob::{Content, result_key};
use taskfleet_core::lifecycle::{HISTORY_KEPT, Kind, Outcome, Transition};
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::WriteOutcome;
use taskfleet_core::token;
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, TtlPolicy};

const ALPHA_KEY: &str = "alpha-key-0123456789";
const BETA_KEY: &str = "beta-key-0123456789x";

/// 2025-11-26T23:56:27.123Z
const CREATED_MS: i64 = 1_764_201_387_123;
/// 2100-01-01T00:00:00Z: far enough ahead that the task never expires during the test.
const FAR_EXPIRY: i64 = 4_102_444_800;

/// An API Gateway HTTP API (payload format 2.0) event as Lambda receives it, trimmed from
/// aws_lambda_events' `example-apigw-v2-request-no-authorizer.json` and routed to
/// `GET /tasks/{task_id}`. The path, path parameters and headers are set per test.
const GET_TASK_EVENT: &str = r#"{
    "version": "2.0",
    "routeKey": "GET /tasks/{task_id}",
    "rawPath": "/tasks/",
    "rawQueryString": "",
    "headers": {
        "accept": "*/*",
        "content-length": "0",
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
            "method": "GET",
            "path": "/tasks/",
            "protocol": "HTTP/1.1",
            "sourceIp": "1.2.3.4",
            "userAgent": "curl/7.58.0"
        },
        "requestId": "LV7fzho-PHcEJPw=",
        "routeKey": "GET /tasks/{task_id}",
        "stage": "$default",
        "time": "21/Apr/2020:15:08:21 +0000",
        "timeEpoch": 1587481701067
    },
    "isBase64Encoded": false
}"#;

type TestApp = App<MemoryStore, FixedKeys, MemoryBlobs>;

fn app() -> TestApp {
    App {
        store: MemoryStore::new(),
        keys: FixedKeys::parse(&format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}")).unwrap(),
        blobs: MemoryBlobs::new(),
    }
}

/// Builds the request the way lambda_http does in Lambda: the event JSON is deserialized into a
/// `LambdaRequest` and converted into an `http::Request`.
fn get(task_id: &str, key: Option<&str>) -> Request {
    let mut event: Value = serde_json::from_str(GET_TASK_EVENT).unwrap();
    let path = format!("/tasks/{task_id}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"task_id": task_id});
    if let Some(key) = key {
        event["headers"]["x-api-key"] = json!(key);
    }
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    assert!(matches!(lambda, LambdaRequest::ApiGatewayV2(_)));
    Request::from(lambda)
}

fn body_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

fn content_type(response: &Response<Body>) -> Option<&str> {
    response.headers().get("content-type").map(|v| v.to_str().unwrap())
}

/// Asserts a JSON error answer and returns the body.
fn assert_error(response: &Response<Body>, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(content_type(response), Some("application/json"));
    let body = body_json(response);
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body
}

fn task_of(client: &str, expires_at: i64) -> Task {
    Task::received(ClientId::parse(client).unwrap(), Timestamp::from_millis(CREATED_MS), expires_at)
}

async fn stored(app: &TestApp, task: &Task) {
    app.store.insert(task, &Content::Inline(json!({"secret": "payload", "n": 1})), FAR_EXPIRY).await.unwrap();
}

/// The transition with the TTL it sets replaced by `expires_at`.
fn expiring_at(mut transition: Transition, expires_at: i64) -> Transition {
    match &mut transition.kind {
        Kind::Finish { expires_at: ttl, .. }
        | Kind::GiveUp { expires_at: ttl, .. }
        | Kind::Replay { expires_at: ttl, .. }
        | Kind::Start { expires_at: ttl, .. }
        | Kind::Heartbeat { expires_at: ttl, .. } => {
            *ttl = expires_at;
        }
        other => panic!("{other:?} sets no TTL"),
    }
    transition
}

/// `CREATED_MS` plus `millis`.
fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(CREATED_MS + millis)
}

async fn apply(app: &TestApp, transition: Transition) {
    let outcome = app.store.apply(&transition).await.unwrap();
    assert!(matches!(outcome, WriteOutcome::Applied(_)), "{transition:?}: {outcome:?}");
}

/// Starts attempt `attempt` at `CREATED_MS + millis`, as the caller does (the task living on
/// until `FAR_EXPIRY`: these tasks were made a year ago and are read now).
fn start(task: &Task, attempt: u32, millis: i64) -> Transition {
    let start = Transition::start(
        &task.task_id,
        attempt,
        token::digest(&format!("token-{attempt}")),
        (at(millis), at(millis + 900_000)),
        &TtlPolicy::default(),
    );
    expiring_at(start, FAR_EXPIRY)
}

mod wait;

#[tokio::test]
async fn a_client_sees_its_received_task_without_the_payload() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;

    let response = handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(content_type(&response), Some("application/json"));
    assert_eq!(
        body_json(&response),
        json!({
            "task_id": task.task_id.as_str(),
            "status": "RECEIVED",
            "attempts": 0,
            "created_at": "2025-11-26T23:56:27.123Z",
            "updated_at": "2025-11-26T23:56:27.123Z",
            "expires_at": "2100-01-01T00:00:00.000Z",
            "history": [{"status": "RECEIVED", "at": "2025-11-26T23:56:27.123Z", "attempt": 0}]
        })
    );
}

#[tokio::test]
async fn a_finished_task_shows_its_result_or_error_with_rfc3339_times() {
    let app = app();
    let ttl = TtlPolicy::new(3_600, 86_400);
    let done = task_of("alpha", FAR_EXPIRY);
    stored(&app, &done).await;
    apply(&app, start(&done, 1, 1_000)).await;
    let finish = Transition::finish(
        &done.task_id,
        1,
        token::digest("token-1"),
        Outcome::Succeeded { result: Content::Inline(json!({"answer": 42, "items": [1, 2]})) },
        at(2_500),
        &ttl,
    );
    apply(&app, expiring_at(finish, FAR_EXPIRY)).await;

    let response = handle(&app, get(done.task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = body_json(&response);
    assert_eq!(
        body,
        json!({
            "task_id": done.task_id.as_str(),
            "status": "DONE",
            "result": {"answer": 42, "items": [1, 2]},
            "attempts": 1,
            "created_at": "2025-11-26T23:56:27.123Z",
            "updated_at": "2025-11-26T23:56:29.623Z",
            "expires_at": "2100-01-01T00:00:00.000Z",
            "history": [
                {"status": "RECEIVED", "at": "2025-11-26T23:56:27.123Z", "attempt": 0},
                {"status": "IN_PROGRESS", "at": "2025-11-26T23:56:28.123Z", "attempt": 1},
                {"status": "DONE", "at": "2025-11-26T23:56:29.623Z", "attempt": 1}
            ]
        })
    );
    assert!(body.get("payload").is_none());
    assert!(body.get("error").is_none());
    // Nothing about callback tokens or due times leaks into the view.
    for hidden in ["callback_tokens", "due_at", "series_start", "client_id", "replays", "history_omitted"] {
        assert!(body.get(hidden).is_none(), "{hidden}");
    }

    let failed = task_of("alpha", FAR_EXPIRY);
    stored(&app, &failed).await;
    apply(&app, start(&failed, 1, 1_000)).await;
    let fail = Transition::give_up(
        &failed.task_id,
        TaskStatus::InProgress,
        Some(1),
        "attempt 1: the external service answered 422",
        at(2_500),
        &ttl,
    )
    .unwrap();
    apply(&app, expiring_at(fail, FAR_EXPIRY)).await;

    let body = body_json(&handle(&app, get(failed.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert_eq!(body["status"], "FAILED");
    assert_eq!(body["error"], "attempt 1: the external service answered 422");
    assert_eq!(
        body["history"][2],
        json!({
            "status": "FAILED",
            "at": "2025-11-26T23:56:29.623Z",
            "attempt": 1,
            "reason": "attempt 1: the external service answered 422"
        })
    );
    assert!(body.get("result").is_none());
    assert!(body.get("payload").is_none());
}

/// A DONE task whose attempt 1 reported `result`.
async fn done_with(app: &TestApp, result: Content) -> Task {
    let ttl = TtlPolicy::new(3_600, 86_400);
    let task = task_of("alpha", FAR_EXPIRY);
    stored(app, &task).await;
    apply(app, start(&task, 1, 1_000)).await;
    let finish =
        Transition::finish(&task.task_id, 1, token::digest("token-1"), Outcome::Succeeded { result }, at(2_500), &ttl);
    apply(app, expiring_at(finish, FAR_EXPIRY)).await;
    task
}

#[tokio::test]
async fn a_large_result_is_shown_as_a_short_lived_url_instead() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    let key = result_key(&task.task_id, 1, &token::digest("the result's bytes"));
    assert!(key.starts_with(&format!("results/{}/1/", task.task_id)), "{key}");
    app.blobs.put(&key, br#"{"huge":true}"#.to_vec()).await.unwrap();
    let done = done_with(&app, Content::Stored { key: key.clone() }).await;

    let response = handle(&app, get(done.task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = body_json(&response);
    assert_eq!(body["status"], "DONE");
    // MemoryBlobs' presigned URL: the key, valid for RESULT_URL_VALIDITY (15 minutes).
    assert_eq!(RESULT_URL_VALIDITY, std::time::Duration::from_secs(900));
    assert_eq!(body["result_url"], format!("memory://blobs/{key}?expires_in=900"));
    assert!(body["result_url"].as_str().unwrap().contains(&key));
    assert!(body.get("result").is_none(), "{body}");
    assert!(body.get("payload").is_none());
}

#[tokio::test]
async fn a_small_result_is_shown_inline_without_a_url() {
    let app = app();
    let done = done_with(&app, Content::Inline(json!({"answer": 42}))).await;
    let body = body_json(&handle(&app, get(done.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert_eq!(body["result"], json!({"answer": 42}));
    assert!(body.get("result_url").is_none(), "{body}");
    // An unfinished task has neither.
    let received = task_of("alpha", FAR_EXPIRY);
    stored(&app, &received).await;
    let body = body_json(&handle(&app, get(received.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert!(body.get("result").is_none() && body.get("result_url").is_none(), "{body}");
}

#[tokio::test]
async fn history_omitted_appears_only_once_history_was_dropped() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    // RECEIVED, then a start and a timeout per attempt: nineteen entries after nine attempts,
    // twenty once the tenth starts.
    let mut millis = 0;
    for attempt in 1..=10 {
        millis += 1_000;
        apply(&app, start(&task, attempt, millis)).await;
        if attempt < 10 {
            millis += 1_000;
            let reason = format!("attempt {attempt}: no callback within 900 s");
            apply(&app, Transition::retry(&task.task_id, attempt, reason, at(millis), at(millis))).await;
        }
    }
    let body = body_json(&handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert_eq!(body["history"].as_array().unwrap().len(), HISTORY_KEPT);
    assert!(body.get("history_omitted").is_none(), "nothing dropped yet: {body}");

    // The tenth attempt times out too: the oldest entry (RECEIVED) is dropped and counted.
    millis += 1_000;
    let reason = "attempt 10: no callback within 900 s";
    apply(&app, Transition::retry(&task.task_id, 10, reason, at(millis), at(millis))).await;
    let body = body_json(&handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await);
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), HISTORY_KEPT);
    assert_eq!(body["history_omitted"], 1);
    assert_eq!(history[0], json!({"status": "IN_PROGRESS", "at": at(1_000).to_rfc3339(), "attempt": 1}));
    assert_eq!(history[HISTORY_KEPT - 1]["reason"], reason);
}

#[tokio::test]
async fn the_history_tells_why_a_task_is_where_it_is() {
    let app = app();
    let ttl = TtlPolicy::new(3_600, 86_400);
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    // Attempt 1 timed out and was retried; attempt 2 was refused for good; the owner replayed the
    // task; attempt 3 is running.
    apply(&app, start(&task, 1, 1_000)).await;
    apply(&app, Transition::retry(&task.task_id, 1, "attempt 1: no callback within 900 s", at(901_000), at(931_000)))
        .await;
    apply(&app, start(&task, 2, 931_500)).await;
    let give_up = Transition::give_up(
        &task.task_id,
        TaskStatus::InProgress,
        Some(2),
        "attempt 2: the external service answered 400",
        at(932_000),
        &ttl,
    )
    .unwrap();
    apply(&app, give_up).await;
    let replay = Transition::replay(&task.task_id, 2, at(3_600_000), &ttl);
    apply(&app, expiring_at(replay, FAR_EXPIRY)).await;
    apply(&app, start(&task, 3, 3_600_250)).await;

    let response = handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        body_json(&response),
        json!({
            "task_id": task.task_id.as_str(),
            "status": "IN_PROGRESS",
            "attempts": 3,
            "created_at": "2025-11-26T23:56:27.123Z",
            "updated_at": "2025-11-27T00:56:27.373Z",
            "expires_at": "2100-01-01T00:00:00.000Z",
            "history": [
                {"status": "RECEIVED", "at": "2025-11-26T23:56:27.123Z", "attempt": 0},
                {"status": "IN_PROGRESS", "at": "2025-11-26T23:56:28.123Z", "attempt": 1},
                {
                    "status": "RECEIVED",
                    "at": "2025-11-27T00:11:28.123Z",
                    "attempt": 1,
                    "reason": "attempt 1: no callback within 900 s"
                },
                {"status": "IN_PROGRESS", "at": "2025-11-27T00:11:58.623Z", "attempt": 2},
                {
                    "status": "FAILED",
                    "at": "2025-11-27T00:11:59.123Z",
                    "attempt": 2,
                    "reason": "attempt 2: the external service answered 400"
                },
                {"status": "RECEIVED", "at": "2025-11-27T00:56:27.123Z", "attempt": 2, "reason": "replayed by its owner"},
                {"status": "IN_PROGRESS", "at": "2025-11-27T00:56:27.373Z", "attempt": 3}
            ]
        })
    );
}

#[tokio::test]
async fn a_cancelled_task_shows_why_it_failed() {
    let app = app();
    let ttl = TtlPolicy::new(3_600, 86_400);
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    let cancelled = service::cancel(&app.store, &task.client_id, &task.task_id, Timestamp::now(), &ttl).await.unwrap();
    assert!(matches!(cancelled, service::OwnerAction::Applied(_)), "{cancelled:?}");
    let stored = app.store.get(&task.task_id).await.unwrap().unwrap();

    let body = body_json(&handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert_eq!(body["status"], "FAILED");
    assert_eq!(body["error"], "cancelled");
    assert_eq!(body["cancelled"], true);
    assert_eq!(body["updated_at"], stored.updated_at.to_rfc3339());
    assert_eq!(
        body["history"],
        json!([
            {"status": "RECEIVED", "at": "2025-11-26T23:56:27.123Z", "attempt": 0},
            {"status": "FAILED", "at": stored.updated_at.to_rfc3339(), "attempt": 0, "reason": "cancelled"}
        ])
    );
}

#[tokio::test]
async fn a_failure_the_service_reported_as_cancelled_is_not_shown_as_a_cancel() {
    let app = app();
    let ttl = TtlPolicy::new(3_600, 86_400);
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    apply(&app, start(&task, 1, 1_000)).await;
    let outcome = Outcome::Failed { error: "cancelled".into() };
    let finish = Transition::finish(&task.task_id, 1, token::digest("token-1"), outcome, at(2_000), &ttl);
    apply(&app, expiring_at(finish, FAR_EXPIRY)).await;

    let body = body_json(&handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await);
    assert_eq!((&body["status"], &body["error"]), (&json!("FAILED"), &json!("cancelled")));
    assert!(body.get("cancelled").is_none(), "the service failed it, the owner did not cancel it: {body}");
}

#[tokio::test]
async fn another_clients_task_answers_exactly_like_a_missing_one() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;

    let foreign = handle(&app, get(task.task_id.as_str(), Some(BETA_KEY))).await;
    let foreign_body = assert_error(&foreign, 404, "not_found");

    let missing = handle(&app, get(TaskId::generate().as_str(), Some(BETA_KEY))).await;
    let missing_body = assert_error(&missing, 404, "not_found");

    assert_eq!(foreign_body, missing_body);
    assert_eq!(foreign_body, json!({"error": {"code": "not_found", "message": "no such task"}}));
    assert_eq!(foreign.headers(), missing.headers());
}

#[tokio::test]
async fn an_expired_task_is_not_found_even_before_storage_deletes_it() {
    let app = app();
    let now = Timestamp::now().as_epoch_seconds();
    let expired = task_of("alpha", now - 1);
    stored(&app, &expired).await;
    let long_expired = task_of("alpha", 1_700_000_000);
    stored(&app, &long_expired).await;

    for task in [&expired, &long_expired] {
        let response = handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await;
        assert_eq!(
            assert_error(&response, 404, "not_found"),
            json!({"error": {"code": "not_found", "message": "no such task"}})
        );
        assert!(app.store.get(&task.task_id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_id_that_is_not_a_task_id_is_refused_with_400() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    for raw in [
        "not-a-uuid",
        &task.task_id.as_str().to_uppercase(),
        &task.task_id.as_str().replace('-', ""),
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        let response = handle(&app, get(raw, Some(ALPHA_KEY))).await;
        let body = assert_error(&response, 400, "invalid_task_id");
        assert_eq!(body["error"]["message"], "the task id is not a task id this service issued");
    }
}

#[tokio::test]
async fn a_request_without_a_valid_key_is_refused_with_401() {
    let app = app();
    let task = task_of("alpha", FAR_EXPIRY);
    stored(&app, &task).await;
    for key in [None, Some(""), Some("someone-elses-key-000")] {
        let response = handle(&app, get(task.task_id.as_str(), key)).await;
        assert_error(&response, 401, "unauthorized");
    }
    // The key is checked before the id is looked at.
    assert_error(&handle(&app, get("not-a-uuid", None)).await, 401, "unauthorized");
}
