//! The eight functions, built once like eight cold starts, and invoked the way Lambda invokes them:
//! event JSON in, `aws_lambda_events` deserialization, the function's own handler, JSON out.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayV2httpResponse;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Service, service_fn};
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use taskfleet_adapters::table::Layout;
use taskfleet_adapters::{
    CloudWatchSink, CompletionSender, ConfigError, DynamoSecretRecords, DynamoStore, HttpExternalService, S3Blobs,
    SdkConfig, SqsPublisher, blobs,
};

use taskfleet_adapters::DynamoKeyRecords;
use taskfleet_core::auth::CachedAuthenticator;
use taskfleet_core::blob::Blobs;
use taskfleet_core::completion::client_secret::{self, MasterKey};
use taskfleet_core::completion::destination::Rules;
use taskfleet_core::completion::schedule::DeliverySchedule;
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::EventSink;
use taskfleet_core::secrets::SecretSource;

/// How completion webhooks are signed and delivered (the deployed functions read the same from
/// `WEBHOOK_MASTER_KEY_ARN`, `WEBHOOK_SCHEDULE`, `WEBHOOK_TIMEOUT_MS`,
/// `WEBHOOK_SECRET_GRACE_SECONDS`; `WEBHOOK_ALLOW_LOOPBACK` is never set in AWS).
#[derive(Debug, Clone)]
pub struct CompletionSettings {
    /// The master key every client's webhook secret is derived from.
    pub master: MasterKey,
    /// The waits before each retry of a delivery.
    pub schedule: DeliverySchedule,
    /// Which URLs may receive webhooks (local runs allow loopback receivers).
    pub rules: Rules,
    /// How long one delivery attempt may take.
    pub timeout: Duration,
    /// How long a rotated-out client secret keeps signing.
    pub grace: Duration,
}

impl CompletionSettings {
    /// Local settings: `master`, Svix's schedule, loopback receivers allowed, the default
    /// attempt timeout and grace period.
    pub fn local(master: MasterKey) -> Self {
        Self {
            master,
            schedule: DeliverySchedule::default(),
            rules: Rules { allow_loopback: true },
            timeout: taskfleet_adapters::completion::DEFAULT_DELIVERY_TIMEOUT,
            grace: client_secret::DEFAULT_GRACE,
        }
    }
}

/// What the local fleet is configured with (the deployed functions read the same from their
/// environment).
#[derive(Clone)]
pub struct FunctionSettings {
    pub table: String,
    /// Where the task store puts its index keys (`STATUS_INDEX_SHARDS` in AWS).
    pub layout: Layout,
    /// The jobs queue (`JOBS_QUEUE_URL` in AWS).
    pub queue_url: String,
    /// Jobs one caller invocation hands over at once (`CALLER_CONCURRENCY`).
    pub caller_concurrency: usize,
    /// The deliveries queue (`DELIVERIES_QUEUE_URL` in AWS).
    pub deliveries_queue_url: String,
    /// Deliveries one notifier invocation makes at once (`NOTIFIER_CONCURRENCY`).
    pub notifier_concurrency: usize,
    /// The bucket of large payloads and results (`BLOBS_BUCKET` in AWS).
    pub bucket: String,
    /// The size above which payloads and results go to the bucket (`INLINE_MAX_BYTES`).
    pub inline_max: usize,
    /// How long a function instance remembers an API key lookup.
    pub key_cache: Duration,
    /// Where the caller and the webhook get the Standard Webhooks secrets that sign jobs and
    /// verify callbacks, per job and callback (None: tokens alone).
    pub signing: Option<Arc<dyn SecretSource>>,
    pub external_service_url: String,
    pub external_timeout: Duration,
    pub callback_base_url: String,
    pub policies: Policies,
    pub metrics_namespace: String,
    pub sweep_batch: usize,
    /// Where the functions' per-event metrics go.
    pub events: Arc<dyn EventSink>,
    pub completion: CompletionSettings,
}

pub struct Functions {
    pub ingest: taskfleet_ingest::App<DynamoStore>,
    pub status: taskfleet_status::App<DynamoStore>,
    pub webhook: taskfleet_webhook::App<DynamoStore>,
    pub dispatcher: taskfleet_dispatcher::App<SqsPublisher>,
    pub caller: taskfleet_caller::App<DynamoStore, HttpExternalService>,
    pub notifier: taskfleet_notifier::App<DynamoStore, DynamoSecretRecords, CompletionSender>,
    pub metrics: taskfleet_metrics::App<DynamoStore, CloudWatchSink>,
    pub sweeper: taskfleet_sweeper::App<DynamoStore>,
}

/// An invocation that did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the event does not deserialize as the function's event type: {0}")]
    Event(serde_json::Error),
    #[error("the function's answer does not serialize: {0}")]
    Answer(serde_json::Error),
    #[error("the function failed: {0}")]
    Function(String),
}

/// Why the functions cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] taskfleet_adapters::completion::ClientBuildError),
}

impl Functions {
    pub fn new(sdk: &SdkConfig, settings: &FunctionSettings) -> Result<Self, BuildError> {
        let store = || DynamoStore::with_layout(aws_sdk_dynamodb::Client::new(sdk), &settings.table, settings.layout);
        let bucket = || S3Blobs::new(blobs::client(sdk), &settings.bucket);
        let large = || Blobs::new(bucket(), settings.inline_max);
        let publisher = || SqsPublisher::new(aws_sdk_sqs::Client::new(sdk), &settings.queue_url);
        let deliveries = || SqsPublisher::new(aws_sdk_sqs::Client::new(sdk), &settings.deliveries_queue_url);
        let completion = &settings.completion;
        let events = || settings.events.clone();
        let keys = || {
            CachedAuthenticator::new(
                DynamoKeyRecords::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table),
                settings.key_cache,
            )
        };
        let policies = settings.policies;
        Ok(Self {
            ingest: taskfleet_ingest::App {
                store: store(),
                keys: keys(),
                blobs: large(),
                ttl: policies.ttl,
                events: events(),
                webhooks: taskfleet_ingest::webhooks::Webhooks::new(
                    DynamoSecretRecords::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table),
                    taskfleet_adapters::config::MasterKeySource::Fixed(settings.completion.master.clone()),
                    settings.completion.rules,
                    settings.completion.grace,
                ),
            },
            status: taskfleet_status::App { store: store(), keys: keys(), blobs: bucket() },
            webhook: taskfleet_webhook::App {
                store: store(),
                blobs: large(),
                policies,
                events: events(),
                signing: settings.signing.clone(),
            },
            dispatcher: taskfleet_dispatcher::App { jobs: publisher(), deliveries: deliveries() },
            caller: taskfleet_caller::App {
                store: store(),
                blobs: large(),
                service: HttpExternalService::new(
                    &settings.external_service_url,
                    settings.external_timeout,
                    settings.signing.clone(),
                )?,
                callback_base: settings.callback_base_url.clone(),
                policies,
                events: events(),
                queue: publisher(),
                hold: taskfleet_core::hold::HoldGate::new(store()),
                concurrency: settings.caller_concurrency,
            },
            notifier: taskfleet_notifier::App {
                store: store(),
                records: DynamoSecretRecords::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table),
                sender: CompletionSender::new(completion.rules, completion.timeout)?,
                blobs: bucket(),
                master: completion.master.clone(),
                schedule: completion.schedule.clone(),
                ttl: policies.ttl,
                events: events(),
                queue: deliveries(),
                concurrency: settings.notifier_concurrency,
            },
            metrics: taskfleet_metrics::App {
                store: store(),
                sink: CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(sdk), &settings.metrics_namespace),
            },
            sweeper: taskfleet_sweeper::App { store: store(), policies, batch: settings.sweep_batch, events: events() },
        })
    }
}

/// The HTTP functions, by the route that leads to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFunction {
    Ingest,
    Status,
    Webhook,
}

/// How long an invocation may run, as the deployed functions' timeout (serverless.yml).
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

fn context(request_id: &str) -> Context {
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    let now = u64::try_from(taskfleet_core::Timestamp::now().as_millis()).unwrap_or(0);
    context.deadline = now + u64::try_from(INVOCATION_TIMEOUT.as_millis()).unwrap_or(0);
    context
}

fn decode<T: DeserializeOwned>(event: Value) -> Result<T, InvokeError> {
    serde_json::from_value(event).map_err(InvokeError::Event)
}

fn encode<T: Serialize>(answer: &T) -> Result<Value, InvokeError> {
    serde_json::to_value(answer).map_err(InvokeError::Answer)
}

impl Functions {
    /// Invokes an HTTP function with an API Gateway v2 event; answers what API Gateway reads.
    pub async fn invoke_http(
        &self,
        function: HttpFunction,
        event: Value,
        request_id: &str,
    ) -> Result<ApiGatewayV2httpResponse, InvokeError> {
        let request: LambdaRequest = decode(event)?;
        let invocation = LambdaEvent::new(request, context(request_id));
        let answer = match function {
            HttpFunction::Ingest => call(|r| taskfleet_ingest::handle(&self.ingest, r), invocation).await,
            HttpFunction::Status => call(|r| taskfleet_status::handle(&self.status, r), invocation).await,
            HttpFunction::Webhook => call(|r| taskfleet_webhook::handle(&self.webhook, r), invocation).await,
        };
        decode(answer?)
    }

    /// Invokes the dispatcher with a stream batch; answers its batch item failures.
    pub async fn invoke_dispatcher(&self, event: Value) -> Result<Value, InvokeError> {
        let invocation = LambdaEvent::new(decode(event)?, context(&uuid::Uuid::new_v4().to_string()));
        encode(&taskfleet_dispatcher::handle(&self.dispatcher, invocation).await)
    }

    /// Invokes the caller with an SQS event; answers its batch item failures.
    pub async fn invoke_caller(&self, event: Value) -> Result<Value, InvokeError> {
        let invocation = LambdaEvent::new(decode(event)?, context(&uuid::Uuid::new_v4().to_string()));
        encode(&taskfleet_caller::handle(&self.caller, invocation).await)
    }

    /// Invokes the notifier with an SQS event; answers its batch item failures.
    pub async fn invoke_notifier(&self, event: Value) -> Result<Value, InvokeError> {
        let invocation = LambdaEvent::new(decode(event)?, context(&uuid::Uuid::new_v4().to_string()));
        encode(&taskfleet_notifier::handle(&self.notifier, invocation).await)
    }

    /// Invokes the sweeper with a scheduled event.
    pub async fn invoke_sweeper(&self, event: Value) -> Result<Value, InvokeError> {
        let invocation = LambdaEvent::new(decode(event)?, context(&uuid::Uuid::new_v4().to_string()));
        taskfleet_sweeper::handle(&self.sweeper, invocation).await.map_err(|e| InvokeError::Function(e.to_string()))
    }

    /// Invokes the metrics cron with a scheduled event.
    pub async fn invoke_metrics(&self, event: Value) -> Result<(), InvokeError> {
        let invocation = LambdaEvent::new(decode(event)?, context(&uuid::Uuid::new_v4().to_string()));
        taskfleet_metrics::handle(&self.metrics, invocation).await.map_err(|e| InvokeError::Function(e.to_string()))
    }
}

/// Runs an HTTP handler through lambda_http's own adapter, as `lambda_http::run` does, and
/// answers the serialized response.
async fn call<'a, F, Fut>(handler: F, invocation: LambdaEvent<LambdaRequest>) -> Result<Value, InvokeError>
where
    F: Fn(lambda_http::Request) -> Fut,
    Fut: Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'a,
{
    let service = service_fn(move |request| {
        let answer = handler(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let mut adapter = Adapter::from(service);
    let Ok(answer) = adapter.call(invocation).await;
    encode(&answer)
}
