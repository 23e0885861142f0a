//! Starting a whole local fleet (front, pollers, schedule) plus the example external service
//! against the emulator, on ephemeral loopback ports, for one test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskfleet_core::TtlPolicy;
use taskfleet_core::auth::ApiKeys;
use taskfleet_localfleet::{Fleet, FleetSettings, Names};

pub const KEY_ALPHA: &str = "alpha-key-0123456789abcdef";
pub const KEY_BETA: &str = "beta-key-0123456789abcdef";

pub struct TestFleet {
    pub fleet: Fleet,
    pub namespace: String,
    pub sdk: taskfleet_adapters::SdkConfig,
    pub http: reqwest::Client,
    service: tokio::task::JoinHandle<()>,
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        self.service.abort();
    }
}

impl TestFleet {
    /// A fleet with its own table, topic and queue, and an example service that calls back after
    /// `delay`.
    pub async fn start(delay: Duration) -> Self {
        let sdk = taskfleet_testkit::sdk_config().await;
        let service_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service_addr = service_listener.local_addr().unwrap();
        let settings = taskfleet_example_service::Settings { delay, ..Default::default() };
        let service = tokio::spawn(async move {
            let _ = taskfleet_example_service::serve(service_listener, settings).await;
        });
        let namespace = taskfleet_testkit::unique_name("TaskFleetTest");
        let fleet_settings = FleetSettings {
            names: Names::with_prefix(&taskfleet_testkit::unique_name("e2e")),
            api_keys: ApiKeys::parse(&format!("alpha:{KEY_ALPHA},beta:{KEY_BETA}")).unwrap(),
            external_service_url: format!("http://{service_addr}/jobs"),
            external_timeout: Duration::from_secs(5),
            callback_base_url: None,
            ttl: TtlPolicy::default(),
            metrics_namespace: namespace.clone(),
            metrics_window_seconds: 300,
            metrics_interval: Duration::from_millis(500),
            caller_pollers: 2,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fleet = Fleet::start(&sdk, fleet_settings, listener).await.unwrap();
        Self { fleet, namespace, sdk, http: reqwest::Client::new(), service }
    }

    pub fn addr(&self) -> SocketAddr {
        self.fleet.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.fleet.addr)
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
}
