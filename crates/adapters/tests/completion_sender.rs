//! The completion webhooks' HTTP client against loopback receivers: a signed delivery arrives
//! once and verifies; any other answer, a redirect (not followed) or a timeout fails the attempt
//! with a short reason; and outside local runs, loopback and private destinations are refused
//! before any connection, whether named by address or by a host name that resolves to one.
//!
//! No test touches the network: every receiver is on loopback and the only name resolved is
//! `localhost`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use reqwest::dns::{Name, Resolve};
use taskfleet_adapters::completion::{CheckedResolver, CompletionSender, ResolveError, SubmitCheck, SubmitCheckError};
use taskfleet_core::Timestamp;
use taskfleet_core::completion::delivery::Outcome;
use taskfleet_core::completion::destination::{DestinationError, Rules};
use taskfleet_core::ports::WebhookSender;
use taskfleet_core::signing::{self, Signed, SigningSecrets};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LOCAL: Rules = Rules { allow_loopback: true };
const AWS: Rules = Rules { allow_loopback: false };
const BODY: &[u8] = br#"{"type":"task.succeeded","timestamp":"2025-01-01T00:00:00.000Z","data":{}}"#;

/// One request a receiver got: its headers and body.
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// Serves `router` on a free loopback port; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A receiver that records every request, waits `delay`, then answers `status` (with `headers`).
async fn receiver(status: StatusCode, headers: Vec<(header::HeaderName, String)>, delay: Duration) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    let router = Router::new().fallback(move |request_headers: HeaderMap, body: axum::body::Bytes| {
        let recorded = recorded.clone();
        let headers = headers.clone();
        async move {
            recorded.lock().unwrap().push((request_headers, body.to_vec()));
            tokio::time::sleep(delay).await;
            let mut answer = axum::http::HeaderMap::new();
            for (name, value) in headers {
                answer.insert(name, value.parse().unwrap());
            }
            (status, answer)
        }
    });
    (serve(router).await, seen)
}

/// A receiver that answers every request at once with `status`.
async fn answering(status: StatusCode) -> (String, Seen) {
    receiver(status, Vec::new(), Duration::ZERO).await
}

fn secrets() -> SigningSecrets {
    SigningSecrets::parse(SECRET).unwrap()
}

fn signed() -> Signed {
    secrets().sign("msg_6f9619ff-8b86-4011-b42d-00c04fc964ff", Timestamp::now(), BODY)
}

fn sender(rules: Rules) -> CompletionSender {
    CompletionSender::new(rules, Duration::from_secs(5)).unwrap()
}

async fn send(sender: &CompletionSender, url: &str) -> Outcome {
    sender.send(url, &signed(), BODY.to_vec()).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

fn failure(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failed(reason) => reason,
        Outcome::Delivered => panic!("expected a failed attempt"),
    }
}

#[tokio::test]
async fn a_2xx_answer_delivers_one_signed_post_that_verifies() {
    let (url, seen) = answering(StatusCode::NO_CONTENT).await;
    assert_eq!(send(&sender(LOCAL), &format!("{url}/hooks?token=t")).await, Outcome::Delivered);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "exactly one POST");
    let (headers, body) = &seen[0];
    assert_eq!(body, BODY);
    assert_eq!(header(headers, "content-type"), "application/json");
    assert_eq!(header(headers, "user-agent"), "taskfleet-webhooks");
    let received = Signed {
        id: header(headers, signing::ID).to_owned(),
        timestamp: header(headers, signing::TIMESTAMP).to_owned(),
        signature: header(headers, signing::SIGNATURE).to_owned(),
    };
    assert_eq!(received.id, "msg_6f9619ff-8b86-4011-b42d-00c04fc964ff");
    assert_eq!(secrets().verify(&received, body, Timestamp::now()), Ok(()));
}

#[tokio::test]
async fn a_receiver_reached_by_the_name_localhost_in_local_runs() {
    let (url, seen) = answering(StatusCode::OK).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    assert_eq!(send(&sender(LOCAL), &by_name).await, Outcome::Delivered);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn any_other_answer_fails_the_attempt_with_its_status_only() {
    let (url, _) = answering(StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(send(&sender(LOCAL), &format!("{url}/?token=secret")).await, Outcome::Failed("HTTP 500".into()));
    let (url, _) = answering(StatusCode::GONE).await;
    assert_eq!(send(&sender(LOCAL), &url).await, Outcome::Failed("HTTP 410".into()));
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (elsewhere, reached) = answering(StatusCode::NO_CONTENT).await;
    let location = vec![(header::LOCATION, format!("{elsewhere}/stolen"))];
    let (url, seen) = receiver(StatusCode::TEMPORARY_REDIRECT, location, Duration::ZERO).await;
    let reason = failure(send(&sender(LOCAL), &url).await);
    assert_eq!(reason, "HTTP 307 (redirects are not followed)");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(reached.lock().unwrap().is_empty(), "the body and signature never reach the redirect's target");
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_fails_the_attempt_in_time() {
    let (url, _) = receiver(StatusCode::NO_CONTENT, Vec::new(), Duration::from_secs(30)).await;
    let sender = CompletionSender::new(LOCAL, Duration::from_millis(500)).unwrap();
    let started = Instant::now();
    let reason = failure(send(&sender, &url).await);
    assert_eq!(reason, "timed out after 500 ms");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_closed_port_fails_the_attempt_as_a_connection_failure() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    assert_eq!(send(&sender(LOCAL), &format!("http://{closed}/")).await, Outcome::Failed("connection failed".into()));
}

#[tokio::test]
async fn outside_local_runs_loopback_destinations_are_refused_before_any_connection() {
    let (url, seen) = answering(StatusCode::NO_CONTENT).await;
    let sender = sender(AWS);
    let plain = failure(send(&sender, &format!("{url}/?token=secret")).await);
    assert!(plain.starts_with("destination refused:"), "{plain}");
    assert!(!plain.contains("secret") && !plain.contains("127.0.0.1:"), "no URL in the reason: {plain}");
    let tls = failure(send(&sender, "https://127.0.0.1/").await);
    assert_eq!(tls, "destination refused: `webhook_url` points at a non-public address (127.0.0.1)");
    let by_name = failure(send(&sender, &url.replace("http://127.0.0.1", "https://localhost")).await);
    assert!(by_name.starts_with("destination refused:"), "{by_name}");
    assert!(failure(send(&sender, "https://localhost/").await).starts_with("destination refused:"));
    assert!(seen.lock().unwrap().is_empty(), "the receiver got nothing");
}

#[tokio::test]
async fn at_submit_non_public_and_plain_http_destinations_are_refused() {
    let check = SubmitCheck::new(AWS);
    for (url, expected) in [
        ("https://127.0.0.1/", DestinationError::NotPublic("127.0.0.1".parse().unwrap())),
        ("https://10.0.0.1/", DestinationError::NotPublic("10.0.0.1".parse().unwrap())),
        ("http://example.com/", DestinationError::Scheme),
        ("https://localhost/", DestinationError::LocalName),
    ] {
        match check.check(url).await {
            Err(SubmitCheckError::Refused(refused)) => assert_eq!(refused, expected, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn at_submit_a_loopback_receiver_is_accepted_in_local_runs_and_normalised() {
    let check = SubmitCheck::new(LOCAL);
    assert_eq!(check.check("http://LOCALHOST:9000").await.unwrap(), "http://localhost:9000/");
    assert_eq!(check.check("https://127.0.0.1:9000/hook?x=1").await.unwrap(), "https://127.0.0.1:9000/hook?x=1");
    let private = check.check("https://10.0.0.1/").await.unwrap_err();
    assert!(!private.is_transient(), "a client error: {private}");
}

#[tokio::test]
async fn the_resolver_hands_out_no_address_the_rules_refuse() {
    let refused = CheckedResolver::new(AWS).resolve_checked("localhost").await.unwrap_err();
    assert!(matches!(refused, ResolveError::Refused(DestinationError::NotPublic(ip)) if ip.is_loopback()), "{refused}");
    let through_the_client = CheckedResolver::new(AWS).resolve("localhost".parse::<Name>().unwrap()).await;
    let error = through_the_client.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.starts_with("destination refused: `webhook_url` points at a non-public address"), "{error}");
}

#[tokio::test]
async fn in_local_runs_the_resolver_hands_out_loopback_addresses() {
    let resolved = CheckedResolver::new(LOCAL).resolve("localhost".parse::<Name>().unwrap()).await.unwrap();
    let addresses: Vec<_> = resolved.map(|address| address.ip()).collect();
    assert!(addresses.contains(&"127.0.0.1".parse().unwrap()), "{addresses:?}");
    assert!(addresses.iter().all(|ip| ip.is_loopback()), "{addresses:?}");
}

/// A name other than `localhost` that /etc/hosts maps to a loopback address, if any (machines
/// often map their own host name so).
fn loopback_alias() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().map(|line| line.split('#').next().unwrap_or_default()).find_map(|line| {
        let mut fields = line.split_whitespace();
        let ip: std::net::IpAddr = fields.next()?.parse().ok()?;
        let names: Vec<&str> = fields.collect();
        let alias = names.into_iter().find(|name| !name.to_ascii_lowercase().contains("localhost"))?;
        ip.is_loopback().then(|| alias.to_owned())
    })
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_delivery_and_nothing_is_sent() {
    let Some(alias) = loopback_alias() else {
        eprintln!("skipped: /etc/hosts maps no name but localhost to a loopback address");
        return;
    };
    // The port of a live receiver, so that a connection, were one made, would be seen.
    let (url, seen) = answering(StatusCode::NO_CONTENT).await;
    let port = url.rsplit(':').next().unwrap_or_default();
    let reason = failure(send(&sender(AWS), &format!("https://{alias}:{port}/?token=secret")).await);
    assert!(reason.starts_with("destination refused: `webhook_url` points at a non-public address (127."), "{reason}");
    assert!(!reason.contains("secret") && !reason.contains(&alias), "{reason}");
    assert!(seen.lock().unwrap().is_empty());
    let at_submit = SubmitCheck::new(AWS).check(&format!("https://{alias}/")).await.unwrap_err();
    assert!(matches!(at_submit, SubmitCheckError::Refused(DestinationError::NotPublic(_))), "{at_submit}");
}
