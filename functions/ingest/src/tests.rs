use super::*;

use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::validation::{MAX_BODY_BYTES, MAX_PAYLOAD_BYTES};
use taskfleet_core::{ClientId, TaskId, TaskStatus};

const ALPHA_KEY: &str = "alpha-key-0123456789";
const BETA_KEY: &str = "beta-key-0123456789x";

/// An API Gateway HTTP API (payload format 2.0) event as Lambda receives it, trimmed from
/// aws_lambda_events' `example-apigw-v2-request-no-authorizer.json` and routed to `POST /tasks`.
/// Headers and body are set per test.
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

fn app() -> App<MemoryStore> {
    App {
        store: MemoryStore::new(),
        keys: ApiKeys::parse(&format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}")).unwrap(),
        ttl: TtlPolicy::new(3_600, 86_400),
    }
}

/// Builds the request the way lambda_http does in Lambda: the event JSON is deserialized into a
/// `LambdaRequest` and converted into an `http::Request`.
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
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    assert!(matches!(lambda, LambdaRequest::ApiGatewayV2(_)));
    Request::from(lambda)
}

fn post(headers: &[(&str, &str)], body: &str) -> Request {
    request_with(headers, Some(body), false)
}

fn json_post(body: &str) -> Request {
    post(&[("x-api-key", ALPHA_KEY), ("content-type", "application/json")], body)
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

async fn stored_count(app: &App<MemoryStore>) -> u64 {
    let mut total = 0;
    for status in TaskStatus::ALL {
        total += app.store.count(status, None).await.unwrap();
    }
    total
}

#[tokio::test]
async fn a_submission_is_accepted_with_its_location_and_stored_as_received() {
    let app = app();
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
    assert_eq!(keys, ["created_at", "status", "task_id"]);
    assert_eq!(body["status"], "RECEIVED");

    let task_id = TaskId::parse(body["task_id"].as_str().unwrap()).unwrap();
    assert_eq!(header(&response, "location"), Some(format!("/tasks/{task_id}").as_str()));

    let task = app.store.get(&task_id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!(task.client_id, ClientId::parse("alpha").unwrap());
    assert_eq!(task.payload, json!({"n": 1, "nested": {"list": [1, 2.5, "x"], "none": null}}));
    assert_eq!(task.attempts, 0);
    assert_eq!(task.result, None);
    assert_eq!(task.error, None);
    assert!(before <= task.created_at && task.created_at <= after);
    assert_eq!(task.updated_at, task.created_at);
    assert_eq!(task.expires_at, task.created_at.plus_seconds(3_600).as_epoch_seconds());
    assert_eq!(body["created_at"], task.created_at.to_rfc3339());
    assert_eq!(stored_count(&app).await, 1);
}

#[tokio::test]
async fn each_submission_gets_its_own_task_for_the_calling_client() {
    let app = app();
    let first = body_json(&handle(&app, json_post(r#"{"payload":{}}"#)).await);
    let second =
        handle(&app, post(&[("x-api-key", BETA_KEY), ("content-type", "application/json")], r#"{"payload":{}}"#)).await;
    assert_eq!(second.status().as_u16(), 202);
    let second = body_json(&second);
    assert_ne!(first["task_id"], second["task_id"]);

    let second_id = TaskId::parse(second["task_id"].as_str().unwrap()).unwrap();
    let task = app.store.get(&second_id).await.unwrap().unwrap();
    assert_eq!(task.client_id.as_str(), "beta");
    assert_eq!(stored_count(&app).await, 2);
}

#[tokio::test]
async fn json_with_a_charset_and_a_base64_encoded_body_is_accepted() {
    let app = app();
    // `{"payload":{"n":1}}`, as API Gateway forwards a body it treats as binary.
    let request = request_with(
        &[("x-api-key", ALPHA_KEY), ("content-type", "application/json; charset=utf-8")],
        Some("eyJwYXlsb2FkIjp7Im4iOjF9fQ=="),
        true,
    );
    let response = handle(&app, request).await;
    assert_eq!(response.status().as_u16(), 202);
    let task_id = TaskId::parse(body_json(&response)["task_id"].as_str().unwrap()).unwrap();
    let task = app.store.get(&task_id).await.unwrap().unwrap();
    assert_eq!(task.payload, json!({"n": 1}));
}

#[tokio::test]
async fn a_missing_api_key_is_refused_with_401() {
    let app = app();
    let response = handle(&app, post(&[("content-type", "application/json")], r#"{"payload":{}}"#)).await;
    let message = assert_error(&response, 401, "unauthorized");
    assert_eq!(message, "a valid x-api-key header is required");
    assert_eq!(response.headers().get("location"), None);
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_unknown_or_empty_api_key_is_refused_with_401() {
    let app = app();
    for key in ["not-a-known-key-at-all", "", &ALPHA_KEY[1..]] {
        let response =
            handle(&app, post(&[("x-api-key", key), ("content-type", "application/json")], r#"{"payload":{}}"#)).await;
        assert_error(&response, 401, "unauthorized");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn the_key_is_checked_before_the_body() {
    let app = app();
    let response = handle(&app, post(&[("content-type", "text/plain")], "nonsense")).await;
    assert_error(&response, 401, "unauthorized");
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_refused_with_415() {
    let app = app();
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
    let app = app();
    for body in [r#"{"payload": {"#, "payload=1", "{'payload': {}}"] {
        let response = handle(&app, json_post(body)).await;
        let message = assert_error(&response, 400, "malformed_json");
        assert!(message.starts_with("the request body is not valid JSON"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_empty_body_is_refused_with_400() {
    let app = app();
    let no_body = request_with(&[("x-api-key", ALPHA_KEY), ("content-type", "application/json")], None, false);
    for request in [no_body, json_post(""), json_post(" \n")] {
        let message = assert_error(&handle(&app, request).await, 400, "malformed_json");
        assert_eq!(message, "the request body is empty; a JSON object is required");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_that_is_not_an_object_is_refused_with_400() {
    let app = app();
    for body in [r#"{"payload": [1, 2]}"#, r#"{"payload": "text"}"#, r#"{"payload": null}"#, r#"{"payload": 7}"#] {
        let response = handle(&app, json_post(body)).await;
        let message = assert_error(&response, 400, "invalid_request");
        assert!(message.contains("`payload` must be a JSON object"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_unknown_or_missing_field_is_refused_with_400() {
    let app = app();
    let unknown = handle(&app, json_post(r#"{"payload": {}, "priority": 1}"#)).await;
    let message = assert_error(&unknown, 400, "invalid_request");
    assert!(message.contains("priority"), "{message}");

    let missing = handle(&app, json_post(r#"{"data": {}}"#)).await;
    assert_error(&missing, 400, "invalid_request");

    let not_an_object = handle(&app, json_post("[]")).await;
    assert_error(&not_an_object, 400, "invalid_request");
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_with_413() {
    let app = app();
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
    let app = app();
    let body = format!(r#"{{"payload": {{}}}}{}"#, " ".repeat(MAX_BODY_BYTES));
    let response = handle(&app, json_post(&body)).await;
    let message = assert_error(&response, 413, "too_large");
    assert_eq!(message, format!("`body` is larger than the {MAX_BODY_BYTES} bytes allowed"));
    assert_eq!(stored_count(&app).await, 0);
}
