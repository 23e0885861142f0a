//! Scheduled tasks (`run_at`), trace ids (`traceparent`) and bulk submits (`POST /tasks/batch`).

use super::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn post_with(headers: &[(&str, &str)], body: &str) -> Request {
    let mut all = vec![("x-api-key", ALPHA_KEY), ("content-type", "application/json")];
    all.extend_from_slice(headers);
    post(&all, body)
}

/// `POST /tasks/batch` with `body` as `api_key`, and more headers.
pub(super) fn batch(api_key: Option<&str>, headers: &[(&str, &str)], body: &str) -> Request {
    let mut event: Value = serde_json::from_str(POST_TASKS_EVENT).unwrap();
    event["routeKey"] = json!("POST /tasks/batch");
    event["requestContext"]["routeKey"] = json!("POST /tasks/batch");
    event["rawPath"] = json!("/tasks/batch");
    event["requestContext"]["http"]["path"] = json!("/tasks/batch");
    event["headers"]["content-type"] = json!("application/json");
    if let Some(key) = api_key {
        event["headers"]["x-api-key"] = json!(key);
    }
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    into_request(event)
}

fn task_id_of(body: &Value) -> TaskId {
    TaskId::parse(body["task_id"].as_str().unwrap()).unwrap()
}

/// The `results` of a batch answer, checked to be a 200 with only that.
pub(super) fn results(response: &Response<Body>) -> Vec<Value> {
    assert_eq!(response.status().as_u16(), 200, "{}", body_json(response));
    assert_eq!(header(response, "content-type"), Some("application/json"));
    let body = body_json(response);
    assert_eq!(body.as_object().unwrap().len(), 1, "only `results`: {body}");
    body["results"].as_array().unwrap().clone()
}

pub(super) fn item_error(result: &Value) -> &str {
    assert_eq!(result.as_object().unwrap().len(), 1, "only `error`: {result}");
    assert!(result["error"]["message"].is_string(), "{result}");
    result["error"]["code"].as_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// run_at

#[tokio::test]
async fn a_task_with_a_later_run_at_waits_received_due_then_and_lives_a_ttl_from_then() {
    let (app, _) = app();
    let run_at = later(60_000);
    let body = format!(r#"{{"payload":{{"n":1}},"run_at":"{}"}}"#, run_at.to_rfc3339());
    let response = handle(&app, json_post(&body)).await;
    assert_eq!(response.status().as_u16(), 202);
    let answer = body_json(&response);
    assert_eq!(answer["run_at"], run_at.to_rfc3339());
    let task = current(&app, &task_id_of(&answer)).await;
    assert_eq!((task.status, task.due_at, task.run_at), (TaskStatus::Received, run_at, Some(run_at)));
    assert_eq!(task.expires_at, run_at.plus_seconds(TASK_TTL).as_epoch_seconds());
    assert!(task.created_at < run_at);
}

#[tokio::test]
async fn a_run_at_in_the_past_means_now_and_is_not_shown() {
    let (app, _) = app();
    let response = handle(&app, json_post(r#"{"payload":{},"run_at":"2001-01-01T00:00:00Z"}"#)).await;
    assert_eq!(response.status().as_u16(), 202);
    let answer = body_json(&response);
    assert!(answer.get("run_at").is_none(), "{answer}");
    let task = current(&app, &task_id_of(&answer)).await;
    assert_eq!((task.due_at, task.run_at), (task.created_at, None));
}

#[tokio::test]
async fn a_run_at_more_than_7_days_ahead_or_not_rfc3339_is_refused_with_400() {
    let (app, _) = app();
    let too_far = later(7 * 86_400_000 + 60_000).to_rfc3339();
    let response = handle(&app, json_post(&format!(r#"{{"payload":{{}},"run_at":"{too_far}"}}"#))).await;
    let message = assert_error(&response, 400, "run_at_too_far");
    assert!(message.contains("7 days"), "{message}");
    let just_in = later(7 * 86_400_000 - 60_000).to_rfc3339();
    let fits = handle(&app, json_post(&format!(r#"{{"payload":{{}},"run_at":"{just_in}"}}"#))).await;
    assert_eq!(fits.status().as_u16(), 202);
    for bad in [r#""tomorrow""#, r#""2026-11-27 00:00""#, "17642013", r#"{}"#] {
        let response = handle(&app, json_post(&format!(r#"{{"payload":{{}},"run_at":{bad}}}"#))).await;
        assert_error(&response, 400, "invalid_request");
    }
    assert_eq!(stored_count(&app).await, 1, "only the one that fits");
}

#[tokio::test]
async fn a_scheduled_task_can_be_cancelled_while_it_waits() {
    let (app, _) = app();
    let body = format!(r#"{{"payload":{{}},"run_at":"{}"}}"#, later(3_600_000).to_rfc3339());
    let task_id = task_id_of(&body_json(&handle(&app, json_post(&body)).await));
    let response = handle(&app, delete(task_id.as_str(), Some(ALPHA_KEY))).await;
    assert_eq!(response.status().as_u16(), 200);
    let view = body_json(&response);
    assert_eq!((view["status"].as_str(), view["cancelled"].as_bool()), (Some("FAILED"), Some(true)));
    assert!(view["run_at"].is_string(), "the run_at it had: {view}");
    assert_eq!(view, view_of(&current(&app, &task_id).await));
}

#[tokio::test]
async fn a_keyed_repeat_must_ask_the_same_run_at() {
    let (app, _) = app();
    let run_at = later(60_000).to_rfc3339();
    let body = format!(r#"{{"payload":{{"n":1}},"run_at":"{run_at}"}}"#);
    let first = handle(&app, keyed_post(ALPHA_KEY, "k", &body)).await;
    assert_eq!(first.status().as_u16(), 202);
    let again = handle(&app, keyed_post(ALPHA_KEY, "k", &body)).await;
    assert_eq!((again.status().as_u16(), body_json(&again)), (200, body_json(&first)));
    for other in [r#"{"payload":{"n":1}}"#.to_owned(), body.replace(&run_at, &later(120_000).to_rfc3339())] {
        assert_error(&handle(&app, keyed_post(ALPHA_KEY, "k", &other)).await, 409, "idempotency_conflict");
    }
}

// ---------------------------------------------------------------------------------------------
// traceparent

#[tokio::test]
async fn a_valid_traceparent_puts_the_task_in_the_callers_trace() {
    let (app, _) = app();
    let response = handle(&app, post_with(&[("traceparent", TRACEPARENT)], r#"{"payload":{}}"#)).await;
    let answer = body_json(&response);
    assert_eq!(answer["trace_id"], TRACE_ID);
    let task = current(&app, &task_id_of(&answer)).await;
    assert_eq!(task.trace_id.as_ref().map(|t| t.as_str()), Some(TRACE_ID));
}

#[tokio::test]
async fn without_a_valid_traceparent_a_task_starts_a_trace_of_its_own() {
    let (app, _) = app();
    let mut seen = Vec::new();
    for headers in [
        vec![],
        vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
        vec![("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        vec![("traceparent", "garbage")],
    ] {
        let response = handle(&app, post_with(&headers, r#"{"payload":{}}"#)).await;
        assert_eq!(response.status().as_u16(), 202, "an invalid traceparent is ignored, not refused");
        let answer = body_json(&response);
        let trace = answer["trace_id"].as_str().unwrap().to_owned();
        assert!(taskfleet_core::trace::TraceId::parse(&trace).is_some() && trace != TRACE_ID, "{headers:?}");
        assert_eq!(current(&app, &task_id_of(&answer)).await.trace_id.map(|t| t.to_string()), Some(trace.clone()));
        seen.push(trace);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "a new trace each time");
}

// ---------------------------------------------------------------------------------------------
// POST /tasks/batch

#[tokio::test]
async fn a_batch_answers_one_result_per_item_in_order_and_a_bad_item_spoils_nothing() {
    let (app, events) = app();
    let too_far = later(8 * 86_400_000).to_rfc3339();
    let run_at = later(60_000).to_rfc3339();
    let body = json!({"tasks": [
        {"payload": {"n": 0}},
        {"payload": [1]},
        {"payload": {"n": 2}, "run_at": too_far},
        {"payload": {"n": 3}, "run_at": run_at, "idempotency_key": "item-3"},
        {"payload": {"n": 4}, "unknown": true},
        {"payload": {"s": "x".repeat(MAX_PAYLOAD_BYTES)}},
        {"payload": {"n": 6}, "idempotency_key": ""},
    ]})
    .to_string();
    let results = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    assert_eq!(results.len(), 7);
    let codes: Vec<Option<&str>> = results.iter().map(|r| r.get("error").is_some().then(|| item_error(r))).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("invalid_request"),
            Some("run_at_too_far"),
            None,
            Some("invalid_request"),
            Some("too_large"),
            Some("invalid_request")
        ]
    );
    for index in [0, 3] {
        let result = &results[index];
        assert_eq!(result["status"], "RECEIVED");
        let task = current(&app, &task_id_of(result)).await;
        assert_eq!(payload_of(&app, &task.task_id).await, Content::Inline(json!({"n": index})));
        assert_eq!(result["created_at"], task.created_at.to_rfc3339());
        assert_eq!(result["trace_id"], task.trace_id.unwrap().as_str());
    }
    assert_eq!(results[3]["run_at"], run_at.as_str());
    assert_eq!(current(&app, &task_id_of(&results[3])).await.due_at.to_rfc3339(), run_at);
    assert_eq!(stored_count(&app).await, 2);
    assert_eq!(events.events(), [TaskEvent::Created, TaskEvent::Created]);
}

#[tokio::test]
async fn item_idempotency_keys_behave_like_the_idempotency_key_header() {
    let (app, events) = app();
    let body =
        json!({"tasks": [{"payload": {"n": 1}, "idempotency_key": "order-1"}, {"payload": {"n": 2}}]}).to_string();
    let first = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    let again = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    assert_eq!(again[0], first[0], "the keyed item answers its task");
    assert_ne!(again[1]["task_id"], first[1]["task_id"], "an item without a key is a new task each time");
    // The header and the item share one key space per client.
    let single = handle(&app, keyed_post(ALPHA_KEY, "order-1", r#"{"payload":{"n":1}}"#)).await;
    assert_eq!((single.status().as_u16(), &body_json(&single)["task_id"]), (200, &first[0]["task_id"]));
    // The same key with another payload: that item's conflict, the others go on.
    let conflicting =
        json!({"tasks": [{"payload": {"n": 9}, "idempotency_key": "order-1"}, {"payload": {"n": 3}}]}).to_string();
    let answer = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &conflicting)).await);
    assert_eq!(item_error(&answer[0]), "idempotency_conflict");
    assert_eq!(answer[1]["status"], "RECEIVED");
    // Another client's key of the same name is its own.
    let other = results(&handle(&app, batch(Some(BETA_KEY), &[], &body)).await);
    assert_ne!(other[0]["task_id"], first[0]["task_id"]);
    assert_eq!(stored_count(&app).await, 6);
    assert_eq!(events.events().len(), 6);
}

#[tokio::test]
async fn a_batch_shares_a_valid_traceparent_and_otherwise_each_task_starts_its_own_trace() {
    let (app, _) = app();
    let body = json!({"tasks": [{"payload": {}}, {"payload": {}}, {"payload": {}}]}).to_string();
    let shared = results(&handle(&app, batch(Some(ALPHA_KEY), &[("traceparent", TRACEPARENT)], &body)).await);
    assert!(shared.iter().all(|r| r["trace_id"] == TRACE_ID), "{shared:?}");
    for headers in [vec![], vec![("traceparent", "nonsense")]] {
        let own = results(&handle(&app, batch(Some(ALPHA_KEY), &headers, &body)).await);
        let mut traces: Vec<&str> = own.iter().map(|r| r["trace_id"].as_str().unwrap()).collect();
        traces.sort_unstable();
        traces.dedup();
        assert_eq!(traces.len(), 3, "{own:?}");
    }
}

#[tokio::test]
async fn a_request_that_is_not_a_batch_is_refused_whole() {
    let (app, _) = app();
    assert_error(&handle(&app, batch(None, &[], r#"{"tasks":[{"payload":{}}]}"#)).await, 401, "unauthorized");
    assert_error(&handle(&app, batch(Some(ALPHA_KEY), &[], "{")).await, 400, "malformed_json");
    assert_error(&handle(&app, batch(Some(ALPHA_KEY), &[], "")).await, 400, "malformed_json");
    let too_many = json!({"tasks": vec![json!({"payload": {}}); 101]}).to_string();
    for body in [r#"{}"#, r#"{"tasks":[]}"#, r#"{"tasks":{}}"#, r#"[{"payload":{}}]"#, too_many.as_str()] {
        let message = assert_error(&handle(&app, batch(Some(ALPHA_KEY), &[], body)).await, 400, "invalid_request");
        assert!(!message.is_empty());
    }
    let text = batch(Some(ALPHA_KEY), &[("content-type", "text/plain")], r#"{"tasks":[{"payload":{}}]}"#);
    assert_error(&handle(&app, text).await, 415, "unsupported_media_type");
    let mut huge = vec![b' '; MAX_BODY_BYTES + 1];
    huge[0] = b'{';
    let huge = String::from_utf8(huge).unwrap();
    assert_error(&handle(&app, batch(Some(ALPHA_KEY), &[], &huge)).await, 413, "too_large");
    assert_eq!(stored_count(&app).await, 0);

    let full = json!({"tasks": vec![json!({"payload": {}}); 100]}).to_string();
    assert_eq!(results(&handle(&app, batch(Some(ALPHA_KEY), &[], &full)).await).len(), 100);
    assert_eq!(stored_count(&app).await, 100);
}

#[tokio::test]
async fn with_storage_down_each_item_answers_unavailable_and_the_batch_still_200() {
    let (app, _) = app();
    app.store.fail_writes(0, 1_000);
    let body = json!({"tasks": [{"payload": {}}, {"payload": {}, "idempotency_key": "k"}]}).to_string();
    let answer = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    assert!(answer.iter().all(|r| item_error(r) == "unavailable"), "{answer:?}");
}
