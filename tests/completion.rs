//! Completion webhooks end to end through the local fleet (issue 12): a client makes its secret
//! with `POST /webhook-secret`, submits tasks with a `webhook_url` on loopback (allowed in local
//! runs), and its receiver gets each finished task exactly once in the common case, signed with
//! the client's secret; a receiver answering 500 gets the retry schedule (a short one here); after
//! a rotation both secrets verify during the grace period; a hanging receiver of one client does
//! not hold up another client's deliveries.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use taskfleet_core::Timestamp;
use taskfleet_core::completion::schedule::DeliverySchedule;
use taskfleet_core::signing::{self, Signed, SigningSecrets};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, Scenario, TestFleet, completion_settings, webhooks};
use taskfleet_testkit::receiver::{Behaviour, Received, WebhookReceiver};

/// `POST /webhook-secret` as `key`: the new secret.
async fn make_secret(fleet: &TestFleet, key: &str) -> String {
    webhooks::issue_secret(&fleet.http, &fleet.url(""), key).await
}

/// `POST /tasks` as `key` with `body`: (status, answer).
async fn post_task(fleet: &TestFleet, key: &str, body: Value) -> (u16, Value) {
    let answer = fleet.http.post(fleet.url("/tasks")).header("x-api-key", key).json(&body).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Submits a task whose completion goes to `url`; its id.
async fn submit_notifying(fleet: &TestFleet, key: &str, payload: Value, url: &str) -> String {
    webhooks::submit_notifying(&fleet.http, &fleet.url(""), key, payload, url).await
}

fn signed(received: &Received) -> Signed {
    let header = |name| received.header(name).unwrap_or_default().to_owned();
    Signed { id: header(signing::ID), timestamp: header(signing::TIMESTAMP), signature: header(signing::SIGNATURE) }
}

/// Whether `secret` alone verifies the delivery.
fn verifies(secret: &str, received: &Received) -> bool {
    let secrets = SigningSecrets::parse(secret).expect("a whsec_ secret");
    secrets.verify(&signed(received), &received.body, Timestamp::now()).is_ok()
}

/// The task id a delivery is about.
fn task_of(received: &Received) -> String {
    received.json()["data"]["task_id"].as_str().unwrap_or_default().to_owned()
}

/// Polls the task until its view's `webhook` is as `wanted` says (bounded); the view.
async fn until_webhook(
    fleet: &TestFleet,
    key: &str,
    task_id: &str,
    within: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (code, view) = fleet.status(key, task_id).await;
        assert_eq!(code, 200, "{view}");
        if wanted(&view["webhook"]) {
            return view;
        }
        assert!(start.elapsed() < within, "webhook of {task_id} not as wanted within {within:?}: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |webhook| webhook["state"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_finished_task_is_delivered_once_signed_with_its_clients_secret() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(100))).await;
    let receiver = WebhookReceiver::start(Behaviour::always(204)).await;
    let secret = make_secret(&fleet, KEY_ALPHA).await;
    let url = receiver.url("/hooks/alpha");

    let mut done = Vec::new();
    for n in 0..8 {
        done.push(submit_notifying(&fleet, KEY_ALPHA, json!({"n": n}), &url).await);
    }
    // A task cancelled while it waits for its run_at ends FAILED: a task.failed delivery.
    let run_at = Timestamp::now().plus(Duration::from_secs(600)).to_rfc3339();
    let (status, body) =
        post_task(&fleet, KEY_ALPHA, json!({"payload": {"n": "later"}, "run_at": run_at, "webhook_url": url})).await;
    assert_eq!(status, 202, "{body}");
    let cancelled = body["task_id"].as_str().unwrap().to_owned();
    let answer = fleet
        .http
        .delete(fleet.url(&format!("/tasks/{cancelled}")))
        .header("x-api-key", KEY_ALPHA)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);

    let expected = done.len() + 1;
    receiver.until(Duration::from_secs(60), |got| got.len() >= expected).await;
    // Later duplicates would arrive within moments (a timer delivered twice, a stream record
    // handled twice): give them the time to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = receiver.received();
    let mut by_task: HashMap<String, Vec<&Received>> = HashMap::new();
    for delivery in &received {
        by_task.entry(task_of(delivery)).or_default().push(delivery);
    }
    assert_eq!(received.len(), expected, "one delivery per finished task: {:?}", by_task.keys());

    for task_id in done.iter().chain([&cancelled]) {
        let deliveries = by_task.get(task_id).unwrap_or_else(|| panic!("no delivery for {task_id}"));
        let delivery = deliveries[0];
        assert_eq!(delivery.path, "/hooks/alpha");
        assert_eq!(delivery.header("content-type"), Some("application/json"));
        assert_eq!(delivery.header(signing::ID), Some(format!("msg_{task_id}").as_str()));
        assert!(verifies(&secret, delivery), "the signature of {task_id}'s delivery does not verify");
        let body = delivery.json();
        assert!(Timestamp::parse_rfc3339(body["timestamp"].as_str().unwrap_or_default()).is_some(), "{body}");
        let view = until_webhook(&fleet, KEY_ALPHA, task_id, Duration::from_secs(10), state("delivered")).await;
        assert_eq!(view["webhook"], json!({"state": "delivered", "attempts": 1}));
        // The data is the task as GET shows it (its delivery then still pending, and the history
        // since grown by the delivery's own entry).
        for field in ["task_id", "status", "result", "error", "cancelled", "attempts", "created_at", "trace_id"] {
            assert_eq!(body["data"][field], view[field], "{field} of {task_id}");
        }
        assert_eq!(body["data"]["webhook_url"], url.as_str());
        let expected_type = if task_id == &cancelled { "task.failed" } else { "task.succeeded" };
        assert_eq!(body["type"], expected_type, "{body}");
        let history = view["history"].as_array().unwrap();
        assert!(
            history.iter().any(|entry| entry["reason"].as_str().is_some_and(|r| r.contains("webhook delivered"))),
            "the delivery is in the history: {history:?}"
        );
    }

    // The secret is the client's own: another client's does not verify alpha's deliveries.
    let other = make_secret(&fleet, KEY_BETA).await;
    assert_ne!(other, secret);
    assert!(!verifies(&other, &received[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_gets_the_retry_schedule_then_the_delivery_is_given_up() {
    // Retries 1 s, 2 s and 2 s after the attempt before: four attempts.
    let schedule = DeliverySchedule::parse("1s,2s,2s").unwrap();
    let waits = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(2)];
    let completion = taskfleet_localfleet::CompletionSettings { schedule, ..completion_settings() };
    let fleet =
        TestFleet::start(Scenario { completion: Some(completion), ..Scenario::calm(Duration::from_millis(50)) }).await;
    let receiver = WebhookReceiver::start(Behaviour::always(500)).await;
    let secret = make_secret(&fleet, KEY_ALPHA).await;

    // A URL with a query, as clients give (a token of their own): kept, and never in the history.
    let task_id = submit_notifying(&fleet, KEY_ALPHA, json!({"n": 1}), &receiver.url("/hook?token=t0ken")).await;
    let view = until_webhook(&fleet, KEY_ALPHA, &task_id, Duration::from_secs(60), state("failed")).await;
    assert!(!view["history"].to_string().contains("t0ken"), "{view}");
    assert_eq!(view["webhook"], json!({"state": "failed", "attempts": 4}), "{view}");
    assert_eq!(view["status"], "DONE", "a failed delivery leaves the task as it ended");
    // No attempt after the last.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = receiver.received();
    assert_eq!(attempts.len(), 4, "four attempts, no more");
    // Each attempt carries the task as it is then: the attempts made so far.
    for (made, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.json()["data"]["webhook"], json!({"state": "pending", "attempts": made}));
    }
    for attempt in &attempts {
        assert_eq!(attempt.header(signing::ID), Some(format!("msg_{task_id}").as_str()), "one webhook-id");
        assert!(verifies(&secret, attempt));
    }
    // Each retry waited its wait, and not much longer (the timer fires when due).
    for (pair, wait) in attempts.windows(2).zip(waits) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= wait - Duration::from_millis(50), "a retry came {gap:?} after the attempt before, not {wait:?}");
        assert!(gap <= wait + Duration::from_millis(2_500), "a retry came {gap:?} after the attempt before ({wait:?})");
    }
    let reasons: Vec<&str> = view["history"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    for attempt in 1..=4 {
        assert!(
            reasons.iter().any(|r| r.contains(&format!("webhook attempt {attempt} failed"))),
            "attempt {attempt} is in the history: {reasons:?}"
        );
    }
    assert!(reasons.iter().any(|r| r.contains("given up")), "{reasons:?}");

    // A receiver that fails once and then answers 2xx: delivered by the second attempt.
    receiver.behave(Behaviour { script: VecDeque::from([500]), then: 204, delay: Duration::ZERO });
    let second = submit_notifying(&fleet, KEY_ALPHA, json!({"n": 2}), &receiver.url("/hook")).await;
    let view = until_webhook(&fleet, KEY_ALPHA, &second, Duration::from_secs(30), state("delivered")).await;
    assert_eq!(view["webhook"], json!({"state": "delivered", "attempts": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_both_secrets_sign_during_the_grace_period() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let receiver = WebhookReceiver::start(Behaviour::always(200)).await;
    let old = make_secret(&fleet, KEY_ALPHA).await;
    let new = make_secret(&fleet, KEY_ALPHA).await;
    assert_ne!(old, new, "a rotation gives a new secret");

    let task_id = submit_notifying(&fleet, KEY_ALPHA, json!({"n": 1}), &receiver.url("/hook")).await;
    let received = receiver.until(Duration::from_secs(30), |got| !got.is_empty()).await;
    let delivery = received.first().unwrap_or_else(|| panic!("no delivery for {task_id}"));
    let signature = delivery.header(signing::SIGNATURE).unwrap_or_default();
    assert_eq!(signature.split(' ').filter(|s| s.starts_with("v1,")).count(), 2, "{signature}");
    assert!(verifies(&new, delivery), "the new secret verifies");
    assert!(verifies(&old, delivery), "the previous secret still verifies during the grace period");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_are_checked_at_submit() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    // Before the client has a secret nothing could sign its deliveries: refused.
    let (status, body) =
        post_task(&fleet, KEY_BETA, json!({"payload": {}, "webhook_url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("/webhook-secret")), "{body}");
    make_secret(&fleet, KEY_BETA).await;
    // Even locally only loopback receivers are allowed besides public https ones.
    for url in ["http://10.0.0.7/hook", "http://169.254.169.254/latest", "ftp://127.0.0.1/hook", "not a url"] {
        let (status, body) = post_task(&fleet, KEY_BETA, json!({"payload": {}, "webhook_url": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (status, body) =
        post_task(&fleet, KEY_BETA, json!({"payload": {}, "webhook_url": "http://localhost:9/hook"})).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_up_another_clients_deliveries() {
    // Attempts time out after a second; beta's receiver answers after five.
    let completion =
        taskfleet_localfleet::CompletionSettings { timeout: Duration::from_secs(1), ..completion_settings() };
    let fleet =
        TestFleet::start(Scenario { completion: Some(completion), ..Scenario::calm(Duration::from_millis(50)) }).await;
    let hanging = WebhookReceiver::start(Behaviour { delay: Duration::from_secs(5), ..Behaviour::always(200) }).await;
    let healthy = WebhookReceiver::start(Behaviour::always(204)).await;
    make_secret(&fleet, KEY_ALPHA).await;
    make_secret(&fleet, KEY_BETA).await;

    let mut beta = Vec::new();
    for n in 0..20 {
        beta.push(submit_notifying(&fleet, KEY_BETA, json!({"n": n}), &hanging.url("/hook")).await);
    }
    let mut alpha = Vec::new();
    for n in 0..5 {
        alpha.push(submit_notifying(&fleet, KEY_ALPHA, json!({"n": n}), &healthy.url("/hook")).await);
    }
    let received = healthy.until(Duration::from_secs(60), |got| got.len() >= alpha.len()).await;
    assert_eq!(received.len(), alpha.len(), "alpha's deliveries all arrived");
    // Each of alpha's deliveries arrived soon after its task ended, whatever beta's receiver does.
    for delivery in &received {
        let ended = Timestamp::parse_rfc3339(delivery.json()["data"]["updated_at"].as_str().unwrap_or_default())
            .expect("the task's end");
        let arrived = Timestamp::from_millis(
            i64::try_from(delivery.wall.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()).unwrap(),
        );
        let late = arrived.as_millis() - ended.as_millis();
        assert!(late < 4_000, "alpha's delivery came {late} ms after its task ended");
    }
    // Beta's attempts did time out: they count as failed attempts, and are retried on its schedule.
    let view = until_webhook(&fleet, KEY_BETA, &beta[0], Duration::from_secs(30), |webhook| {
        webhook["state"] == "pending" && webhook["attempts"].as_u64() >= Some(1)
    })
    .await;
    assert!(!hanging.received().is_empty(), "{view}");
}
