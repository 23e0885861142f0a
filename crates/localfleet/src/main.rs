//! `taskfleet-local`: runs the fleet against the AWS emulator at `AWS_ENDPOINT_URL`.
//! `make dev` starts the emulator and the example external service, then this.

use std::time::Duration;

use taskfleet_adapters::config;
use taskfleet_core::completion::client_secret::MasterKey;
use taskfleet_core::completion::destination::Rules;
use taskfleet_localfleet::{CompletionSettings, Fleet, FleetSettings, Names, OpsSettings};
use tracing_subscriber::EnvFilter;

/// Port of the HTTP front.
const PORT: &str = "PORT";
/// Prefix of the emulator resources' names.
const PREFIX: &str = "TASKFLEET_PREFIX";
/// Seconds between sweeper runs (every minute, as in AWS: timers move tasks along, the sweeper
/// only catches lost ones).
const SWEEP_INTERVAL_SECONDS: &str = "SWEEP_INTERVAL_SECONDS";
/// The jobs queue's event source mapping, as deployed (serverless.yml params
/// `callerBatchSize`, `callerBatchWindowSeconds`, `callerMaxConcurrency`).
const CALLER_BATCH_SIZE: &str = "CALLER_BATCH_SIZE";
/// Milliseconds (AWS takes whole seconds; 0, the default, invokes with what one poll returns).
const CALLER_BATCH_WINDOW_MS: &str = "CALLER_BATCH_WINDOW_MS";
const CALLER_MAX_CONCURRENCY: &str = "CALLER_MAX_CONCURRENCY";
/// Seconds between metrics runs.
const METRICS_INTERVAL_SECONDS: &str = "METRICS_INTERVAL_SECONDS";
/// Every alarm's period locally, in seconds (unset: the periods of deploy/alarms.json).
const LOCAL_ALARM_PERIOD_SECONDS: &str = taskfleet_localfleet::alarms::PERIOD_ENV;
/// `off`: no AWS metrics, queue polls or alarm evaluation (the benchmarks count AWS requests).
const LOCAL_AWS_METRICS: &str = "LOCAL_AWS_METRICS";

/// A client key to make sure exists, for the development client.
const DEV_KEY: &str = "TASKFLEET_DEV_KEY";
/// The development client's id.
const DEV_CLIENT: &str = "TASKFLEET_DEV_CLIENT";

fn dev_key() -> Result<Option<(taskfleet_core::ClientId, String)>, config::ConfigError> {
    let Ok(key) = std::env::var(DEV_KEY) else { return Ok(None) };
    let client = taskfleet_core::ClientId::parse(&config::or_default(DEV_CLIENT, "dev"))
        .map_err(|e| config::ConfigError::Invalid { name: DEV_CLIENT, reason: e.to_string() })?;
    Ok(Some((client, key)))
}

/// The batching window: 0 to 300 s, in milliseconds.
fn batch_window() -> Result<Duration, config::ConfigError> {
    let Some(raw) = std::env::var(CALLER_BATCH_WINDOW_MS).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(Duration::ZERO);
    };
    match raw.trim().parse::<u64>() {
        Ok(millis) if millis <= 300_000 => Ok(Duration::from_millis(millis)),
        _ => Err(config::ConfigError::Invalid {
            name: CALLER_BATCH_WINDOW_MS,
            reason: "expected whole milliseconds from 0 to 300000".into(),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Fleet(#[from] taskfleet_localfleet::FleetError),
    #[error("cannot listen on 127.0.0.1:{port}: {error}")]
    Listen { port: u64, error: std::io::Error },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("taskfleet-local: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The master key of local runs unless `WEBHOOK_MASTER_KEY` (or `_ARN`) names another: local
/// webhook secrets are only as secret as this source file.
const LOCAL_MASTER_KEY: &str = "whsec_ZGV2LWxvY2FsLW1hc3Rlci1rZXktb2YtdGFza2ZsZWV0LTAx";

/// Completion webhooks as configured, with local defaults: the local master key, and receivers
/// on this machine allowed (`WEBHOOK_ALLOW_LOOPBACK=false` refuses them, as AWS does).
async fn completion(sdk: &taskfleet_adapters::SdkConfig) -> Result<CompletionSettings, config::ConfigError> {
    let master = match config::master_key(sdk).await {
        Err(config::ConfigError::Missing(_)) => MasterKey::parse(LOCAL_MASTER_KEY)
            .map_err(|e| config::ConfigError::Invalid { name: config::WEBHOOK_MASTER_KEY, reason: e.to_string() })?,
        other => other?,
    };
    let loopback = std::env::var(config::WEBHOOK_ALLOW_LOOPBACK).map_or(true, |v| v.trim().is_empty());
    let rules = if loopback { Rules { allow_loopback: true } } else { config::destination_rules()? };
    Ok(CompletionSettings {
        master,
        schedule: config::delivery_schedule()?,
        rules,
        timeout: config::webhook_timeout()?,
        grace: config::secret_grace()?,
    })
}

async fn run() -> Result<(), StartError> {
    let port = config::positive(PORT, 3000)?;
    let sdk = config::aws().await;
    let settings = FleetSettings {
        names: Names::with_prefix(&config::or_default(PREFIX, "taskfleet-dev")),
        client_keys: dev_key()?.into_iter().collect(),
        key_cache: Duration::from_secs(config::positive(config::API_KEY_CACHE_SECONDS, 5)?),
        signing: config::signing(&sdk).await?,
        external_service_url: config::url(config::EXTERNAL_SERVICE_URL)?,
        external_timeout: config::external_timeout()?,
        callback_base_url: std::env::var(config::CALLBACK_BASE_URL)
            .ok()
            .map(|_| config::url(config::CALLBACK_BASE_URL))
            .transpose()?,
        policies: config::policies()?,
        layout: config::layout()?,
        inline_max: config::inline_max_bytes()?,
        metrics_namespace: config::or_default(config::METRICS_NAMESPACE, config::DEFAULT_METRICS_NAMESPACE),
        metrics_interval: Duration::from_secs(config::positive(METRICS_INTERVAL_SECONDS, 10)?),
        sweep_interval: Duration::from_secs(config::positive(SWEEP_INTERVAL_SECONDS, 60)?),
        sweep_batch: usize::try_from(config::positive(config::SWEEP_BATCH, config::DEFAULT_SWEEP_BATCH)?)
            .unwrap_or(500),
        event_source: taskfleet_localfleet::queue::EventSource {
            batch_size: usize::try_from(config::bounded(CALLER_BATCH_SIZE, 10, 100)?).unwrap_or(10),
            batch_window: batch_window()?,
            max_concurrency: usize::try_from(config::bounded(CALLER_MAX_CONCURRENCY, 4, 1_000)?).unwrap_or(4),
        },
        caller_concurrency: usize::try_from(config::bounded(
            config::CALLER_CONCURRENCY,
            config::DEFAULT_CALLER_CONCURRENCY,
            config::MAX_CALLER_CONCURRENCY,
        )?)
        .unwrap_or(10),
        notifier_concurrency: usize::try_from(config::bounded(
            config::NOTIFIER_CONCURRENCY,
            config::DEFAULT_NOTIFIER_CONCURRENCY,
            config::MAX_NOTIFIER_CONCURRENCY,
        )?)
        .unwrap_or(10),
        chaos: Default::default(),
        completion: completion(&sdk).await?,
    };
    let alarm_period = match std::env::var(LOCAL_ALARM_PERIOD_SECONDS).ok().filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(_) => Some(Duration::from_secs(config::bounded(LOCAL_ALARM_PERIOD_SECONDS, 60, 86_400)?)),
    };
    let without_aws_metrics = match config::or_default(LOCAL_AWS_METRICS, "on").trim() {
        "on" => false,
        "off" => true,
        _ => {
            return Err(
                config::ConfigError::Invalid { name: LOCAL_AWS_METRICS, reason: "expected on or off".into() }.into()
            );
        }
    };
    let ops = OpsSettings { alarm_period, without_aws_metrics, ..OpsSettings::default() };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", u16::try_from(port).unwrap_or(3000)))
        .await
        .map_err(|error| StartError::Listen { port, error })?;
    let fleet = Fleet::start_with(&sdk, settings.clone(), listener, ops).await?;
    println!("taskfleet local fleet is up");
    println!("  API (API Gateway stand-in)   http://{}", fleet.addr);
    println!("  callbacks go to              {}/callbacks/{{task_id}}", fleet.callback_base_url);
    println!("  external service             {}", settings.external_service_url);
    println!("  table / stream               {} / {}", fleet.resources.table, fleet.resources.stream_arn);
    println!(
        "  jobs queue → caller          {} (batches of {}, {} pollers × {} jobs at once)",
        fleet.resources.queue_url,
        settings.event_source.batch_size,
        settings.event_source.max_concurrency,
        settings.caller_concurrency
    );
    println!(
        "  deliveries queue → notifier  {} ({} pollers × {} deliveries at once)",
        fleet.resources.deliveries_queue_url, settings.event_source.max_concurrency, settings.notifier_concurrency
    );
    println!(
        "  metrics every                {:?} → CloudWatch namespace {}",
        settings.metrics_interval, settings.metrics_namespace
    );
    if without_aws_metrics {
        println!("  AWS metrics and alarms       off ({LOCAL_AWS_METRICS}=off)");
    } else {
        println!(
            "  alarms (periods {})   http://{}/_local/alarms",
            alarm_period.map_or_else(|| "as deployed".to_owned(), |p| format!("{} s", p.as_secs())),
            fleet.addr
        );
    }
    println!("  dashboard                    http://{}/_local/dashboard", fleet.addr);
    tokio::signal::ctrl_c().await.ok();
    println!("taskfleet-local: stopping");
    drop(fleet);
    Ok(())
}
