//! AWS misbehaving, on purpose: a loopback proxy in front of the emulator that throttles, fails,
//! slows down, or lets a request through and then drops its answer (an ambiguous write: it
//! landed, the caller does not know). Point a fleet's `AWS_ENDPOINT_URL` (its SDK config) at
//! [`FaultyProxy::url`] to see what the fleet does when AWS behaves as AWS sometimes does.
//!
//! Faults come from rates (each request draws one) or from a script (the next requests that
//! match get these faults, in order), so a test can pin one ambiguous write exactly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers as a throttled AWS service would (DynamoDB/SQS `ThrottlingException`, others 503).
    Throttle,
    /// Answers 500, as an AWS service's internal error.
    Fail,
    /// Waits [`SLOW_BY`], then forwards.
    Slow,
    /// Forwards (the write lands), then breaks the connection instead of answering.
    DropAnswer,
}

/// How long a slowed request waits (below the SDK's 2 s attempt timeout).
pub const SLOW_BY: Duration = Duration::from_millis(1_200);

/// How often each fault strikes, each a probability in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub throttle: f64,
    pub fail: f64,
    pub slow: f64,
    pub drop_answer: f64,
}

impl Rates {
    /// Every fault at `each` (so `4 × each` of all requests misbehave).
    pub fn each(each: f64) -> Self {
        Self { throttle: each, fail: each, slow: each, drop_answer: each }
    }
}

/// A fault for the next request of `target` (the `x-amz-target` header, e.g.
/// `DynamoDB_20120810.PutItem`) whose body contains `body_contains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripted {
    pub target: String,
    pub body_contains: String,
    pub fault: Fault,
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Counts {
    pub forwarded: AtomicUsize,
    pub throttled: AtomicUsize,
    pub failed: AtomicUsize,
    pub slowed: AtomicUsize,
    pub dropped: AtomicUsize,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    rates: Rates,
    script: Mutex<Vec<Scripted>>,
    counts: Arc<Counts>,
}

/// A running proxy; dropping it stops it.
pub struct FaultyProxy {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    proxy: Arc<Proxy>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultyProxy {
    /// A proxy to `upstream` (the emulator's URL) on an ephemeral loopback port.
    pub async fn start(upstream: &str, rates: Rates) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let counts = Arc::new(Counts::default());
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rates,
            script: Mutex::default(),
            counts: counts.clone(),
        });
        let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, counts, proxy, server })
    }

    /// The endpoint to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a fault for the next matching request.
    pub fn script(&self, scripted: Scripted) {
        self.proxy.script.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(scripted);
    }
}

impl Proxy {
    fn fault_for(&self, target: &str, body: &[u8]) -> Option<Fault> {
        let mut script = self.script.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = String::from_utf8_lossy(body);
        if let Some(index) = script.iter().position(|s| s.target == target && text.contains(&s.body_contains)) {
            return Some(script.remove(index).fault);
        }
        drop(script);
        let draw = fastrand::f64();
        let r = self.rates;
        [
            (r.throttle, Fault::Throttle),
            (r.fail, Fault::Fail),
            (r.slow, Fault::Slow),
            (r.drop_answer, Fault::DropAnswer),
        ]
        .into_iter()
        .scan(0.0, |floor, (rate, fault)| {
            *floor += rate;
            Some((*floor, fault))
        })
        .find(|(ceiling, _)| draw < *ceiling)
        .map(|(_, fault)| fault)
    }
}

fn json_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
    response
}

fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Headers that belong to one connection, not to the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "host")
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return status_only(StatusCode::BAD_REQUEST);
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let json_protocol = !target.is_empty();
    let counts = &proxy.counts;
    let fault = proxy.fault_for(&target, &body);
    match fault {
        Some(Fault::Throttle) => {
            counts.throttled.fetch_add(1, Ordering::SeqCst);
            return if json_protocol {
                json_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded (injected)")
            } else {
                status_only(StatusCode::SERVICE_UNAVAILABLE)
            };
        }
        Some(Fault::Fail) => {
            counts.failed.fetch_add(1, Ordering::SeqCst);
            return if json_protocol {
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "injected")
            } else {
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            };
        }
        Some(Fault::Slow) => {
            counts.slowed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(SLOW_BY).await;
        }
        Some(Fault::DropAnswer) | None => {}
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = proxy.client.request(parts.method.clone(), format!("{}{path}", proxy.upstream));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(_) => return status_only(StatusCode::BAD_GATEWAY),
    };
    let status = answer.status();
    let headers: HeaderMap =
        answer.headers().iter().filter(|(n, _)| !hop_by_hop(n)).map(|(n, v)| (n.clone(), v.clone())).collect();
    let bytes: Bytes = answer.bytes().await.unwrap_or_default();
    counts.forwarded.fetch_add(1, Ordering::SeqCst);
    let body = if fault == Some(Fault::DropAnswer) {
        counts.dropped.fetch_add(1, Ordering::SeqCst);
        // The request was carried out; the answer breaks off after its headers.
        Body::from_stream(futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("answer dropped (injected)"))
        }))
    } else {
        Body::from(bytes)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
