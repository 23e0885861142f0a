//! Completion webhooks in the end-to-end tests: a receiver on 127.0.0.1, a client's webhook
//! secret, and tasks with a `webhook_url` (written to the fleet's table as ingest writes them).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use taskfleet_adapters::table::Layout;
use taskfleet_adapters::{DynamoSecretRecords, DynamoStore, SdkConfig};
use taskfleet_core::blob::Content;
use taskfleet_core::completion::client_secret::MasterKey;
use taskfleet_core::completion::rotation;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::signing::{self, Signed, SigningSecrets};
use taskfleet_core::{ClientId, Task, Timestamp, TtlPolicy};

use crate::MASTER_KEY;

/// One request a receiver got: when, its Standard Webhooks headers, its body as sent.
pub type Got = (Instant, Signed, Vec<u8>);

/// What a receiver got, and the answers it gives in turn (the last one repeats).
pub struct Receiver {
    pub got: Mutex<Vec<Got>>,
    answers: Vec<u16>,
}

impl Receiver {
    /// What it got so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until it got `count` requests, or panics after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= count {
                return got;
            }
            assert!(start.elapsed() < within, "{} of {count} deliveries within {within:?}", got.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A receiver on 127.0.0.1 answering `answers` in turn; its URL (with a query, as clients give).
pub async fn receiver(answers: Vec<u16>) -> (String, Arc<Receiver>) {
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

/// `client`'s webhook secret in `table`, created as `POST /webhook-secret` creates it with the
/// tests' master key.
pub async fn secret_of(sdk: &SdkConfig, table: &str, client: &str) -> SigningSecrets {
    let records = DynamoSecretRecords::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let master = MasterKey::parse(MASTER_KEY).unwrap();
    let client = ClientId::parse(client).unwrap();
    let issued =
        rotation::rotate(&records, &master, &client, Timestamp::now(), Duration::from_secs(3_600)).await.unwrap();
    SigningSecrets::parse(&issued.secret).unwrap()
}

/// A task of `client`'s notifying `url`, stored in `table` as ingest stores it; its id. The
/// fleet runs it like any other: start timer, the external service, its callback, the delivery.
pub async fn submit_notifying(sdk: &SdkConfig, table: &str, client: &str, url: &str) -> String {
    let store = DynamoStore::with_layout(aws_sdk_dynamodb::Client::new(sdk), table, Layout { status_shards: 1 });
    let ttl = TtlPolicy::new(3_600, 86_400);
    let now = Timestamp::now();
    let task =
        Task::received(ClientId::parse(client).unwrap(), now, ttl.new_task_expiry(now)).notifying(Some(url.into()));
    store.insert(&task, &Content::Inline(json!({"job": "resize"})), ttl.payload_expiry(now)).await.unwrap();
    task.task_id.to_string()
}
