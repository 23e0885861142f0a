//! The whole task flow through the local fleet: client → front → ingest → DynamoDB stream →
//! dispatcher → SNS → caller → external service → webhook → status, against the emulator.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, Scenario, TestFleet};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_tasks_reach_done_with_the_external_services_result() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (code, body) = fleet.submit(KEY_ALPHA, json!({"n": n, "text": "héllo"})).await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["status"], "RECEIVED");
        assert!(body["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        ids.push((n, body["task_id"].as_str().unwrap().to_owned()));
    }
    for (n, id) in &ids {
        let task = fleet.wait_finished(KEY_ALPHA, id, WITHIN).await;
        assert_eq!(task["status"], "DONE", "{task}");
        assert_eq!(task["result"], json!({"echo": {"n": n, "text": "héllo"}, "attempt": 1}));
        assert_eq!(task["attempts"], 1);
        assert!(task.get("error").is_none());
        let steps: Vec<&str> =
            task["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
        assert_eq!(steps, ["RECEIVED", "IN_PROGRESS", "DONE"]);
    }
    assert!(fleet.fleet().dead_letters.snapshot().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_callback_leaves_the_task_failed_with_the_error() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let (code, body) = fleet.submit(KEY_ALPHA, json!({"fail": "no capacity"})).await;
    assert_eq!(code, 202);
    let id = body["task_id"].as_str().unwrap();
    let task = fleet.wait_finished(KEY_ALPHA, id, WITHIN).await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(task["error"], "no capacity");
    assert!(task.get("result").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_header_leads_to_the_task_and_only_its_owner_sees_it() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let answer = fleet
        .http
        .post(fleet.url("/tasks"))
        .header("x-api-key", KEY_ALPHA)
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(location, format!("/tasks/{}", body["task_id"].as_str().unwrap()));
    let own = fleet.http.get(fleet.url(&location)).header("x-api-key", KEY_ALPHA).send().await.unwrap();
    assert_eq!(own.status().as_u16(), 200);

    let id = body["task_id"].as_str().unwrap();
    let (code, other) = fleet.status(KEY_BETA, id).await;
    let (missing_code, missing) = fleet.status(KEY_BETA, "6f9619ff-8b86-4011-b42d-00c04fc964ff").await;
    assert_eq!((code, missing_code), (404, 404));
    assert_eq!(other, missing, "another client's task looks exactly like a missing one");
    let (code, body) = fleet.status("not-a-key", id).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_callback_changes_nothing_and_a_contradicting_one_is_refused() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({"x": 1})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let done = fleet.wait_finished(KEY_ALPHA, &id, WITHIN).await;
    let callback = fleet.callback_url(&id);
    let same = json!({"status": "succeeded", "result": done["result"]});
    let again = fleet.http.post(&callback).json(&same).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let other = json!({"status": "failed", "error": "late"});
    let conflict = fleet.http.post(&callback).json(&other).send().await.unwrap();
    assert_eq!(conflict.status().as_u16(), 409);
    let (_, after) = fleet.status(KEY_ALPHA, &id).await;
    assert_eq!(after, done, "the task is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_unknown_routes_get_api_gateways_404() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    let post = |body: &'static str, content_type: &'static str| {
        fleet
            .http
            .post(fleet.url("/tasks"))
            .header("x-api-key", KEY_ALPHA)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, code, error) in [
        ("{", "application/json", 400, "malformed_json"),
        (r#"{"payload":[1]}"#, "application/json", 400, "invalid_request"),
        (r#"{"payload":{}}"#, "text/plain", 415, "unsupported_media_type"),
    ] {
        let answer = post(body, content_type).await.unwrap();
        assert_eq!(answer.status().as_u16(), code, "{body}");
        let json: Value = answer.json().await.unwrap();
        assert_eq!(json["error"]["code"], error, "{body}");
    }
    let answer = fleet.http.get(fleet.url("/nowhere")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"message": "Not Found"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_and_per_event_metrics_reach_cloudwatch() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({})).await;
    fleet.wait_finished(KEY_ALPHA, body["task_id"].as_str().unwrap(), WITHIN).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&fleet.sdk);
    let start = Instant::now();
    loop {
        let listed = cloudwatch.list_metrics().namespace(&fleet.namespace).send().await.unwrap();
        let names: std::collections::BTreeSet<String> =
            listed.metrics.unwrap_or_default().into_iter().filter_map(|m| m.metric_name).collect();
        // The cron's gauges, and the per-event metrics this task's life produced.
        let expected = taskfleet_core::metrics::GAUGES.iter().chain(&[
            taskfleet_core::metrics::TASKS_CREATED,
            taskfleet_core::metrics::TASKS_COMPLETED,
            taskfleet_core::metrics::TASK_LATENCY,
            taskfleet_core::metrics::EXTERNAL_CALLS,
        ]);
        if expected.clone().all(|name| names.contains(*name)) {
            break;
        }
        assert!(start.elapsed() < WITHIN, "metrics seen so far: {names:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A payload of exactly `bytes` bytes of compact JSON: random, incompressible text.
fn payload_of(bytes: usize) -> Value {
    let envelope = json!({"data": ""}).to_string().len();
    let data: String = std::iter::repeat_with(fastrand::alphanumeric).take(bytes - envelope).collect();
    let payload = json!({ "data": data });
    assert_eq!(payload.to_string().len(), bytes);
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_mib_payload_and_its_4_mib_result_round_trip_through_the_blob_store() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let payload = payload_of(taskfleet_core::validation::MAX_PAYLOAD_BYTES);
    assert_eq!(payload.to_string().len(), 4 * 1024 * 1024, "the documented limit");
    let (code, body) = fleet.submit(KEY_ALPHA, payload.clone()).await;
    assert_eq!(code, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();

    let task = fleet.wait_finished(KEY_ALPHA, &id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "DONE", "the external service got the whole payload inline: {}", task["history"]);
    assert!(task.get("result").is_none(), "a large result is not inline");
    let url = task["result_url"].as_str().expect("a large result is shown as result_url");
    let result: Value = reqwest::get(url).await.unwrap().error_for_status().unwrap().json().await.unwrap();
    assert!(result["echo"] == payload, "the service got the whole payload and its result came back whole");
    assert_eq!(result["attempt"], task["attempts"], "the result of the attempt that finished: {}", task["history"]);

    let (code, small) = fleet.submit(KEY_ALPHA, json!({"n": 1})).await;
    assert_eq!(code, 202, "{small}");
    let small = fleet.wait_finished(KEY_ALPHA, small["task_id"].as_str().unwrap(), WITHIN).await;
    assert_eq!((small["result"].clone(), small.get("result_url")), (json!({"echo": {"n": 1}, "attempt": 1}), None));

    let (code, too_large) =
        fleet.submit(KEY_ALPHA, payload_of(taskfleet_core::validation::MAX_PAYLOAD_BYTES + 1)).await;
    assert_eq!((code, too_large["error"]["code"].as_str()), (413, Some("too_large")), "{too_large}");
}
