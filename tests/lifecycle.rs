//! The lifecycle under at-least-once delivery and an unreliable external service, end to end
//! through the local fleet: chaos, a restart mid-run, cancel, replay, idempotent submits.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, MAX_ATTEMPTS, Scenario, TestFleet};
use taskfleet_example_service::Chaos;
use taskfleet_localfleet::DeliveryChaos;
use taskfleet_testkit::faults::Rates;

/// Every task finished exactly once: one DONE or FAILED step in its history, at the end, and
/// a DONE task carries the result of its own payload.
fn assert_finished_once(views: &HashMap<String, Value>) {
    for (id, view) in views {
        let steps: Vec<&str> =
            view["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
        let finishes = steps.iter().filter(|s| matches!(**s, "DONE" | "FAILED")).count();
        assert_eq!(finishes, 1, "task {id} finished {finishes} times: {steps:?}");
        assert_eq!(steps.last().copied(), view["status"].as_str(), "task {id}: {steps:?}");
        if view["status"] == "DONE" {
            assert!(view["result"]["echo"]["n"].is_number(), "task {id}: {view}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_and_aws_faults_every_task_finishes_once_and_no_attempt_is_wasted() {
    let scenario = Scenario {
        delay: Duration::from_millis(50),
        service: Chaos {
            refuse: 0.2,
            slow: 0.05,
            slow_by: Duration::from_millis(2_500),
            duplicate_callback: 0.1,
            drop_callback: 0.05,
            ..Chaos::default()
        },
        delivery: DeliveryChaos { duplicate_stream_batch: 0.1, duplicate_message: 0.1 },
        // And AWS misbehaving: 20 % of its requests throttled, failed, slowed or answered into
        // the void after the write landed.
        aws_faults: Some(Rates::each(0.05)),
        ..Scenario::default()
    };
    let fleet = TestFleet::start(scenario).await;
    let ids = fleet.submit_many(KEY_ALPHA, 200).await;
    // A bound, not a speed target: the emulator serves one request at a time, and a CI machine
    // may be slower than this one (speed is measured by `make bench`).
    let views = fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(420)).await;
    assert_finished_once(&views);
    let faults = &fleet.proxy.as_ref().expect("the fleet reached AWS through the faulty proxy").counts;
    let injected = [&faults.throttled, &faults.failed, &faults.slowed, &faults.dropped]
        .map(|count| count.load(std::sync::atomic::Ordering::SeqCst));
    assert!(injected.iter().all(|n| *n > 0), "every kind of AWS fault happened: {injected:?}");

    let requests = fleet.stats.requests();
    for id in &ids {
        let calls = requests.get(id).cloned().unwrap_or_default();
        let attempts = views[id]["attempts"].as_u64().unwrap() as usize;
        assert!((1..=MAX_ATTEMPTS as usize).contains(&calls.len()), "task {id}: called for attempts {calls:?}");
        let mut distinct = calls.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), calls.len(), "task {id}: an attempt was sent twice: {calls:?}; {}", views[id]);
        assert!(calls.len() <= attempts, "task {id}: {calls:?} for {attempts} attempts");
    }
    let done = views.values().filter(|v| v["status"] == "DONE").count();
    for view in views.values().filter(|v| v["status"] == "FAILED") {
        assert!(view["error"].as_str().unwrap().starts_with("gave up after 5 attempts"), "{view}");
    }
    assert!(done >= 190, "with 20% refusals and 5 attempts nearly all tasks succeed; {done} did");
    assert!(fleet.fleet().dead_letters.snapshot().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_fleet_restarts_mid_run_every_task_still_finishes_once() {
    let scenario = Scenario { delay: Duration::from_millis(1_000), ..Scenario::default() };
    let mut fleet = TestFleet::start(scenario).await;
    let ids = fleet.submit_many(KEY_ALPHA, 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.restart(Duration::from_secs(2)).await;
    let views = fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(120)).await;
    assert_finished_once(&views);
    assert!(views.values().all(|v| v["status"] == "DONE"), "nothing refused, so everything succeeds eventually");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_callback_is_timed_out_and_the_task_retried() {
    let scenario = Scenario {
        delay: Duration::from_millis(10),
        service: Chaos { drop_callback: 1.0, ..Chaos::default() },
        ..Scenario::default()
    };
    let fleet = TestFleet::start(scenario).await;
    let ids = fleet.submit_many(KEY_ALPHA, 1).await;
    let view = &fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(60)).await[&ids[0]];
    assert_eq!(view["status"], "FAILED");
    assert_eq!(view["attempts"], MAX_ATTEMPTS);
    assert_eq!(view["error"], "gave up after 5 attempts; last: no callback within 3 s");
    let reasons: Vec<&str> = view["history"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert_eq!(fleet.stats.requests()[&ids[0]], [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_cancels_and_replays_and_nobody_else_can() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_secs(30))).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({"fail": "on purpose"})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let delete =
        |key: &'static str| fleet.http.delete(fleet.url(&format!("/tasks/{id}"))).header("x-api-key", key).send();
    assert_eq!(delete(KEY_BETA).await.unwrap().status().as_u16(), 404);
    let cancelled = delete(KEY_ALPHA).await.unwrap();
    assert_eq!(cancelled.status().as_u16(), 200);
    let view: Value = cancelled.json().await.unwrap();
    assert_eq!((view["status"].as_str(), view["error"].as_str()), (Some("FAILED"), Some("cancelled")));
    assert_eq!(view["cancelled"], true, "the cancel is its own field: {view}");
    assert_eq!(delete(KEY_ALPHA).await.unwrap().status().as_u16(), 200, "cancelling again changes nothing");

    let retry =
        |key: &'static str| fleet.http.post(fleet.url(&format!("/tasks/{id}/retry"))).header("x-api-key", key).send();
    assert_eq!(retry(KEY_BETA).await.unwrap().status().as_u16(), 404);
    let replayed = retry(KEY_ALPHA).await.unwrap();
    assert_eq!(replayed.status().as_u16(), 202);
    let view: Value = replayed.json().await.unwrap();
    assert_eq!(view["status"], "RECEIVED");
    assert!(view.get("cancelled").is_none() && view.get("error").is_none(), "{view}");
    let again = retry(KEY_ALPHA).await.unwrap();
    assert_eq!(again.status().as_u16(), 409, "only a FAILED task can be replayed");
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_submit_creates_one_task_even_when_repeated_at_once() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    let post = |payload: Value| {
        fleet
            .http
            .post(fleet.url("/tasks"))
            .header("x-api-key", KEY_ALPHA)
            .header("idempotency-key", "order-42")
            .json(&json!({"payload": payload}))
            .send()
    };
    let answers = futures::future::join_all((0..6).map(|_| post(json!({"order": 42})))).await;
    let mut codes = Vec::new();
    let mut ids = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        codes.push(answer.status().as_u16());
        ids.push(answer.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 200, 200, 200, 200, 202], "one creates, the others get the same task");
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let conflict = post(json!({"order": 43})).await.unwrap();
    assert_eq!(conflict.status().as_u16(), 409);
    assert_eq!(conflict.json::<Value>().await.unwrap()["error"]["code"], "idempotency_conflict");
}
