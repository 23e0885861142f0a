//! The completion-webhook side of ingest (issue 12): the checks of a submission's `webhook_url`,
//! and `POST /webhook-secret`.
//!
//! A `webhook_url` is taken only if the destination rules accept it (core `validation`, when
//! the body is read), every address its host resolves to may be called, and the client already
//! has a secret to sign its deliveries with. The client's secret record is looked up at most
//! once per request, and only when a submission in it gets that far.

use std::time::Duration;

use lambda_http::http::header::CACHE_CONTROL;
use lambda_http::http::{HeaderValue, StatusCode};
use taskfleet_adapters::completion::{SubmitCheck, SubmitCheckError};
use taskfleet_adapters::config::MasterKeySource;
use taskfleet_adapters::{ConfigError, DynamoSecretRecords, SdkConfig, config};
use taskfleet_api::view::SecretView;
use taskfleet_api::{ApiError, Body, Response, response};
use taskfleet_core::completion::destination::Rules;
use taskfleet_core::completion::rotation;
use taskfleet_core::ports::SecretRecords;
use taskfleet_core::{ClientId, StoreError, Timestamp, ValidationError};
use tokio::sync::OnceCell;

/// What ingest needs for completion webhooks, built once per cold start.
pub struct Webhooks<R = DynamoSecretRecords> {
    /// Checks a `webhook_url` at submit: the rules, then the addresses its host resolves to.
    pub checker: SubmitCheck,
    /// The clients' secret records (a version and a salt each; never a secret).
    pub records: R,
    /// The key every client's secret is derived from, read when `POST /webhook-secret` first
    /// needs it.
    pub master: MasterKeySource,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub grace: Duration,
}

impl Webhooks {
    /// From the environment: `WEBHOOK_MASTER_KEY_ARN` (or `WEBHOOK_MASTER_KEY` in local runs;
    /// one is required), `WEBHOOK_ALLOW_LOOPBACK`, `WEBHOOK_SECRET_GRACE_SECONDS`, and the
    /// records in `TASKS_TABLE`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let records = DynamoSecretRecords::from_env(sdk)?;
        let master = MasterKeySource::from_env(sdk)?;
        Ok(Self::new(records, master, config::destination_rules()?, config::secret_grace()?))
    }
}

impl<R> Webhooks<R> {
    /// The webhook side over `records`, checking URLs against `rules`.
    pub fn new(records: R, master: MasterKeySource, rules: Rules, grace: Duration) -> Self {
        Self { checker: SubmitCheck::new(rules), records, master, grace }
    }

    /// The rules a `webhook_url` is read with.
    pub fn rules(&self) -> Rules {
        self.checker.rules()
    }
}

/// Whether the calling client has a secret record: looked up once, on first need, for every
/// submission of a request (the items of a batch share it).
pub struct SecretOnFile<'a, R> {
    webhooks: &'a Webhooks<R>,
    client: &'a ClientId,
    found: OnceCell<Result<bool, StoreError>>,
}

impl<'a, R: SecretRecords> SecretOnFile<'a, R> {
    pub fn new(webhooks: &'a Webhooks<R>, client: &'a ClientId) -> Self {
        Self { webhooks, client, found: OnceCell::new() }
    }

    async fn found(&self) -> Result<bool, StoreError> {
        let lookup = || async { self.webhooks.records.secret_record(self.client).await.map(|record| record.is_some()) };
        self.found.get_or_init(lookup).await.clone()
    }

    /// `url` (as validation read it) as it will be stored, if the task may notify it: every
    /// address its host resolves to may be called (refused or unknown: 400; the resolver
    /// failing: 503), and the client has a secret (else 409 `webhook_secret_missing`).
    pub async fn admit(&self, url: &str) -> Result<String, ApiError> {
        let url = self.webhooks.checker.check(url).await.map_err(refusal)?;
        if !self.found().await? {
            return Err(ApiError::WebhookSecretMissing);
        }
        Ok(url)
    }
}

/// The answer to a `webhook_url` the submit check refused.
pub(crate) fn refusal(error: SubmitCheckError) -> ApiError {
    if error.is_transient() {
        // The resolver's reason names no host: safe to log.
        tracing::warn!(reason = %error, "a webhook_url's host could not be resolved");
        ApiError::WebhookHostUnresolved
    } else {
        ApiError::Invalid(ValidationError::WebhookUrl(error.to_string()))
    }
}

/// `POST /webhook-secret`: creates the client's secret or rotates it (the previous one signs
/// for the grace period too) and answers it, the only time it is shown, uncached.
pub async fn issue_secret<R: SecretRecords>(
    webhooks: &Webhooks<R>,
    client: &ClientId,
) -> Result<Response<Body>, ApiError> {
    let master = webhooks.master.get().await.map_err(|error| {
        tracing::error!(%error, "the webhook master key cannot be read");
        ApiError::Store(StoreError::Unavailable("the webhook signing key cannot be read now".into()))
    })?;
    let issued = rotation::rotate(&webhooks.records, master, client, Timestamp::now(), webhooks.grace).await?;
    tracing::info!(client_id = %client, version = issued.version, "webhook secret issued");
    let mut answer = response::json(StatusCode::OK, &SecretView::from(issued));
    answer.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer)
}
