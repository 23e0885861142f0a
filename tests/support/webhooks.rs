//! Completion webhooks in the end-to-end tests: a receiver on 127.0.0.1, a client's webhook
//! secret and tasks with a `webhook_url`, both through the API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use taskfleet_core::signing::{self, Signed, SigningSecrets};

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

/// `POST /webhook-secret` as `key`: the client's new secret, as it is shown once.
pub async fn issue_secret(http: &reqwest::Client, base: &str, key: &str) -> SigningSecrets {
    let answer = http.post(format!("{base}/webhook-secret")).header("x-api-key", key).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "POST /webhook-secret");
    let body: Value = answer.json().await.unwrap();
    SigningSecrets::parse(body["secret"].as_str().expect("the secret")).unwrap()
}

/// `POST /tasks` as `key` with a `webhook_url`; the task's id.
pub async fn submit_notifying(http: &reqwest::Client, base: &str, key: &str, url: &str) -> String {
    let task = json!({"payload": {"job": "resize"}, "webhook_url": url});
    let answer = http.post(format!("{base}/tasks")).header("x-api-key", key).json(&task).send().await.unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "POST /tasks with a webhook_url: {body}");
    body["task_id"].as_str().expect("a task id").to_owned()
}
