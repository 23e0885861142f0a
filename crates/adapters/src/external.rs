//! The HTTP client of the external service: one JSON POST per attempt, with a timeout, carrying
//! the attempt's `traceparent` (the task's trace id, a new span id per attempt).
//!
//! Redirects are never followed: a 307/308 would re-send the payload, the callback URL (with the
//! attempt's token) and the signature to wherever the `Location` points. A 3xx answer is a
//! permanent refusal of the job ([`ExternalError::Redirected`], not retried): the service's
//! address is misconfigured, and `EXTERNAL_SERVICE_URL` must name where jobs are accepted.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use taskfleet_core::ports::{ExternalService, Job};
use taskfleet_core::secrets::SecretSource;
use taskfleet_core::signing;
use taskfleet_core::trace;
use taskfleet_core::{ExternalError, Timestamp};

use crate::config::{self, ConfigError};

#[derive(Debug, Clone)]
pub struct HttpExternalService {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    /// When set, every job carries Standard Webhooks signature headers, made with the secrets in
    /// force when it is sent.
    signing: Option<Arc<dyn SecretSource>>,
}

impl HttpExternalService {
    /// Builds the client once (connection pool, TLS roots); reuse it for every invocation.
    pub fn new(
        url: impl Into<String>,
        timeout: Duration,
        signing: Option<Arc<dyn SecretSource>>,
    ) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ConfigError::Invalid { name: config::EXTERNAL_SERVICE_URL, reason: e.to_string() })?;
        Ok(Self { client, url: url.into(), timeout, signing })
    }

    /// The client of `EXTERNAL_SERVICE_URL` with `EXTERNAL_TIMEOUT_MS`, signing with `signing`
    /// ([`config::signing`]).
    pub fn from_env(signing: Option<Arc<dyn SecretSource>>) -> Result<Self, ConfigError> {
        Self::new(config::url(config::EXTERNAL_SERVICE_URL)?, config::external_timeout()?, signing)
    }
}

impl ExternalService for HttpExternalService {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        let body =
            serde_json::to_vec(job).map_err(|e| ExternalError::Unreachable(format!("cannot encode the job: {e}")))?;
        let mut request = self.client.post(&self.url).header(CONTENT_TYPE, "application/json");
        if let Some(traceparent) = job.traceparent {
            request = request.header(trace::TRACEPARENT, traceparent);
        }
        if let Some(source) = &self.signing {
            let secrets = source.current().await;
            // One message per attempt: the service can de-duplicate on webhook-id.
            let signed = secrets.sign(&format!("{}.{}", job.task_id, job.attempt), Timestamp::now(), &body);
            request = request
                .header(signing::ID, signed.id)
                .header(signing::TIMESTAMP, signed.timestamp)
                .header(signing::SIGNATURE, signed.signature);
        }
        let answer = request.body(body).send().await;
        let response = answer.map_err(|e| {
            if e.is_timeout() {
                ExternalError::Timeout { timeout_ms: self.timeout.as_millis() as u64 }
            } else {
                // Without the URL: it may carry credentials.
                ExternalError::Unreachable(e.without_url().to_string())
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            // Where it points is not logged nor kept: it is the service's business.
            return Err(ExternalError::Redirected { status: status.as_u16() });
        }
        let retry_after_seconds = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Err(ExternalError::Rejected { status: status.as_u16(), retry_after_seconds })
    }
}
