//! The HTTP client of the external service: one JSON POST per attempt, with a timeout.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use taskfleet_core::ExternalError;
use taskfleet_core::ports::{ExternalService, Job};

use crate::config::{self, ConfigError};

#[derive(Debug, Clone)]
pub struct HttpExternalService {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl HttpExternalService {
    /// Builds the client once (connection pool, TLS roots); reuse it for every invocation.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ConfigError::Invalid { name: config::EXTERNAL_SERVICE_URL, reason: e.to_string() })?;
        Ok(Self { client, url: url.into(), timeout })
    }

    /// The client of `EXTERNAL_SERVICE_URL` with `EXTERNAL_TIMEOUT_MS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(config::url(config::EXTERNAL_SERVICE_URL)?, config::external_timeout()?)
    }
}

impl ExternalService for HttpExternalService {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        let answer = self.client.post(&self.url).json(job).send().await;
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
        let retry_after_seconds = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Err(ExternalError::Rejected { status: status.as_u16(), retry_after_seconds })
    }
}
