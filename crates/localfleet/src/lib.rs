//! The local fleet: the eight functions wired as AWS wires them, against the AWS emulator.
//!
//! | AWS                                   | here                                  |
//! |---------------------------------------|---------------------------------------|
//! | API Gateway HTTP API                  | [`front`]: axum, API Gateway v2 events |
//! | DynamoDB stream → Lambda (dispatcher) | [`stream`]: GetRecords poller          |
//! | SQS → Lambda (caller, notifier)       | [`queue`]: event source mappings       |
//! | EventBridge schedule → Lambda         | [`schedule`]: an interval              |
//!
//! Every function gets its event as the JSON AWS would send ([`events`]) and runs the same
//! handler and adapters as the deployed binary ([`functions`]).
//!
//! Operations, as in AWS: the stand-ins publish the metrics AWS publishes ([`aws_metrics`],
//! [`queue_metrics`]) beside the fleet's own ([`local_metrics`]), the alarms of deploy/ are
//! evaluated locally ([`alarms`], `/_local/alarms`) and the deployed dashboard is drawn at
//! `/_local/dashboard` ([`dashboard`]).

pub mod alarm_rules;
pub mod alarms;
pub mod aws_metrics;
pub mod dashboard;
pub mod events;
pub mod front;
pub mod functions;
pub mod local_metrics;
pub mod local_names;
pub mod metric_math;
pub mod queue;
pub mod queue_metrics;
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

pub use functions::{CompletionSettings, FunctionSettings, Functions};
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
    /// Deliveries one notifier invocation makes at once (its event source: `event_source`'s).
    pub notifier_concurrency: usize,
    pub chaos: DeliveryChaos,
    /// Completion webhooks: master key, retry schedule, allowed receivers.
    pub completion: CompletionSettings,
}

/// At-least-once delivery made visible: how often the local event sources deliver twice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveryChaos {
    /// Probability that a stream batch is handed to the dispatcher a second time.
    pub duplicate_stream_batch: f64,
    /// Probability that a batch of the jobs queue is delivered to the caller a second time.
    pub duplicate_message: f64,
}

/// The local operations: alarms and the AWS metrics they read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpsSettings {
    /// Every alarm's period (`LOCAL_ALARM_PERIOD_SECONDS`); None: the definitions' own.
    pub alarm_period: Option<Duration>,
    /// Between two reads of the queues' attributes (`AWS/SQS` metrics); None: the alarm period
    /// or 5 s, whichever is shorter, at least a second.
    pub queue_poll: Option<Duration>,
    /// No AWS metrics (Lambda, API Gateway, SQS, DynamoDB), so no queue polls and no alarm
    /// evaluation (`LOCAL_AWS_METRICS=off`): the fleet makes only the requests it makes in AWS,
    /// for the benchmarks that count them. Its own metrics are put as ever.
    pub without_aws_metrics: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Provision(#[from] resources::ProvisionError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Functions(#[from] functions::BuildError),
    #[error("cannot serve HTTP: {0}")]
    Io(#[from] std::io::Error),
    #[error("the alarms of deploy/alarms.json: {0}")]
    Alarms(String),
}

/// A running fleet; dropping it stops everything it started.
pub struct Fleet {
    pub addr: SocketAddr,
    pub resources: Resources,
    pub callback_base_url: String,
    pub dead_letters: DeadLetters,
    /// The local alarms (also at `/_local/alarms`).
    pub alarms: alarms::Alarms,
    /// The recorder of the AWS metrics.
    pub metrics: Arc<aws_metrics::AwsMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Creates the emulator resources and starts the front (on `listener`), the stream poller,
    /// the jobs queue pollers and the schedules, with the alarms' own periods.
    pub async fn start(sdk: &SdkConfig, settings: FleetSettings, listener: TcpListener) -> Result<Self, FleetError> {
        Self::start_with(sdk, settings, listener, OpsSettings::default()).await
    }

    /// [`Fleet::start`], with the local operations set up as `ops` says.
    pub async fn start_with(
        sdk: &SdkConfig,
        settings: FleetSettings,
        listener: TcpListener,
        ops: OpsSettings,
    ) -> Result<Self, FleetError> {
        let addr = listener.local_addr()?;
        let resources = provision(sdk, &settings).await?;
        let callback_base_url = settings.callback_base_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let names = local_names::LocalNames::new(&settings.names, &settings.metrics_namespace, &region);
        let metrics = Arc::new(if ops.without_aws_metrics {
            aws_metrics::AwsMetrics::without_aws_metrics(names.clone())
        } else {
            aws_metrics::AwsMetrics::new(names.clone())
        });
        let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
        let alarm_period = ops.alarm_period.map(|p| u32::try_from(p.as_secs().max(1)).unwrap_or(u32::MAX));
        let alarms =
            alarms::Alarms::load(cloudwatch.clone(), metrics.clone(), alarm_period).map_err(FleetError::Alarms)?;
        let local_metrics = Arc::new(local_metrics::LocalMetrics::new(metrics.clone(), &settings.metrics_namespace));
        let functions = Arc::new(Functions::new(
            sdk,
            &FunctionSettings {
                table: resources.table.clone(),
                layout: settings.layout,
                queue_url: resources.queue_url.clone(),
                caller_concurrency: settings.caller_concurrency,
                deliveries_queue_url: resources.deliveries_queue_url.clone(),
                notifier_concurrency: settings.notifier_concurrency,
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
                completion: settings.completion.clone(),
            },
        )?);
        let dead_letters = DeadLetters::default();
        let mut tasks = Vec::new();

        let dashboard =
            dashboard::Dashboard { cloudwatch: cloudwatch.clone(), metrics: metrics.clone(), alarms: alarms.clone() };
        let app = front::router(functions.clone(), metrics.clone())
            .merge(dashboard::router(dashboard))
            .merge(alarms::router(alarms.clone()))
            .into_make_service_with_connect_info::<SocketAddr>();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "HTTP front stopped");
            }
        }));
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let stream_source = stream::StreamSource {
            client: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn: resources.stream_arn.clone(),
            region: region.clone(),
            metrics: metrics.clone(),
            sqs: sqs.clone(),
            dead_letter_queue_url: resources.dispatcher_dlq_url.clone(),
        };
        tasks.push(tokio::spawn(stream::run(stream_source, functions.clone(), dead_letters.clone(), settings.chaos)));
        let watch = Arc::new(queue_metrics::QueueWatch::default());
        let queue_source = Arc::new(queue::QueueSource {
            function: local_names::Function::Caller,
            client: sqs.clone(),
            queue_url: resources.queue_url.clone(),
            queue_arn: resources.queue_arn.clone(),
            region: region.clone(),
            metrics: metrics.clone(),
            watch: watch.clone(),
        });
        // The notifier's event source reads the deliveries queue the same way (its own pollers).
        let deliveries_watch = Arc::new(queue_metrics::QueueWatch::default());
        let deliveries_source = Arc::new(queue::QueueSource {
            function: local_names::Function::Notifier,
            client: sqs.clone(),
            queue_url: resources.deliveries_queue_url.clone(),
            queue_arn: resources.deliveries_queue_arn.clone(),
            region: region.clone(),
            metrics: metrics.clone(),
            watch: deliveries_watch.clone(),
        });
        for source in [&queue_source, &deliveries_source] {
            for _ in 0..settings.event_source.max_concurrency.max(1) {
                let poller = queue::run(source.clone(), settings.event_source, functions.clone(), settings.chaos);
                tasks.push(tokio::spawn(poller));
            }
        }
        let metrics_every = settings.metrics_interval;
        tasks.push(tokio::spawn(schedule::run(
            functions.clone(),
            metrics.clone(),
            schedule::Job::Metrics,
            metrics_every,
            region.clone(),
        )));
        tasks.push(tokio::spawn(schedule::run(
            functions,
            metrics.clone(),
            schedule::Job::Sweeper,
            settings.sweep_interval,
            region,
        )));
        let queue_poll = ops.queue_poll.unwrap_or_else(|| {
            ops.alarm_period.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5)).max(Duration::from_secs(1))
        });
        let queue_name = |url: &str| url.rsplit('/').next().unwrap_or(url).to_owned();
        let resource_metrics = queue_metrics::ResourceMetrics {
            sqs,
            recorder: metrics.clone(),
            jobs: queue_metrics::WatchedQueue {
                name: queue_name(&resources.queue_url),
                url: resources.queue_url.clone(),
            },
            jobs_dlq: queue_metrics::WatchedQueue {
                name: queue_name(&resources.dead_letter_queue_url),
                url: resources.dead_letter_queue_url.clone(),
            },
            deliveries: queue_metrics::WatchedQueue {
                name: queue_name(&resources.deliveries_queue_url),
                url: resources.deliveries_queue_url.clone(),
            },
            deliveries_dlq: queue_metrics::WatchedQueue {
                name: queue_name(&resources.deliveries_dlq_url),
                url: resources.deliveries_dlq_url.clone(),
            },
            deliveries_watch,
            dispatcher_dlq: queue_metrics::WatchedQueue {
                name: queue_name(&resources.dispatcher_dlq_url),
                url: resources.dispatcher_dlq_url.clone(),
            },
            watch,
            table: resources.table.clone(),
            indexes: [
                taskfleet_adapters::table::STATUS_INDEX,
                taskfleet_adapters::table::CLIENT_INDEX,
                taskfleet_adapters::table::KEY_OWNER_INDEX,
            ]
            .map(str::to_owned)
            .to_vec(),
            visibility_timeout: Duration::from_secs(u64::try_from(resources::VISIBILITY_TIMEOUT_SECONDS).unwrap_or(5)),
        };
        if !ops.without_aws_metrics {
            tasks.push(tokio::spawn(resource_metrics.run(queue_poll)));
            tasks.push(tokio::spawn(alarms.clone().run()));
        }
        tasks.push(tokio::spawn(metrics.clone().forward(cloudwatch, Duration::from_secs(1))));
        Ok(Self { addr, resources, callback_base_url, dead_letters, alarms, metrics, tasks })
    }
}

/// Creates what is missing (safe to repeat), trying again twice on an error: behind a faulty
/// endpoint (tests' fault-injecting proxy) a request can fail past the SDK's own retries, and
/// the fleet has a dozen of them to make before it runs.
async fn provision(sdk: &SdkConfig, settings: &FleetSettings) -> Result<Resources, FleetError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let made = match resources::ensure(sdk, &settings.names).await {
            Ok(resources) => {
                resources::ensure_keys(sdk, &resources.table, &settings.client_keys).await.map(|()| resources)
            }
            Err(error) => Err(error),
        };
        match made {
            Ok(resources) => return Ok(resources),
            Err(error) if tries < 3 => {
                tracing::warn!(%error, "cannot create the emulator resources; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
