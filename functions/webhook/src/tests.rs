use super::*;

use lambda_http::request::LambdaRequest;
use serde_json::Value;
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus};

const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;

/// An API Gateway HTTP API (payload format 2.0) event as Lambda receives it, trimmed from
/// aws_lambda_events' `example-apigw-v2-request-no-authorizer.json` and routed to
/// `POST /callbacks/{task_id}`. Path, path parameters, headers and body are set per test.
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

fn app() -> App<MemoryStore> {
    App { store: MemoryStore::new(), ttl: TtlPolicy::new(TASK_TTL, RETENTION) }
}

/// Builds the request the way lambda_http does in Lambda: the event JSON is deserialized into a
/// `LambdaRequest` and converted into an `http::Request`.
fn callback_with(task_id: &str, content_type: Option<&str>, body: &str) -> Request {
    let mut event: Value = serde_json::from_str(CALLBACK_EVENT).unwrap();
    let path = format!("/callbacks/{task_id}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"task_id": task_id});
    if let Some(content_type) = content_type {
        event["headers"]["content-type"] = json!(content_type);
    }
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    assert!(matches!(lambda, LambdaRequest::ApiGatewayV2(_)));
    Request::from(lambda)
}

fn callback(task_id: &TaskId, body: &str) -> Request {
    callback_with(task_id.as_str(), Some("application/json"), body)
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

/// A task the caller handed to the external service: IN_PROGRESS on attempt 1, created a
/// minute ago.
async fn in_progress(app: &App<MemoryStore>) -> Task {
    let created = Timestamp::from_millis(Timestamp::now().as_millis() - 60_000);
    let mut task = Task::received(
        ClientId::parse("alpha").unwrap(),
        json!({"n": 1}),
        created,
        created.plus_seconds(TASK_TTL).as_epoch_seconds(),
    );
    task.status = TaskStatus::InProgress;
    task.attempts = 1;
    task.updated_at = Timestamp::from_millis(created.as_millis() + 1_000);
    app.store.insert(&task).await.unwrap();
    task
}

async fn current(app: &App<MemoryStore>, task: &Task) -> Task {
    app.store.get(&task.task_id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_success_callback_finishes_the_task_with_its_result() {
    let app = app();
    let task = in_progress(&app).await;
    let before = Timestamp::now();
    let response = handle(
        &app,
        callback(&task.task_id, r#"{"status": "succeeded", "result": {"answer": 42, "parts": [1, 2.5, null]}}"#),
    )
    .await;
    let after = Timestamp::now();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(body_json(&response), json!({"task_id": task.task_id.as_str(), "status": "DONE"}));
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Done);
    assert_eq!(stored.result, Some(json!({"answer": 42, "parts": [1, 2.5, null]})));
    assert_eq!(stored.error, None);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.payload, task.payload);
    assert_eq!(stored.created_at, task.created_at);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    // The TTL is reset to the result retention from the moment the task finished.
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
}

#[tokio::test]
async fn the_same_callback_again_answers_200_and_changes_nothing() {
    let app = app();
    let task = in_progress(&app).await;
    let body = r#"{"status":"succeeded","result":{"answer":42}}"#;
    let first = handle(&app, callback(&task.task_id, body)).await;
    assert_eq!(first.status().as_u16(), 200);
    let after_first = current(&app, &task).await;

    // Same outcome, different formatting: still the same result.
    let again =
        handle(&app, callback(&task.task_id, "{ \"result\": { \"answer\": 42 }, \"status\": \"succeeded\" }")).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(body_json(&again), body_json(&first));
    assert_eq!(current(&app, &task).await, after_first);
}

#[tokio::test]
async fn a_different_outcome_for_a_finished_task_answers_409_and_changes_nothing() {
    let app = app();
    let task = in_progress(&app).await;
    let first = handle(&app, callback(&task.task_id, r#"{"status":"succeeded","result":{"answer":42}}"#)).await;
    assert_eq!(first.status().as_u16(), 200);
    let done = current(&app, &task).await;

    let failed = handle(&app, callback(&task.task_id, r#"{"status":"failed","error":"too late"}"#)).await;
    let message = assert_error(&failed, 409, "conflict");
    assert_eq!(message, "the task is DONE and cannot take this outcome");

    let other_result = handle(&app, callback(&task.task_id, r#"{"status":"succeeded","result":{"answer":43}}"#)).await;
    assert_error(&other_result, 409, "conflict");
    assert_eq!(current(&app, &task).await, done);
}

#[tokio::test]
async fn a_failure_callback_fails_the_task_with_its_error() {
    let app = app();
    let task = in_progress(&app).await;
    let response = handle(&app, callback(&task.task_id, r#"{"status":"failed","error":"no capacity left"}"#)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(body_json(&response), json!({"task_id": task.task_id.as_str(), "status": "FAILED"}));
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.error.as_deref(), Some("no capacity left"));
    assert_eq!(stored.result, None);
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());

    // Repeating it is harmless; succeeding afterwards is a conflict.
    let again = handle(&app, callback(&task.task_id, r#"{"status":"failed","error":"no capacity left"}"#)).await;
    assert_eq!(again.status().as_u16(), 200);
    let late = handle(&app, callback(&task.task_id, r#"{"status":"succeeded","result":{}}"#)).await;
    assert_eq!(assert_error(&late, 409, "conflict"), "the task is FAILED and cannot take this outcome");
    assert_eq!(current(&app, &task).await, stored);
}

#[tokio::test]
async fn a_callback_for_a_task_not_yet_handed_over_is_a_conflict() {
    let app = app();
    let now = Timestamp::now();
    let task = Task::received(
        ClientId::parse("alpha").unwrap(),
        json!({}),
        now,
        now.plus_seconds(TASK_TTL).as_epoch_seconds(),
    );
    app.store.insert(&task).await.unwrap();
    let response = handle(&app, callback(&task.task_id, r#"{"status":"succeeded","result":{}}"#)).await;
    assert_eq!(assert_error(&response, 409, "conflict"), "the task is RECEIVED and cannot take this outcome");
    assert_eq!(current(&app, &task).await, task);
}

#[tokio::test]
async fn a_callback_for_an_unknown_task_answers_404() {
    let app = app();
    let response = handle(&app, callback(&TaskId::generate(), r#"{"status":"succeeded","result":{}}"#)).await;
    assert_eq!(assert_error(&response, 404, "not_found"), "no such task");
}

#[tokio::test]
async fn a_callback_for_an_expired_task_answers_404() {
    let app = app();
    let mut task = in_progress(&app).await;
    // Expired but not yet deleted by storage: a finished copy that outlived its TTL.
    task.status = TaskStatus::Done;
    task.result = Some(json!({"answer": 1}));
    task.expires_at = Timestamp::now().as_epoch_seconds() - 1;
    let expired_id = TaskId::generate();
    task.task_id = expired_id.clone();
    app.store.insert(&task).await.unwrap();

    let response = handle(&app, callback(&expired_id, r#"{"status":"succeeded","result":{"answer":2}}"#)).await;
    assert_error(&response, 404, "not_found");
    assert_eq!(current(&app, &task).await, task);
}

#[tokio::test]
async fn an_unknown_status_value_is_refused_with_400() {
    let app = app();
    let task = in_progress(&app).await;
    for body in [
        r#"{"status":"done","result":{}}"#,
        r#"{"status":"SUCCEEDED","result":{}}"#,
        r#"{"status":"cancelled"}"#,
        r#"{"result":{}}"#,
        r#"{"status":"succeeded"}"#,
        r#"{"status":"failed","error":"  "}"#,
        r#"{"status":"succeeded","result":{},"extra":1}"#,
    ] {
        let response = handle(&app, callback(&task.task_id, body)).await;
        assert_error(&response, 400, "invalid_request");
    }
    assert_eq!(current(&app, &task).await, task);
}

#[tokio::test]
async fn malformed_or_undeclared_bodies_and_bad_ids_are_refused() {
    let app = app();
    let task = in_progress(&app).await;

    let malformed = handle(&app, callback(&task.task_id, r#"{"status":"#)).await;
    assert_error(&malformed, 400, "malformed_json");

    let empty = handle(&app, callback(&task.task_id, "")).await;
    assert_error(&empty, 400, "malformed_json");

    let text =
        handle(&app, callback_with(task.task_id.as_str(), Some("text/plain"), r#"{"status":"succeeded","result":{}}"#))
            .await;
    assert_error(&text, 415, "unsupported_media_type");

    let bad_id =
        handle(&app, callback_with("not-a-task", Some("application/json"), r#"{"status":"succeeded","result":{}}"#))
            .await;
    assert_error(&bad_id, 400, "invalid_task_id");

    let too_long = json!({"status": "failed", "error": "e".repeat(2_000)}).to_string();
    let large = handle(&app, callback(&task.task_id, &too_long)).await;
    assert_error(&large, 413, "too_large");

    assert_eq!(current(&app, &task).await, task);
}
