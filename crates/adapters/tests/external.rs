//! The external service's HTTP client against loopback servers: a redirect is never followed, so
//! the job (payload, callback token, signature) never reaches the address it points to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::json;
use taskfleet_adapters::HttpExternalService;
use taskfleet_core::ExternalError;
use taskfleet_core::ports::{ExternalService, Job};
use taskfleet_core::retry::is_retryable;
use taskfleet_core::secrets::FixedSecrets;
use taskfleet_core::signing::{self, SigningSecrets};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Serves `router` on a free loopback port; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A server that accepts every job and counts the requests that reach it.
async fn recorder() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new().fallback(move |headers: HeaderMap, body: String| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            assert!(headers.contains_key(signing::SIGNATURE));
            assert!(body.contains("token=secret-token"));
            StatusCode::ACCEPTED
        }
    });
    (serve(router).await, calls)
}

/// A server that answers every job with `status` pointing at `location`.
async fn redirector(status: StatusCode, location: String) -> String {
    let router =
        Router::new().route("/jobs", post(move || async move { (status, [(header::LOCATION, location.clone())]) }));
    serve(router).await
}

fn client(url: &str) -> HttpExternalService {
    HttpExternalService::new(
        url,
        Duration::from_secs(5),
        Some(FixedSecrets::shared(SigningSecrets::parse(SECRET).unwrap())),
    )
    .unwrap()
}

async fn submit(service: &HttpExternalService) -> Result<(), ExternalError> {
    let payload = json!({"private": "payload"});
    let job = Job {
        task_id: "6f9619ff-8b86-4011-b42d-00c04fc964ff",
        payload: &payload,
        callback_url: "https://fleet.example/callbacks/6f9619ff-8b86-4011-b42d-00c04fc964ff?attempt=1&token=secret-token",
        attempt: 1,
        traceparent: None,
    };
    service.submit(&job).await
}

#[tokio::test]
async fn a_job_carries_its_attempts_traceparent_in_a_header_not_in_the_body() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let router = Router::new().fallback(move |headers: HeaderMap, body: String| {
        let recorded = recorded.clone();
        async move {
            let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
            recorded.lock().unwrap().push((traceparent, body));
            StatusCode::ACCEPTED
        }
    });
    let service = client(&format!("{}/jobs", serve(router).await));
    let payload = json!({});
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut job = Job {
        task_id: "6f9619ff-8b86-4011-b42d-00c04fc964ff",
        payload: &payload,
        callback_url: "https://fleet.example/callbacks/6f9619ff-8b86-4011-b42d-00c04fc964ff?attempt=1&token=t",
        attempt: 1,
        traceparent: Some(traceparent),
    };
    assert_eq!(service.submit(&job).await, Ok(()));
    job.traceparent = None;
    assert_eq!(service.submit(&job).await, Ok(()));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(header, _)| header.as_deref()).collect::<Vec<_>>(), [Some(traceparent), None]);
    assert!(seen.iter().all(|(_, body)| !body.contains("traceparent") && !body.contains("4bf92f35")), "{seen:?}");
}

#[tokio::test]
async fn a_job_reaches_the_service_it_is_sent_to() {
    let (target, calls) = recorder().await;
    assert_eq!(submit(&client(&format!("{target}/jobs"))).await, Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_refuses_the_job_for_good() {
    let (target, calls) = recorder().await;
    for status in [
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
    ] {
        let elsewhere = redirector(status, format!("{target}/stolen")).await;
        let answer = submit(&client(&format!("{elsewhere}/jobs"))).await;
        assert_eq!(answer, Err(ExternalError::Redirected { status: status.as_u16() }), "{status}");
        let error = answer.unwrap_err();
        assert!(!is_retryable(&error), "{status}");
        assert!(error.to_string().contains("redirect"), "{error}");
        assert!(!error.to_string().contains(&target), "the Location is not repeated: {error}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the job, its token and its signature went nowhere else");
}
