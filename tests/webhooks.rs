//! Completion webhooks end to end through the local fleet (issue 12): a task that ends with a
//! `webhook_url` is POSTed there, signed with its client's own secret, by the notifier, from the
//! deliveries queue the dispatcher fills; a receiver that fails gets the attempt again after the
//! schedule's wait, and never holds another client's delivery.
//!
//! Everything goes through the API: `POST /webhook-secret`, `POST /tasks` with a `webhook_url`,
//! then the task's whole course: start timer, the example service, its callback, the delivery.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskfleet_core::Timestamp;
use taskfleet_e2e::webhooks::{issue_secret, receiver, submit_notifying};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, Scenario, TestFleet};

#[tokio::test]
async fn an_ended_task_is_delivered_signed_and_a_broken_receiver_is_retried_without_delaying_others() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let alpha_secret = issue_secret(&fleet.http, &fleet.url(""), KEY_ALPHA).await;
    let beta_secret = issue_secret(&fleet.http, &fleet.url(""), KEY_BETA).await;
    // beta's receiver fails its first attempt; alpha's answers at once.
    let (broken_url, broken) = receiver(vec![500, 204]).await;
    let (healthy_url, healthy) = receiver(vec![200]).await;
    let beta_task = submit_notifying(&fleet.http, &fleet.url(""), KEY_BETA, &broken_url).await;
    let alpha_task = submit_notifying(&fleet.http, &fleet.url(""), KEY_ALPHA, &healthy_url).await;

    let got = healthy.wait_for(1, Duration::from_secs(30)).await;
    let (_, signed, bytes) = &got[0];
    assert_eq!(alpha_secret.verify(signed, bytes, Timestamp::now()), Ok(()), "signed with alpha's own secret");
    assert!(beta_secret.verify(signed, bytes, Timestamp::now()).is_err(), "not with another client's");
    let body: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(body["type"], "task.succeeded");
    assert_eq!(body["data"]["task_id"], alpha_task.as_str());
    assert_eq!(body["data"]["status"], "DONE");
    assert_eq!(body["data"]["webhook_url"], healthy_url.as_str());

    // GET /tasks/{id} shows the delivery.
    let start = Instant::now();
    loop {
        let (code, view) = fleet.status(KEY_ALPHA, &alpha_task).await;
        assert_eq!(code, 200);
        if view["webhook"] == json!({"state": "delivered", "attempts": 1}) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not shown delivered: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // beta's broken receiver got its first attempt, then a second one the schedule's 5 s later.
    let got = broken.wait_for(2, Duration::from_secs(40)).await;
    assert!(got[1].0 - got[0].0 >= Duration::from_secs(4), "retried after {:?}", got[1].0 - got[0].0);
    assert_eq!(got[0].1.id, got[1].1.id, "every attempt of a delivery has the same webhook-id");
    assert_eq!(beta_secret.verify(&got[1].1, &got[1].2, Timestamp::now()), Ok(()));
    let second: Value = serde_json::from_slice(&got[1].2).unwrap();
    assert_eq!(second["data"]["webhook"], json!({"state": "pending", "attempts": 1}));
    let start = Instant::now();
    loop {
        let (_, view) = fleet.status(KEY_BETA, &beta_task).await;
        if view["webhook"] == json!({"state": "delivered", "attempts": 2}) {
            let reasons: Vec<&str> =
                view["history"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
            assert!(reasons.iter().any(|r| r.starts_with("webhook attempt 1 failed: HTTP 500")), "{reasons:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not shown delivered: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(healthy.got().len(), 1, "delivered once");
}
