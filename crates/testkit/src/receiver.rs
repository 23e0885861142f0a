//! A webhook receiver on loopback: what a client's endpoint for completion webhooks is in the
//! tests. It records every request it gets (when, headers, body) and answers as told: a fixed
//! status, a status per request in turn, or only after a delay (a hanging endpoint).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived (the test's clock).
    pub at: Instant,
    /// When it arrived (wall clock, to compare with the fleet's timestamps).
    pub wall: SystemTime,
    pub path: String,
    /// Header names lower-case; a repeated header keeps its last value.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answers for the next requests, in turn; once used up, `then`.
    pub script: VecDeque<u16>,
    pub then: u16,
    /// How long it waits before answering.
    pub delay: Duration,
}

impl Behaviour {
    /// Always `status`, at once.
    pub fn always(status: u16) -> Self {
        Self { script: VecDeque::new(), then: status, delay: Duration::ZERO }
    }
}

#[derive(Debug)]
struct Shared {
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
}

/// A running receiver; it stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WebhookReceiver {
    /// Starts a receiver on 127.0.0.1 (an ephemeral port) answering as `behaviour` says.
    pub async fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared { behaviour: Mutex::new(behaviour), received: Mutex::new(Vec::new()) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("the receiver's address");
        let app = axum::Router::new().fallback(receive).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, server }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers as `behaviour` says from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Every request so far, in the order they arrived.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits (bounded by `within`) until `done` holds for the requests received; answers them.
    pub async fn until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if done(&received) || start.elapsed() >= within {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (at, wall) = (Instant::now(), SystemTime::now());
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    shared.received.lock().unwrap_or_else(PoisonError::into_inner).push(Received {
        at,
        wall,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let (status, delay) = {
        let mut behaviour = shared.behaviour.lock().unwrap_or_else(PoisonError::into_inner);
        let status = behaviour.script.pop_front().unwrap_or(behaviour.then);
        (status, behaviour.delay)
    };
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_records_requests_and_answers_its_script_then_its_default() {
        let receiver =
            WebhookReceiver::start(Behaviour { script: VecDeque::from([500, 503]), then: 204, delay: Duration::ZERO })
                .await;
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for n in 0..3 {
            let answer = http
                .post(receiver.url("/hook"))
                .header("webhook-id", format!("msg_{n}"))
                .body("{}")
                .send()
                .await
                .unwrap();
            statuses.push(answer.status().as_u16());
        }
        assert_eq!(statuses, [500, 503, 204]);
        let received = receiver.received();
        assert_eq!(received.len(), 3);
        assert_eq!(received[2].header("webhook-id"), Some("msg_2"));
        assert_eq!(received[0].path, "/hook");
        assert_eq!(received[0].json(), serde_json::json!({}));
    }
}
