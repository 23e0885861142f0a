//! Starting a whole local fleet (front, pollers, schedules) plus the example external service
//! against the emulator, on ephemeral loopback ports, for one test.

pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use taskfleet_core::ClientId;
use taskfleet_core::policy::Policies;
use taskfleet_core::retry::RetryPolicy;
use taskfleet_example_service::{Chaos, Stats};
use taskfleet_localfleet::queue::EventSource;
use taskfleet_localfleet::{DeliveryChaos, Fleet, FleetSettings, Names};
use taskfleet_testkit::faults::{FaultyProxy, Rates};

pub const KEY_ALPHA: &str = "tfk_alpha001_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const KEY_BETA: &str = "tfk_beta0001_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Attempts per series in these tests.
pub const MAX_ATTEMPTS: u32 = 5;

/// How the world misbehaves in a test.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// How long the example service works before calling back.
    pub delay: Duration,
    pub service: Chaos,
    pub delivery: DeliveryChaos,
    /// Secrets the fleet and the service share (None: callbacks carry their token alone).
    pub signing: Option<taskfleet_core::signing::SigningSecrets>,
    /// Where the fleet reads its secrets instead of `signing`, fixed (e.g. a Secrets Manager
    /// secret in the emulator, refreshed as in AWS).
    pub secret_source: Option<Arc<dyn taskfleet_core::secrets::SecretSource>>,
    /// How the caller reads the jobs queue, and how many jobs each invocation hands over at once
    /// (None: batches of ten, three pollers, ten jobs each).
    pub caller: Option<(EventSource, usize)>,
    /// Between sweeper runs (None: a minute, as in AWS; timers move every task along).
    pub sweep_interval: Option<Duration>,
    /// The lifecycle's timings (None: [`fast_policies`]).
    pub policies: Option<Policies>,
    /// AWS misbehaving: the fleet reaches the emulator through a proxy that throttles, fails,
    /// slows or drops answers at these rates (None: directly).
    pub aws_faults: Option<Rates>,
    /// Completion webhooks (None: [`completion_settings`]).
    pub completion: Option<taskfleet_localfleet::CompletionSettings>,
}

impl Scenario {
    pub fn calm(delay: Duration) -> Self {
        Self { delay, ..Self::default() }
    }
}

/// The caller's reading of the jobs queue unless a scenario says otherwise.
pub const CALLER: (EventSource, usize) =
    (EventSource { batch_size: 10, batch_window: Duration::ZERO, max_concurrency: 3 }, 10);

/// The completion-webhook master key of these tests.
pub const MASTER_KEY: &str = "whsec_dGVzdC1tYXN0ZXIta2V5LW9mLXRoZS1lMmUtdGVzdHMtMDE=";

/// Completion webhooks in these tests: [`MASTER_KEY`], loopback receivers allowed.
pub fn completion_settings() -> taskfleet_localfleet::CompletionSettings {
    let master = taskfleet_core::completion::client_secret::MasterKey::parse(MASTER_KEY).expect("the test master key");
    taskfleet_localfleet::CompletionSettings::local(master)
}

/// The lifecycle's timings, shortened so retries and timeouts happen within a test.
pub fn fast_policies() -> Policies {
    Policies {
        retry: RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        },
        callback_timeout: Duration::from_secs(3),
        dispatch_grace: Duration::from_millis(500),
        ..Policies::default()
    }
}

pub struct TestFleet {
    fleet: Option<Fleet>,
    pub names: Names,
    pub namespace: String,
    /// The emulator, directly (what the test reads with).
    pub sdk: taskfleet_adapters::SdkConfig,
    /// What the fleet reaches AWS with: the emulator, or the faulty proxy in front of it.
    fleet_sdk: taskfleet_adapters::SdkConfig,
    /// The faulty proxy, while the scenario has one.
    pub proxy: Option<FaultyProxy>,
    pub http: reqwest::Client,
    pub stats: Arc<Stats>,
    scenario: Scenario,
    service_addr: SocketAddr,
    service: tokio::task::JoinHandle<()>,
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        self.service.abort();
    }
}

impl TestFleet {
    /// A fleet with its own table, topic and queue, and an example service behaving as told.
    pub async fn start(scenario: Scenario) -> Self {
        let sdk = taskfleet_testkit::sdk_config().await;
        let stats = Arc::new(Stats::default());
        let service_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service_addr = service_listener.local_addr().unwrap();
        let settings = taskfleet_example_service::Settings {
            delay: scenario.delay,
            chaos: scenario.service.clone(),
            stats: stats.clone(),
            signing: scenario.signing.clone(),
        };
        let service = tokio::spawn(async move {
            let _ = taskfleet_example_service::serve(service_listener, settings).await;
        });
        let names = Names::with_prefix(&taskfleet_testkit::unique_name("e2e"));
        let namespace = taskfleet_testkit::unique_name("TaskFleetTest");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = match scenario.aws_faults {
            Some(rates) => Some(FaultyProxy::start(&taskfleet_testkit::endpoint(), rates).await.unwrap()),
            None => None,
        };
        let fleet_endpoint = proxy.as_ref().map_or_else(taskfleet_testkit::endpoint, FaultyProxy::url);
        let fleet_sdk = taskfleet_adapters::config::aws_from(taskfleet_testkit::loader_at(&fleet_endpoint)).await;
        let fleet = Self::start_fleet(&fleet_sdk, &names, &namespace, &scenario, service_addr, listener).await;
        Self {
            fleet: Some(fleet),
            names,
            namespace,
            sdk,
            fleet_sdk,
            proxy,
            http: reqwest::Client::new(),
            stats,
            scenario,
            service_addr,
            service,
        }
    }

    async fn start_fleet(
        sdk: &taskfleet_adapters::SdkConfig,
        names: &Names,
        namespace: &str,
        scenario: &Scenario,
        service_addr: SocketAddr,
        listener: tokio::net::TcpListener,
    ) -> Fleet {
        let settings = FleetSettings {
            names: names.clone(),
            client_keys: vec![
                (ClientId::parse("alpha").unwrap(), KEY_ALPHA.to_owned()),
                (ClientId::parse("beta").unwrap(), KEY_BETA.to_owned()),
            ],
            key_cache: Duration::from_secs(1),
            signing: scenario
                .secret_source
                .clone()
                .or_else(|| scenario.signing.clone().map(taskfleet_core::secrets::FixedSecrets::shared)),
            external_service_url: format!("http://{service_addr}/jobs"),
            external_timeout: Duration::from_secs(2),
            callback_base_url: None,
            policies: scenario.policies.unwrap_or_else(fast_policies),
            // One shard: every sweep and metrics run (each 500 ms) queries every
            // shard, the emulator serves one request at a time and scans the table for each index
            // query, and several fleets share it. Sharding is tested by the adapter tests.
            layout: taskfleet_adapters::table::Layout { status_shards: 1 },
            inline_max: taskfleet_core::blob::DEFAULT_INLINE_MAX_BYTES,
            metrics_namespace: namespace.to_owned(),
            metrics_interval: Duration::from_millis(500),
            sweep_interval: scenario.sweep_interval.unwrap_or(Duration::from_secs(60)),
            sweep_batch: 100,
            event_source: scenario.caller.unwrap_or(CALLER).0,
            caller_concurrency: scenario.caller.unwrap_or(CALLER).1,
            notifier_concurrency: 4,
            chaos: scenario.delivery,
            completion: scenario.completion.clone().unwrap_or_else(completion_settings),
        };
        Fleet::start(sdk, settings, listener).await.unwrap()
    }

    pub fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("the fleet is running")
    }

    /// Stops the fleet (front, pollers, schedules; the emulator and the service stay up) for
    /// `down_for`, then starts a new one on the same resources and address, as a redeployed
    /// fleet would come back.
    pub async fn restart(&mut self, down_for: Duration) {
        let addr = self.fleet().addr;
        drop(self.fleet.take());
        tokio::time::sleep(down_for).await;
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("the fleet's old address is free again");
        let fleet = Self::start_fleet(
            &self.fleet_sdk,
            &self.names,
            &self.namespace,
            &self.scenario,
            self.service_addr,
            listener,
        )
        .await;
        self.fleet = Some(fleet);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.fleet().addr)
    }

    /// POST /tasks with `payload` as `key`; answers (status, body).
    pub async fn submit(&self, key: &str, payload: Value) -> (u16, Value) {
        let answer = self
            .http
            .post(self.url("/tasks"))
            .header("x-api-key", key)
            .json(&json!({ "payload": payload }))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// GET /tasks/{id} as `key`; answers (status, body).
    pub async fn status(&self, key: &str, task_id: &str) -> (u16, Value) {
        let answer =
            self.http.get(self.url(&format!("/tasks/{task_id}"))).header("x-api-key", key).send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Polls the task until it is DONE or FAILED, or `within` has passed.
    pub async fn wait_finished(&self, key: &str, task_id: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (code, body) = self.status(key, task_id).await;
            assert_eq!(code, 200, "GET /tasks/{task_id}: {body}");
            if matches!(body["status"].as_str(), Some("DONE" | "FAILED")) {
                return body;
            }
            assert!(start.elapsed() < within, "task {task_id} not finished within {within:?}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POST /tasks as a careful client does: with an `Idempotency-Key`, and again (the same key)
    /// after a 429 or 5xx that says to retry; never a 500. Answers the final (status, body).
    pub async fn submit_reliably(&self, key: &str, payload: Value) -> (u16, Value) {
        let idempotency_key = format!("k-{}", fastrand::u64(..));
        for _ in 0..20 {
            let answer = self
                .http
                .post(self.url("/tasks"))
                .header("x-api-key", key)
                .header("idempotency-key", &idempotency_key)
                .json(&json!({ "payload": payload }))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 500, "POST /tasks answered 500: {body}");
            if !matches!(status, 429 | 502 | 503 | 504) {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("POST /tasks kept answering 429/5xx")
    }

    /// Submits `count` tasks (payload `{"n": i}`) as `key`, 16 at a time, each reliably (see
    /// [`Self::submit_reliably`]); answers their ids in the order they were accepted.
    pub async fn submit_many(&self, key: &str, count: usize) -> Vec<String> {
        stream::iter(0..count)
            .map(|n| async move {
                let (code, body) = self.submit_reliably(key, json!({"n": n})).await;
                assert!(code == 202 || code == 200, "{code}: {body}");
                body["task_id"].as_str().unwrap().to_owned()
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Waits until every task is DONE or FAILED (bounded), answering the final views by id.
    pub async fn wait_all(&self, key: &str, ids: &[String], within: Duration) -> HashMap<String, Value> {
        let start = Instant::now();
        let mut finished = HashMap::new();
        while finished.len() < ids.len() {
            let pending: Vec<&String> = ids.iter().filter(|id| !finished.contains_key(*id)).collect();
            let views: Vec<(String, u16, Value)> = stream::iter(pending)
                .map(|id| async move {
                    let (code, view) = self.status(key, id).await;
                    (id.clone(), code, view)
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let mut unfinished = Vec::new();
            for (id, code, view) in views {
                // A transient AWS failure may answer 503 (with Retry-After); never 500 or 404.
                if code == 503 {
                    continue;
                }
                assert_eq!(code, 200, "task {id} was lost: {view}");
                if matches!(view["status"].as_str(), Some("DONE" | "FAILED")) {
                    finished.insert(id, view);
                } else {
                    unfinished.push(view);
                }
            }
            let left = ids.len() - finished.len();
            assert!(
                start.elapsed() < within,
                "{left} of {} tasks not finished within {within:?}; e.g. {:?}",
                ids.len(),
                unfinished.iter().take(3).collect::<Vec<_>>()
            );
            if left > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        finished
    }

    /// The callback URL the service was given for the task's latest accepted attempt.
    pub fn callback_url(&self, task_id: &str) -> String {
        self.stats.callback_urls().remove(task_id).expect("the service accepted a job for the task")
    }
}
