//! Configuration from the environment, read once per cold start. Every variable the fleet reads
//! is named here (and in the README's configuration table).

use std::time::Duration;

use taskfleet_core::TtlPolicy;

use std::sync::Arc;
use taskfleet_core::policy::Policies;
use taskfleet_core::retry::RetryPolicy;

use taskfleet_core::completion::client_secret::{self, MasterKey};
use taskfleet_core::completion::destination::Rules;
use taskfleet_core::completion::schedule::DeliverySchedule;
use taskfleet_core::secrets::{FixedSecrets, RefreshingSecrets, SecretSource};
use taskfleet_core::signing::SigningSecrets;
use thiserror::Error;

use crate::secrets::SecretsManagerStore;

/// DynamoDB table holding the tasks.
pub const TASKS_TABLE: &str = "TASKS_TABLE";
/// SQS queue of timers (job starts and callback deadlines) the dispatcher, and the caller when
/// it sends one on, send to; the caller reads it.
pub const JOBS_QUEUE_URL: &str = "JOBS_QUEUE_URL";
/// How many jobs one caller invocation hands to the external service at once. The fleet-wide
/// bound is this × the queue event source's `MaximumConcurrency`.
pub const CALLER_CONCURRENCY: &str = "CALLER_CONCURRENCY";
pub const DEFAULT_CALLER_CONCURRENCY: u64 = 10;
/// The most a caller invocation may hand over at once (a batch is at most this many jobs).
pub const MAX_CALLER_CONCURRENCY: u64 = 100;
/// Where the caller POSTs jobs.
pub const EXTERNAL_SERVICE_URL: &str = "EXTERNAL_SERVICE_URL";
/// Milliseconds the caller waits for the external service to accept a job.
pub const EXTERNAL_TIMEOUT_MS: &str = "EXTERNAL_TIMEOUT_MS";
/// Public base URL of the webhook (callback URLs are `{base}/callbacks/{task_id}`).
pub const CALLBACK_BASE_URL: &str = "CALLBACK_BASE_URL";
/// The Secrets Manager secret (ARN or name) holding the Standard Webhooks secrets that sign jobs
/// sent to the external service and must sign its callbacks (`whsec_…`, comma-separated, newest
/// first). Read at cold start and again at most every [`SIGNING_SECRETS_REFRESH`], so a rotation
/// needs no deploy. How the deployed caller and webhook get their secrets.
pub const WEBHOOK_SIGNING_SECRET_ARN: &str = "WEBHOOK_SIGNING_SECRET_ARN";
/// The same secrets given as the variable's value, fixed for the process's life: local runs and
/// tests only (a Lambda environment variable is readable by whoever may read the function's
/// configuration). Neither set: callbacks are authenticated by their per-attempt token alone.
pub const WEBHOOK_SIGNING_SECRETS: &str = "WEBHOOK_SIGNING_SECRETS";
/// How long a function instance uses the signing secrets it read before reading them again.
pub const SIGNING_SECRETS_REFRESH: Duration = Duration::from_secs(60);
/// Seconds a function instance remembers an API key it found (revocations take this long).
pub const API_KEY_CACHE_SECONDS: &str = "API_KEY_CACHE_SECONDS";
pub const DEFAULT_API_KEY_CACHE_SECONDS: u64 = 60;
/// CloudWatch namespace of the cron's gauges.
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
/// S3 bucket of payloads and results too large to keep inline in the tasks table (keys
/// `payloads/{task_id}` and `results/{task_id}/{attempt}/…`, see `taskfleet_core::blob`).
pub const BLOBS_BUCKET: &str = "BLOBS_BUCKET";
/// Seconds an unfinished task lives.
pub const TASK_TTL_SECONDS: &str = "TASK_TTL_SECONDS";
/// Seconds a finished task and its result are kept.
pub const RESULT_RETENTION_SECONDS: &str = "RESULT_RETENTION_SECONDS";

/// Attempts per series before a task fails.
pub const MAX_ATTEMPTS: &str = "MAX_ATTEMPTS";
/// Seconds before the second attempt (doubling per attempt, half of it jitter).
pub const RETRY_BASE_SECONDS: &str = "RETRY_BASE_SECONDS";
/// Longest wait between attempts, in seconds.
pub const RETRY_MAX_SECONDS: &str = "RETRY_MAX_SECONDS";
/// Seconds an attempt may wait for its callback (or next heartbeat).
pub const CALLBACK_TIMEOUT_SECONDS: &str = "CALLBACK_TIMEOUT_SECONDS";
/// Seconds a RECEIVED task may be due before the sweeper dispatches it (again).
pub const DISPATCH_GRACE_SECONDS: &str = "DISPATCH_GRACE_SECONDS";
/// Most due tasks of each kind the sweeper handles per run.
pub const SWEEP_BATCH: &str = "SWEEP_BATCH";
/// How many key values each active status spreads over in the status index (1–256). Raising it
/// lifts the write ceiling; any change is safe (readers read every shard any reader was
/// configured with).
pub const STATUS_INDEX_SHARDS: &str = "STATUS_INDEX_SHARDS";
/// Payloads and results whose compact JSON is longer than this many bytes are kept in the blob
/// store instead of DynamoDB (at most 262144).
pub const INLINE_MAX_BYTES: &str = "INLINE_MAX_BYTES";

/// SQS queue of completion-webhook delivery timers: the dispatcher sends to it, the notifier reads
/// it (its own queue, so deliveries never wait behind jobs or jobs behind deliveries).
pub const DELIVERIES_QUEUE_URL: &str = "DELIVERIES_QUEUE_URL";
/// How many deliveries one notifier invocation makes at once. The fleet-wide bound is this × the
/// deliveries queue event source's `MaximumConcurrency`.
pub const NOTIFIER_CONCURRENCY: &str = "NOTIFIER_CONCURRENCY";
pub const DEFAULT_NOTIFIER_CONCURRENCY: u64 = 10;
/// The most deliveries a notifier invocation may make at once.
pub const MAX_NOTIFIER_CONCURRENCY: u64 = 100;
/// The Secrets Manager secret (ARN or name) holding the master key (`whsec_…`) from which every
/// client's completion-webhook secret is derived (`taskfleet_core::completion::client_secret`).
/// Read by the notifier at cold start, by ingest when `POST /webhook-secret` first needs it
/// ([`MasterKeySource`]). Changing it
/// changes every client's secret: it is created once per stage and never rotated.
pub const WEBHOOK_MASTER_KEY_ARN: &str = "WEBHOOK_MASTER_KEY_ARN";
/// The master key given as the variable's value: local runs and tests only.
pub const WEBHOOK_MASTER_KEY: &str = "WEBHOOK_MASTER_KEY";
/// The waits before each retry of a completion webhook, e.g. `5s,5m,30m,2h,5h,10h,10h` (the
/// default, Svix's); the first attempt is always made when the task ends.
pub const WEBHOOK_SCHEDULE: &str = "WEBHOOK_SCHEDULE";
/// Milliseconds one delivery attempt may take, the receiver's answer included.
pub const WEBHOOK_TIMEOUT_MS: &str = "WEBHOOK_TIMEOUT_MS";
/// `true`: completion webhooks may go to `http://127.0.0.1` and `http://localhost` (local runs
/// only; never set in AWS, where only https to public addresses is accepted).
pub const WEBHOOK_ALLOW_LOOPBACK: &str = "WEBHOOK_ALLOW_LOOPBACK";
/// Seconds a rotated-out client secret keeps signing beside the new one.
pub const WEBHOOK_SECRET_GRACE_SECONDS: &str = "WEBHOOK_SECRET_GRACE_SECONDS";

pub const DEFAULT_METRICS_NAMESPACE: &str = "TaskFleet";
pub const DEFAULT_SWEEP_BATCH: u64 = 500;
pub const DEFAULT_EXTERNAL_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("the secret environment variable {name} names cannot be used: {reason}")]
    Secret { name: &'static str, reason: String },
}

/// A variable that must be set and non-empty.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty()).ok_or(ConfigError::Missing(name))
}

/// A variable with a default.
pub fn or_default(name: &'static str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

/// A whole number with a default; zero is refused.
pub fn positive(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(value) if value > 0 => Ok(value),
            _ => Err(ConfigError::Invalid { name, reason: "expected a positive whole number".into() }),
        },
    }
}

/// An absolute http(s) URL without a trailing slash.
pub fn url(name: &'static str) -> Result<String, ConfigError> {
    let raw = required(name)?;
    let parsed = reqwest::Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid { name, reason: e.to_string() })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid { name, reason: "expected an http or https URL".into() });
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// A whole number from 1 to `max`, with a default.
pub fn bounded(name: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
    let value = positive(name, default)?;
    if value > max {
        return Err(ConfigError::Invalid { name, reason: format!("at most {max}") });
    }
    Ok(value)
}

/// Where the task store puts its index keys.
pub fn layout() -> Result<crate::table::Layout, ConfigError> {
    use crate::table::{DEFAULT_STATUS_SHARDS, MAX_STATUS_SHARDS};
    let shards = bounded(STATUS_INDEX_SHARDS, u64::from(DEFAULT_STATUS_SHARDS), u64::from(MAX_STATUS_SHARDS))?;
    Ok(crate::table::Layout { status_shards: u32::try_from(shards).unwrap_or(DEFAULT_STATUS_SHARDS) })
}

/// The size above which payloads and results go to the blob store.
pub fn inline_max_bytes() -> Result<usize, ConfigError> {
    use taskfleet_core::blob::{DEFAULT_INLINE_MAX_BYTES, MAX_INLINE_MAX_BYTES};
    let bytes = bounded(INLINE_MAX_BYTES, DEFAULT_INLINE_MAX_BYTES as u64, MAX_INLINE_MAX_BYTES as u64)?;
    Ok(usize::try_from(bytes).unwrap_or(DEFAULT_INLINE_MAX_BYTES))
}

pub fn ttl_policy() -> Result<TtlPolicy, ConfigError> {
    Ok(TtlPolicy::new(
        positive(TASK_TTL_SECONDS, TtlPolicy::DEFAULT_TASK_TTL_SECONDS)?,
        positive(RESULT_RETENTION_SECONDS, TtlPolicy::DEFAULT_RESULT_RETENTION_SECONDS)?,
    ))
}

pub fn policies() -> Result<Policies, ConfigError> {
    let defaults = Policies::default();
    let seconds = |name, default: Duration| positive(name, default.as_secs()).map(Duration::from_secs);
    Ok(Policies {
        ttl: ttl_policy()?,
        retry: RetryPolicy {
            max_attempts: u32::try_from(positive(MAX_ATTEMPTS, u64::from(defaults.retry.max_attempts))?)
                .map_err(|_| ConfigError::Invalid { name: MAX_ATTEMPTS, reason: "too large".into() })?,
            base_delay: seconds(RETRY_BASE_SECONDS, defaults.retry.base_delay)?,
            max_delay: seconds(RETRY_MAX_SECONDS, defaults.retry.max_delay)?,
        },
        callback_timeout: seconds(CALLBACK_TIMEOUT_SECONDS, defaults.callback_timeout)?,
        dispatch_grace: seconds(DISPATCH_GRACE_SECONDS, defaults.dispatch_grace)?,
    })
}

/// Where the caller and the webhook get the signing secrets: the Secrets Manager secret
/// `WEBHOOK_SIGNING_SECRET_ARN` names (read now: a secret that cannot be read or holds no valid
/// secrets fails the cold start), or the fixed `WEBHOOK_SIGNING_SECRETS` (local runs), or None.
pub async fn signing(sdk: &aws_config::SdkConfig) -> Result<Option<Arc<dyn SecretSource>>, ConfigError> {
    let set = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
    match (set(WEBHOOK_SIGNING_SECRET_ARN), set(WEBHOOK_SIGNING_SECRETS)) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            name: WEBHOOK_SIGNING_SECRETS,
            reason: format!("set either {WEBHOOK_SIGNING_SECRET_ARN} or {WEBHOOK_SIGNING_SECRETS}, not both"),
        }),
        (Some(secret_id), None) => {
            let store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk), secret_id.trim());
            let source = RefreshingSecrets::load(store, SIGNING_SECRETS_REFRESH)
                .await
                .map_err(|e| ConfigError::Secret { name: WEBHOOK_SIGNING_SECRET_ARN, reason: e.to_string() })?;
            Ok(Some(Arc::new(source)))
        }
        (None, Some(spec)) => SigningSecrets::parse(&spec)
            .map(|secrets| Some(FixedSecrets::shared(secrets)))
            .map_err(|e| ConfigError::Invalid { name: WEBHOOK_SIGNING_SECRETS, reason: e.to_string() }),
        (None, None) => Ok(None),
    }
}

/// Where the completion-webhook master key is: the Secrets Manager secret
/// `WEBHOOK_MASTER_KEY_ARN` names, or the fixed `WEBHOOK_MASTER_KEY` (local runs). Read when
/// first needed and kept ([`MasterKeySource::get`]): ingest needs it for `POST /webhook-secret`
/// only, so its cold start makes no Secrets Manager call, and a key that cannot be read fails
/// that route alone (503), never task intake.
#[derive(Debug)]
pub enum MasterKeySource {
    Fixed(MasterKey),
    Secret { store: SecretsManagerStore, key: tokio::sync::OnceCell<MasterKey> },
}

impl MasterKeySource {
    /// From the environment: one of the two variables is required (a fixed key is parsed now).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let set = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        match (set(WEBHOOK_MASTER_KEY_ARN), set(WEBHOOK_MASTER_KEY)) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                name: WEBHOOK_MASTER_KEY,
                reason: format!("set either {WEBHOOK_MASTER_KEY_ARN} or {WEBHOOK_MASTER_KEY}, not both"),
            }),
            (Some(secret_id), None) => Ok(Self::Secret {
                store: SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk), secret_id.trim()),
                key: tokio::sync::OnceCell::new(),
            }),
            (None, Some(key)) => MasterKey::parse(&key)
                .map(Self::Fixed)
                .map_err(|e| ConfigError::Secret { name: WEBHOOK_MASTER_KEY, reason: e.to_string() }),
            (None, None) => Err(ConfigError::Missing(WEBHOOK_MASTER_KEY_ARN)),
        }
    }

    /// The key: read from Secrets Manager on the first call that needs it (a failed read is
    /// tried again by the next call), then kept for the instance's life.
    pub async fn get(&self) -> Result<&MasterKey, ConfigError> {
        match self {
            Self::Fixed(key) => Ok(key),
            Self::Secret { store, key } => {
                use taskfleet_core::secrets::SecretStore;
                let read = || async {
                    let secret = |reason: String| ConfigError::Secret { name: WEBHOOK_MASTER_KEY_ARN, reason };
                    let text = store.read().await.map_err(|e| secret(e.to_string()))?;
                    MasterKey::parse(&text).map_err(|e| secret(e.to_string()))
                };
                key.get_or_try_init(read).await
            }
        }
    }
}

/// The completion-webhook master key, read now ([`MasterKeySource`]): the notifier signs with it
/// on every delivery, so a key that cannot be read fails its cold start.
pub async fn master_key(sdk: &aws_config::SdkConfig) -> Result<MasterKey, ConfigError> {
    MasterKeySource::from_env(sdk)?.get().await.cloned()
}

/// The completion webhooks' retry schedule (`WEBHOOK_SCHEDULE`, default Svix's).
pub fn delivery_schedule() -> Result<DeliverySchedule, ConfigError> {
    DeliverySchedule::parse(&or_default(WEBHOOK_SCHEDULE, DeliverySchedule::SVIX))
        .map_err(|e| ConfigError::Invalid { name: WEBHOOK_SCHEDULE, reason: e.to_string() })
}

/// Which completion-webhook URLs may be called (`WEBHOOK_ALLOW_LOOPBACK`, default false).
pub fn destination_rules() -> Result<Rules, ConfigError> {
    let allow_loopback = match or_default(WEBHOOK_ALLOW_LOOPBACK, "false").trim() {
        "true" | "1" => true,
        "false" | "0" => false,
        _ => {
            return Err(ConfigError::Invalid { name: WEBHOOK_ALLOW_LOOPBACK, reason: "expected true or false".into() });
        }
    };
    Ok(Rules { allow_loopback })
}

/// How long one delivery attempt may take (`WEBHOOK_TIMEOUT_MS`).
pub fn webhook_timeout() -> Result<Duration, ConfigError> {
    let default = u64::try_from(crate::completion::DEFAULT_DELIVERY_TIMEOUT.as_millis()).unwrap_or(5_000);
    positive(WEBHOOK_TIMEOUT_MS, default).map(Duration::from_millis)
}

/// How long a rotated-out client secret keeps signing (`WEBHOOK_SECRET_GRACE_SECONDS`).
pub fn secret_grace() -> Result<Duration, ConfigError> {
    positive(WEBHOOK_SECRET_GRACE_SECONDS, client_secret::DEFAULT_GRACE.as_secs()).map(Duration::from_secs)
}

pub fn external_timeout() -> Result<Duration, ConfigError> {
    positive(EXTERNAL_TIMEOUT_MS, DEFAULT_EXTERNAL_TIMEOUT_MS).map(Duration::from_millis)
}

/// Longest one AWS SDK call may take, retries included. Below every function's Lambda timeout
/// (10 s for the API functions), so a throttled or stuck call ends as
/// [`StoreError::Unavailable`](taskfleet_core::StoreError) the function can answer, not as a
/// Lambda timeout.
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one attempt of an SDK call may take (the SDK retries within the operation timeout).
pub const SDK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the SDK waits to connect.
pub const SDK_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The SDK's timeouts: see [`SDK_OPERATION_TIMEOUT`].
pub fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(SDK_CONNECT_TIMEOUT)
        .operation_attempt_timeout(SDK_ATTEMPT_TIMEOUT)
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build()
}

/// The shared SDK configuration: region, credentials and endpoint from the environment
/// (`AWS_ENDPOINT_URL` included), with the fleet's timeouts and [`aws_http_client`]. Load once
/// per cold start and build every client from it.
pub async fn aws() -> aws_config::SdkConfig {
    aws_from(aws_config::defaults(aws_config::BehaviorVersion::latest())).await
}

/// [`aws`] from a given loader (tests point it elsewhere).
pub async fn aws_from(loader: aws_config::ConfigLoader) -> aws_config::SdkConfig {
    with_aws_http_client(loader.timeout_config(sdk_timeouts())).load().await
}

/// The roots every AWS endpoint's certificate chains to: Amazon Root CA 1–4 (Amazon Trust
/// Services) and the Starfield Services root that cross-signs them.
const AWS_ROOTS_PEM: &[u8] = include_bytes!("aws-roots.pem");

/// Gives the loader the one HTTPS client of every SDK client (the credential providers'
/// included), trusting the AWS roots only. The SDK's default client loads and decodes the system's CA bundle (~140
/// certificates) once for the credential providers and again for the services: most of a cold
/// start's instructions (bench/RESULTS.md). An AWS endpoint needs none of them. (The external
/// service's client, in the caller, keeps the platform's roots: a service may use any CA.)
fn with_aws_http_client(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(AWS_ROOTS_PEM);
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => loader.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        ),
        // Cannot happen with the bundled roots; then the SDK's default client it is.
        Err(_) => loader,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundled_aws_roots_are_the_four_amazon_roots_and_starfield_and_they_parse() {
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        let pem = String::from_utf8_lossy(super::AWS_ROOTS_PEM);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(super::AWS_ROOTS_PEM);
        assert!(TlsContext::builder().with_trust_store(trust).build().is_ok());
    }
}
