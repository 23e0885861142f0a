//! Clients that don't poll (issue 12), end to end through the local fleet: scheduled tasks
//! (`run_at`), waiting reads (`?wait=`), trace ids (`traceparent`) and bulk submits
//! (`POST /tasks/batch`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskfleet_core::Timestamp;
use taskfleet_core::trace::TraceParent;
use taskfleet_e2e::{KEY_ALPHA, Scenario, TestFleet};
use taskfleet_example_service::{Answer, Arrival};

/// These tests measure time on an emulator that serves one DynamoDB request at a time: they run
/// one after another, not alongside each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// POSTs `body` to `path` as alpha, with `headers`; answers (status, body).
async fn post(fleet: &TestFleet, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut request = fleet.http.post(fleet.url(path)).header("x-api-key", KEY_ALPHA).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn get(fleet: &TestFleet, path: &str) -> (u16, Value) {
    let answer = fleet.http.get(fleet.url(path)).header("x-api-key", KEY_ALPHA).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The service's first accepted job for `task_id`, waiting for it (bounded) in its journal.
async fn first_arrival(fleet: &TestFleet, task_id: &str, within: Duration) -> Arrival {
    let start = Instant::now();
    loop {
        if let Some(arrival) = fleet.stats.arrivals().into_iter().find(|a| a.task_id == task_id) {
            return arrival;
        }
        assert!(start.elapsed() < within, "task {task_id} did not reach the service within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn timestamp(value: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(value.as_str().unwrap_or_default()).unwrap_or_else(|| panic!("not a time: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_scheduled_10_s_ahead_reaches_the_service_10_to_12_s_after_submit_and_a_cancel_stops_one() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;

    let too_far = Timestamp::now().plus_seconds(7 * 86_400 + 60).to_rfc3339();
    let (status, body) = post(&fleet, "/tasks", &[], &json!({"payload": {}, "run_at": too_far})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("run_at_too_far")), "{body}");

    let submitted = Timestamp::now();
    let run_at = submitted.plus_seconds(10);
    let (status, body) =
        post(&fleet, "/tasks", &[], &json!({"payload": {"n": 1}, "run_at": run_at.to_rfc3339()})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(timestamp(&body["run_at"]), run_at);
    let task_id = body["task_id"].as_str().unwrap().to_owned();

    // Another, to be cancelled while it waits.
    let soon = submitted.plus_seconds(5).to_rfc3339();
    let (_, other) = post(&fleet, "/tasks", &[], &json!({"payload": {"n": 2}, "run_at": soon})).await;
    let cancelled_id = other["task_id"].as_str().unwrap().to_owned();
    let cancel = fleet.http.delete(fleet.url(&format!("/tasks/{cancelled_id}"))).header("x-api-key", KEY_ALPHA);
    assert_eq!(cancel.send().await.unwrap().status().as_u16(), 200);

    // It waits, visibly: RECEIVED with its run_at.
    let (_, view) = get(&fleet, &format!("/tasks/{task_id}")).await;
    assert_eq!((view["status"].as_str(), timestamp(&view["run_at"])), (Some("RECEIVED"), run_at), "{view}");
    assert_eq!(timestamp(&view["expires_at"]).as_epoch_seconds(), run_at.plus_seconds(86_400).as_epoch_seconds());

    let arrival = first_arrival(&fleet, &task_id, Duration::from_secs(20)).await;
    let after = arrival.at.millis_since(submitted);
    println!("scheduled 10 s ahead: reached the service {after} ms after submit");
    assert!(arrival.at >= run_at, "{} ms early", run_at.millis_since(arrival.at));
    assert!((10_000..=12_000).contains(&after), "reached the service {after} ms after submit");
    let done = fleet.wait_finished(KEY_ALPHA, &task_id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "DONE");
    assert_eq!(timestamp(&done["run_at"]), run_at, "still shown once it ran");

    // By now the cancelled task's run_at is 5 s past: its timer found nothing to start.
    let (_, view) = get(&fleet, &format!("/tasks/{cancelled_id}")).await;
    assert_eq!((view["status"].as_str(), view["cancelled"].as_bool()), (Some("FAILED"), Some(true)));
    assert!(fleet.stats.arrivals().iter().all(|a| a.task_id != cancelled_id), "a cancelled task never starts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_read_answers_within_a_second_of_the_tasks_completion() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(Scenario::calm(Duration::from_secs(2))).await;
    let (status, body) = get(&fleet, &format!("/tasks/{}?wait=21", uuid())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");

    let (_, body) = post(&fleet, "/tasks", &[], &json!({"payload": {"n": 1}})).await;
    let task_id = body["task_id"].as_str().unwrap().to_owned();
    let asked = Instant::now();
    let (status, view) = get(&fleet, &format!("/tasks/{task_id}?wait=20")).await;
    let answered = Timestamp::now();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "DONE", "{view}");
    let finished = view["history"].as_array().unwrap().iter().find(|step| step["status"] == "DONE").unwrap();
    let late = answered.millis_since(timestamp(&finished["at"]));
    println!("?wait=20 answered {late} ms after the task finished ({:?} after it was asked)", asked.elapsed());
    assert!(asked.elapsed() >= Duration::from_secs(2), "the service takes 2 s");
    assert!(late <= 1_000, "answered {late} ms after the task finished");
    // The same view a plain read gives.
    assert_eq!(get(&fleet, &format!("/tasks/{task_id}")).await.1, view);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_service_receives_the_submitters_trace_id() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let (status, body) = post(&fleet, "/tasks", &[("traceparent", TRACEPARENT)], &json!({"payload": {}})).await;
    assert_eq!((status, body["trace_id"].as_str()), (202, Some(TRACE_ID)), "{body}");
    let traced = body["task_id"].as_str().unwrap().to_owned();
    let (_, body) = post(&fleet, "/tasks", &[("traceparent", "00-nonsense")], &json!({"payload": {}})).await;
    let (own_id, own_trace) =
        (body["task_id"].as_str().unwrap().to_owned(), body["trace_id"].as_str().unwrap().to_owned());
    assert_ne!(own_trace, TRACE_ID);

    for (task_id, trace_id) in [(traced.as_str(), TRACE_ID), (own_id.as_str(), own_trace.as_str())] {
        let view = fleet.wait_finished(KEY_ALPHA, task_id, Duration::from_secs(20)).await;
        assert_eq!((view["status"].as_str(), view["trace_id"].as_str()), (Some("DONE"), Some(trace_id)));
        let arrival = first_arrival(&fleet, task_id, Duration::from_secs(5)).await;
        assert_eq!(arrival.answer, Answer::Accepted);
        let header = arrival.traceparent.expect("the job carried a traceparent");
        let parent = TraceParent::parse(&header).unwrap_or_else(|| panic!("not a traceparent: {header}"));
        assert_eq!(parent.trace_id.as_str(), trace_id, "the job is in the task's trace");
        assert_ne!(parent.parent_id, "00f067aa0ba902b7", "in a span of the fleet's own");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_submits_each_item_on_its_own_and_answers_in_order() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let run_at = Timestamp::now().plus_seconds(3).to_rfc3339();
    let batch = json!({"tasks": [
        {"payload": {"n": 0}},
        {"payload": "not an object"},
        {"payload": {"n": 2}, "idempotency_key": "batch-item-2"},
        {"payload": {"n": 3}, "run_at": run_at},
    ]});
    let (status, body) = post(&fleet, "/tasks/batch", &[("traceparent", TRACEPARENT)], &batch).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["error"]["code"], "invalid_request", "{body}");
    let ids: Vec<String> = [0, 2, 3].iter().map(|&i| results[i]["task_id"].as_str().unwrap().to_owned()).collect();
    assert!([0, 2, 3].iter().all(|&i| results[i]["status"] == "RECEIVED" && results[i]["trace_id"] == TRACE_ID));
    assert_eq!(results[3]["run_at"], run_at.as_str());

    let views = fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(30)).await;
    for (n, id) in [0, 2, 3].iter().zip(&ids) {
        assert_eq!(views[id]["status"], "DONE");
        assert_eq!(views[id]["result"]["echo"], json!({"n": n}), "item {n} ran its own payload");
    }
    let scheduled = first_arrival(&fleet, &ids[2], Duration::ZERO).await;
    assert!(scheduled.at >= Timestamp::parse_rfc3339(&run_at).unwrap(), "the scheduled item waited for its run_at");

    // Again: the keyed item answers its task; the others are new tasks.
    let (status, again) = post(&fleet, "/tasks/batch", &[], &batch).await;
    assert_eq!(status, 200);
    assert_eq!(again["results"][2]["task_id"], results[2]["task_id"]);
    assert_eq!(again["results"][2]["status"], "DONE", "the task as it is now");
    assert_ne!(again["results"][0]["task_id"], results[0]["task_id"]);
}

fn uuid() -> String {
    taskfleet_core::TaskId::generate().to_string()
}
