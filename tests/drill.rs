//! A game day, end to end (issue 13): a local fleet under steady load, its alarms evaluated
//! locally from deploy/alarms.json with 3-second periods. The example external service starts
//! refusing every job (`POST /_chaos`, at run time): `ExternalErrorRateAlarm`, and no other
//! alarm, goes to ALARM within a few periods; the service recovers and the alarm goes back to
//! OK. Meanwhile every widget of the deployed dashboard (deploy/dashboard.json) has data, the
//! AWS metrics the fleet publishes itself included (some tasks have a completion webhook, so the
//! notifier and the deliveries queue have data too).
//!
//! Needs the AWS emulator at AWS_ENDPOINT_URL (`make test` starts it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskfleet_core::ClientId;
use taskfleet_core::policy::Policies;
use taskfleet_localfleet::queue::EventSource;
use taskfleet_localfleet::{DeliveryChaos, Fleet, FleetSettings, Names, OpsSettings};
use taskfleet_testkit::receiver::{Behaviour, WebhookReceiver};

const KEY: &str = "tfk_drill001_ddddddddddddddddddddddddddddddddddddddddddd";
/// Every alarm's period here.
const PERIOD: Duration = Duration::from_secs(3);
const ALARM: &str = "ExternalErrorRateAlarm";

struct Drill {
    fleet: Fleet,
    http: reqwest::Client,
    service: String,
    _service_task: tokio::task::JoinHandle<()>,
    /// Where the drill's completion webhooks go (a receiver that answers 200).
    webhook_url: String,
    _receiver: WebhookReceiver,
}

impl Drill {
    async fn start() -> Self {
        let sdk = taskfleet_testkit::sdk_config().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service_addr = listener.local_addr().unwrap();
        let settings = taskfleet_example_service::Settings { delay: Duration::from_millis(200), ..Default::default() };
        let service_task = tokio::spawn(async move {
            let _ = taskfleet_example_service::serve(listener, settings).await;
        });
        let prefix = taskfleet_testkit::unique_name("drill");
        let settings = FleetSettings {
            names: Names::with_prefix(&prefix),
            client_keys: vec![(ClientId::parse("drill").unwrap(), KEY.to_owned())],
            key_cache: Duration::from_secs(5),
            signing: None,
            external_service_url: format!("http://{service_addr}/jobs"),
            external_timeout: Duration::from_secs(2),
            callback_base_url: None,
            // The deployed retries (30 s and up): a refused task waits for its retry and does not
            // run out of attempts within the drill, so only the external error rate moves.
            policies: Policies::default(),
            layout: taskfleet_adapters::table::Layout { status_shards: 1 },
            inline_max: taskfleet_core::blob::DEFAULT_INLINE_MAX_BYTES,
            metrics_namespace: taskfleet_testkit::unique_name("TaskFleetDrill"),
            metrics_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
            sweep_batch: 100,
            event_source: EventSource { batch_size: 10, batch_window: Duration::ZERO, max_concurrency: 2 },
            caller_concurrency: 10,
            notifier_concurrency: 10,
            chaos: DeliveryChaos::default(),
            completion: taskfleet_e2e::completion_settings(),
        };
        let ops = OpsSettings {
            alarm_period: Some(PERIOD),
            queue_poll: Some(Duration::from_secs(1)),
            ..OpsSettings::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fleet = Fleet::start_with(&sdk, settings, listener, ops).await.unwrap();
        let http = reqwest::Client::new();
        taskfleet_e2e::webhooks::issue_secret(&http, &format!("http://{}", fleet.addr), KEY).await;
        let receiver = WebhookReceiver::start(Behaviour::always(200)).await;
        let webhook_url = receiver.url("/hook");
        Self {
            fleet,
            http,
            service: format!("http://{service_addr}"),
            _service_task: service_task,
            webhook_url,
            _receiver: receiver,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.fleet.addr)
    }

    /// Alarm name → state, from `GET /_local/alarms`.
    async fn states(&self) -> BTreeMap<String, String> {
        let answer: Value = self.http.get(self.url("/_local/alarms")).send().await.unwrap().json().await.unwrap();
        let alarms = answer.as_array().expect("a list of alarms");
        for alarm in alarms {
            for field in ["name", "state", "reason", "since"] {
                assert!(alarm[field].is_string(), "{field} missing in {alarm}");
            }
        }
        alarms
            .iter()
            .map(|a| (a["name"].as_str().unwrap().to_owned(), a["state"].as_str().unwrap().to_owned()))
            .collect()
    }

    async fn reason(&self, name: &str) -> String {
        let answer: Value = self.http.get(self.url("/_local/alarms")).send().await.unwrap().json().await.unwrap();
        let alarm = answer.as_array().unwrap().iter().find(|a| a["name"] == name).expect("the alarm").clone();
        alarm["reason"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until `check` holds for the alarm states; answers them.
    async fn until(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let start = Instant::now();
        loop {
            let states = self.states().await;
            if check(&states) {
                return states;
            }
            assert!(start.elapsed() < within, "not {what} within {within:?}: {states:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn chaos(&self, change: Value) {
        let answer = self.http.post(format!("{}/_chaos", self.service)).json(&change).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
    }
}

fn in_alarm(states: &BTreeMap<String, String>) -> Vec<&str> {
    states.iter().filter(|(_, state)| *state == "ALARM").map(|(name, _)| name.as_str()).collect()
}

/// A steady mix, until `stop`: a submit about every 100 ms, its status read, now and then a bad
/// request (4xx) and a task with a completion webhook. No cancels: a cancelled task ends FAILED and counts in `TasksFailed`, so while
/// the service refuses everything (no completions) a single cancel is a 100 % failure rate and
/// `TaskFailureRateAlarm` fires too (README, operations: the drill).
fn load(drill: &Drill, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (http, base) = (drill.http.clone(), drill.url(""));
    let webhook_url = drill.webhook_url.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let submitted = http
                .post(format!("{base}/tasks"))
                .header("x-api-key", KEY)
                .json(&json!({"payload": {"n": n}}))
                .send()
                .await;
            if let Ok(answer) = submitted
                && let Ok(body) = answer.json::<Value>().await
                && let Some(id) = body["task_id"].as_str()
            {
                let _ = http.get(format!("{base}/tasks/{id}")).header("x-api-key", KEY).send().await;
            }
            if n.is_multiple_of(5) {
                taskfleet_e2e::webhooks::submit_notifying(&http, &base, KEY, json!({"n": n}), &webhook_url).await;
            }
            if n.is_multiple_of(7) {
                let _ = http.post(format!("{base}/tasks")).header("x-api-key", KEY).body("not json").send().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_error_rate_alarm_fires_while_the_service_refuses_and_clears_when_it_recovers() {
    let drill = Drill::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = load(&drill, stop.clone());
    let window = PERIOD * 40;

    // Calm: every alarm evaluated (after its N periods) and none in ALARM.
    let calm = drill.until("evaluated and calm", window, |s| s.values().all(|state| state == "OK")).await;
    assert!(calm.contains_key(ALARM), "{calm:?}");

    // The service refuses every job: the external error rate alarm fires, alone.
    drill.chaos(json!({"refuse": 1.0})).await;
    let failing = drill.until("ALARM", window, |s| s[ALARM] == "ALARM").await;
    assert_eq!(in_alarm(&failing), [ALARM], "only the external error rate alarm: {failing:?}");
    let reason = drill.reason(ALARM).await;
    assert!(reason.starts_with("Threshold Crossed: "), "{reason}");
    assert!(reason.contains("greater than the threshold (5.0)"), "{reason}");

    // Every widget of the deployed dashboard has data by now.
    let data: Value = drill
        .http
        .get(drill.url("/_local/dashboard/data?minutes=5&period=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut empty = Vec::new();
    for widget in data["widgets"].as_array().unwrap() {
        if widget["type"] != "metric" {
            continue;
        }
        let title = widget["title"].as_str().unwrap();
        let drawn = |s: &Value| s["points"].as_array().is_some_and(|p| !p.is_empty());
        if !widget["series"].as_array().unwrap().iter().any(drawn) {
            empty.push(title.to_owned());
        }
        // What AWS publishes, the fleet publishes: every such line has data.
        for series in widget["series"].as_array().unwrap() {
            let namespace = series["namespace"].as_str().unwrap_or_default();
            if namespace.starts_with("AWS/") && !drawn(series) {
                empty.push(format!("{title}: {}", series["label"]));
            }
        }
    }
    assert!(empty.is_empty(), "without data: {empty:?}");
    let alarm_states: Vec<&str> =
        data["alarms"].as_array().unwrap().iter().filter_map(|a| a["state"].as_str()).collect();
    assert!(alarm_states.contains(&"ALARM"), "the dashboard shows the states: {alarm_states:?}");

    // Recovery: back to OK, and nothing else fired on the way.
    drill.chaos(json!({"refuse": 0.0})).await;
    let recovered = drill.until("OK again", window, |s| s[ALARM] == "OK").await;
    assert!(in_alarm(&recovered).is_empty(), "{recovered:?}");

    stop.store(true, Ordering::Relaxed);
    driver.await.unwrap();
}
