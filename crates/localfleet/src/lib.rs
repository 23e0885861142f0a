//! The local fleet: the seven functions wired as AWS wires them, against the AWS emulator.
//!
//! | AWS                                   | here                                  |
//! |---------------------------------------|---------------------------------------|
//! | API Gateway HTTP API                  | [`front`]: axum, API Gateway v2 events |
//! | DynamoDB stream → Lambda (dispatcher) | [`stream`]: GetRecords poller          |
//! | SQS → Lambda (caller), batches        | [`queue`]: event source mapping        |
//! | EventBridge schedule → Lambda         | [`schedule`]: an interval              |
//!
//! Every function gets its event as the JSON AWS would send ([`events`]) and runs the same
//! handler and adapters as the deployed binary ([`functions`]).

pub mod dashboard;
pub mod events;
pub mod front;
pub mod functions;
pub mod local_metrics;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod stream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskfleet_adapters::{ConfigError, SdkConfig};
use taskfleet_core::ClientId;
use taskfleet_core::policy::Policies;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use functions::{FunctionSettings, Functions};
pub use resources::{Names, Resources};

/// Stream records set aside after their retries (the on-failure destination, locally).
#[derive(Debug, Clone, Default)]
pub struct DeadLetters(Arc<Mutex<Vec<serde_json::Value>>>);

impl DeadLetters {
    pub fn push(&self, record: serde_json::Value) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record);
    }

    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub names: Names,
    /// Client keys to make sure exist (e.g. the development key): (client, `tfk_…` key).
    pub client_keys: Vec<(ClientId, String)>,
    /// How long the functions remember an API key lookup.
    pub key_cache: Duration,
    /// Where the caller and the webhook get the Standard Webhooks secrets that sign jobs and
    /// verify callbacks (None: tokens alone): fixed, or a Secrets Manager secret in the emulator
    /// read as in AWS (`taskfleet_adapters::config::signing`).
    pub signing: Option<Arc<dyn taskfleet_core::secrets::SecretSource>>,
    pub external_service_url: String,
    pub external_timeout: Duration,
    /// Public base of callback URLs; defaults to the front's own address.
    pub callback_base_url: Option<String>,
    pub policies: Policies,
    /// Where the task store puts its index keys (`STATUS_INDEX_SHARDS`).
    pub layout: taskfleet_adapters::table::Layout,
    /// The size above which payloads and results go to the blob store (`INLINE_MAX_BYTES`).
    pub inline_max: usize,
    pub metrics_namespace: String,
    pub metrics_interval: Duration,
    pub sweep_interval: Duration,
    pub sweep_batch: usize,
    /// How the caller reads the jobs queue (batch size and window, `MaximumConcurrency`).
    pub event_source: queue::EventSource,
    /// Jobs one caller invocation hands over at once; the fleet-wide bound on jobs being handed
    /// over is this × `event_source.max_concurrency`.
    pub caller_concurrency: usize,
    pub chaos: DeliveryChaos,
}

/// At-least-once delivery made visible: how often the local event sources deliver twice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveryChaos {
    /// Probability that a stream batch is handed to the dispatcher a second time.
    pub duplicate_stream_batch: f64,
    /// Probability that a batch of the jobs queue is delivered to the caller a second time.
    pub duplicate_message: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Provision(#[from] resources::ProvisionError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// A running fleet; dropping it stops everything it started.
pub struct Fleet {
    pub addr: SocketAddr,
    pub resources: Resources,
    pub callback_base_url: String,
    pub dead_letters: DeadLetters,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Creates the emulator resources and starts the front (on `listener`), the stream poller,
    /// the jobs queue pollers and the schedules.
    pub async fn start(sdk: &SdkConfig, settings: FleetSettings, listener: TcpListener) -> Result<Self, FleetError> {
        let addr = listener.local_addr()?;
        let resources = resources::ensure(sdk, &settings.names).await?;
        resources::ensure_keys(sdk, &resources.table, &settings.client_keys).await?;
        let callback_base_url = settings.callback_base_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let local_metrics = Arc::new(local_metrics::LocalMetrics::default());
        let functions = Arc::new(Functions::new(
            sdk,
            &FunctionSettings {
                table: resources.table.clone(),
                layout: settings.layout,
                queue_url: resources.queue_url.clone(),
                caller_concurrency: settings.caller_concurrency,
                bucket: resources.bucket.clone(),
                inline_max: settings.inline_max,
                key_cache: settings.key_cache,
                signing: settings.signing.clone(),
                external_service_url: settings.external_service_url.clone(),
                external_timeout: settings.external_timeout,
                callback_base_url: callback_base_url.clone(),
                policies: settings.policies,
                metrics_namespace: settings.metrics_namespace.clone(),
                sweep_batch: settings.sweep_batch,
                events: local_metrics.clone(),
            },
        )?);
        let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let dead_letters = DeadLetters::default();
        let mut tasks = Vec::new();

        let dashboard = dashboard::Dashboard {
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            namespace: settings.metrics_namespace.clone(),
            region: region.clone(),
        };
        let app = front::router(functions.clone())
            .merge(dashboard::router(dashboard))
            .into_make_service_with_connect_info::<SocketAddr>();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "HTTP front stopped");
            }
        }));
        let stream_source = stream::StreamSource {
            client: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn: resources.stream_arn.clone(),
            region: region.clone(),
        };
        tasks.push(tokio::spawn(stream::run(stream_source, functions.clone(), dead_letters.clone(), settings.chaos)));
        let queue_source = Arc::new(queue::QueueSource {
            client: aws_sdk_sqs::Client::new(sdk),
            queue_url: resources.queue_url.clone(),
            queue_arn: resources.queue_arn.clone(),
            region: region.clone(),
        });
        for _ in 0..settings.event_source.max_concurrency.max(1) {
            let poller = queue::run(queue_source.clone(), settings.event_source, functions.clone(), settings.chaos);
            tasks.push(tokio::spawn(poller));
        }
        let metrics_every = settings.metrics_interval;
        tasks.push(tokio::spawn(schedule::run(
            functions.clone(),
            schedule::Job::Metrics,
            metrics_every,
            region.clone(),
        )));
        tasks.push(tokio::spawn(schedule::run(functions, schedule::Job::Sweeper, settings.sweep_interval, region)));
        let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
        let forward = local_metrics.forward(cloudwatch, settings.metrics_namespace.clone(), Duration::from_secs(1));
        tasks.push(tokio::spawn(forward));
        Ok(Self { addr, resources, callback_base_url, dead_letters, tasks })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
