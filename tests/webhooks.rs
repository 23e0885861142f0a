//! Completion webhooks end to end through the local fleet (issue 12): a task that ends with a
//! `webhook_url` is POSTed there, signed with its client's own secret, by the notifier, from the
//! deliveries queue the dispatcher fills; a receiver that fails gets the attempt again after the
//! schedule's wait, and never holds another client's delivery.
//!
//! The tasks are written to the fleet's table as ingest writes them (with their `webhook_url`),
//! then run their whole course: start timer, the example service, its callback, the delivery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use taskfleet_adapters::table::Layout;
use taskfleet_adapters::{DynamoSecretRecords, DynamoStore};
use taskfleet_core::blob::Content;
use taskfleet_core::completion::client_secret::MasterKey;
use taskfleet_core::completion::rotation;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::signing::{self, Signed, SigningSecrets};
use taskfleet_core::{ClientId, Task, Timestamp, TtlPolicy};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, MASTER_KEY, Scenario, TestFleet};

/// One request a receiver got: when, its Standard Webhooks headers, its body as sent.
type Got = (Instant, Signed, Vec<u8>);

/// What a receiver got, and the answers it gives in turn (the last one repeats).
struct Receiver {
    got: Mutex<Vec<Got>>,
    answers: Vec<u16>,
}

/// A receiver on 127.0.0.1 answering `answers` in turn; its URL.
async fn receiver(answers: Vec<u16>) -> (String, Arc<Receiver>) {
    let receiver = Arc::new(Receiver { got: Mutex::new(Vec::new()), answers });
    let state = receiver.clone();
    let take = move |headers: HeaderMap, body: axum::body::Bytes| {
        let receiver = state.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let signed = Signed {
                id: header(signing::ID),
                timestamp: header(signing::TIMESTAMP),
                signature: header(signing::SIGNATURE),
            };
            let mut got = receiver.got.lock().unwrap();
            got.push((Instant::now(), signed, body.to_vec()));
            let answer = receiver.answers.get(got.len() - 1).or(receiver.answers.last()).copied().unwrap_or(200);
            StatusCode::from_u16(answer).unwrap()
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(take));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook?token=t"), receiver)
}

/// `client`'s webhook secret, created as `POST /webhook-secret` creates it.
async fn secret_of(fleet: &TestFleet, client: &str) -> SigningSecrets {
    let records = DynamoSecretRecords::new(aws_sdk_dynamodb::Client::new(&fleet.sdk), &fleet.names.table);
    let master = MasterKey::parse(MASTER_KEY).unwrap();
    let client = ClientId::parse(client).unwrap();
    let issued =
        rotation::rotate(&records, &master, &client, Timestamp::now(), Duration::from_secs(3_600)).await.unwrap();
    SigningSecrets::parse(&issued.secret).unwrap()
}

/// A task of `client`'s notifying `url`, stored as ingest stores it; its id.
async fn submit_notifying(fleet: &TestFleet, client: &str, url: &str) -> String {
    let store = DynamoStore::with_layout(
        aws_sdk_dynamodb::Client::new(&fleet.sdk),
        &fleet.names.table,
        Layout { status_shards: 1 },
    );
    let ttl = TtlPolicy::new(3_600, 86_400);
    let now = Timestamp::now();
    let task =
        Task::received(ClientId::parse(client).unwrap(), now, ttl.new_task_expiry(now)).notifying(Some(url.into()));
    store.insert(&task, &Content::Inline(json!({"job": "resize"})), ttl.payload_expiry(now)).await.unwrap();
    task.task_id.to_string()
}

/// Waits until `receiver` got `count` requests, or panics after `within`.
async fn wait_for(receiver: &Receiver, count: usize, within: Duration) -> Vec<Got> {
    let start = Instant::now();
    loop {
        let got = receiver.got.lock().unwrap().clone();
        if got.len() >= count {
            return got;
        }
        assert!(start.elapsed() < within, "{} of {count} deliveries within {within:?}", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_ended_task_is_delivered_signed_and_a_broken_receiver_is_retried_without_delaying_others() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(50))).await;
    let alpha_secret = secret_of(&fleet, "alpha").await;
    let beta_secret = secret_of(&fleet, "beta").await;
    // beta's receiver fails its first attempt; alpha's answers at once.
    let (broken_url, broken) = receiver(vec![500, 204]).await;
    let (healthy_url, healthy) = receiver(vec![200]).await;
    let beta_task = submit_notifying(&fleet, "beta", &broken_url).await;
    let alpha_task = submit_notifying(&fleet, "alpha", &healthy_url).await;

    let got = wait_for(&healthy, 1, Duration::from_secs(30)).await;
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
    let got = wait_for(&broken, 2, Duration::from_secs(40)).await;
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
    assert_eq!(healthy.got.lock().unwrap().len(), 1, "delivered once");
}
