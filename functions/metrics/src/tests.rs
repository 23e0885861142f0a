use super::*;

use std::sync::Mutex;

use lambda_runtime::Context;
use serde_json::json;
use taskfleet_core::blob::Content;
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::metrics::{Gauge, Unit};
use taskfleet_core::{ClientId, Task, TaskStatus};

/// An EventBridge scheduled event as Lambda receives it: aws_lambda_events'
/// `example-eventbridge-schedule.json`, unchanged.
const SCHEDULED_EVENT: &str = r#"{
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2015-10-08T16:53:06Z",
    "region": "us-east-1",
    "resources": [
        "arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"
    ],
    "detail": {}
}"#;

/// A metrics sink that records every push and fails when told to.
#[derive(Default)]
struct Sink {
    fail: bool,
    pushes: Mutex<Vec<Vec<Gauge>>>,
}

impl MetricsSink for Sink {
    async fn put(&self, gauges: &[Gauge]) -> Result<(), MetricsError> {
        self.pushes.lock().unwrap().push(gauges.to_vec());
        if self.fail { Err(MetricsError("Throttling: rate exceeded".into())) } else { Ok(()) }
    }
}

fn app(sink: Sink) -> App<MemoryStore, Sink> {
    App { store: MemoryStore::new(), sink }
}

fn scheduled() -> LambdaEvent<EventBridgeEvent> {
    LambdaEvent::new(serde_json::from_str(SCHEDULED_EVENT).unwrap(), Context::default())
}

/// Stores a task in `status` whose `due_at` is `seconds_ago` (negative: in the future). For
/// RECEIVED that is when it became dispatchable, for IN_PROGRESS its callback deadline, for DONE
/// and FAILED when it finished.
async fn task_in(app: &App<MemoryStore, Sink>, status: TaskStatus, seconds_ago: i64) {
    let now = Timestamp::now().as_millis();
    let due = Timestamp::from_millis(now - seconds_ago * 1000);
    let created = Timestamp::from_millis(now - 7_200_000);
    let expires_at = created.plus_seconds(86_400).as_epoch_seconds();
    let mut task = Task::received(ClientId::parse("alpha").unwrap(), created, expires_at);
    task.status = status;
    task.due_at = due;
    task.updated_at = Timestamp::from_millis(now - 7_000_000);
    if status != TaskStatus::Received {
        task.attempts = 1;
    }
    app.store.insert(&task, &Content::Inline(json!({})), expires_at).await.unwrap();
}

/// The one push the run made, as (name, status, value, unit).
fn pushed(app: &App<MemoryStore, Sink>) -> Vec<(&'static str, Option<&'static str>, f64, Unit)> {
    let pushes = app.sink.pushes.lock().unwrap();
    assert_eq!(pushes.len(), 1, "exactly one PutMetricData per run");
    pushes[0].iter().map(|g| (g.name, g.status.map(TaskStatus::as_str), g.value, g.unit)).collect()
}

#[tokio::test]
async fn a_scheduled_run_pushes_the_four_gauges_of_the_store() {
    let app = app(Sink::default());
    // Waiting: three due (the oldest for 90 s), one retry due only in a minute.
    task_in(&app, TaskStatus::Received, 90).await;
    task_in(&app, TaskStatus::Received, 30).await;
    task_in(&app, TaskStatus::Received, 1).await;
    task_in(&app, TaskStatus::Received, -60).await;
    // In progress: one past its callback deadline, two not.
    task_in(&app, TaskStatus::InProgress, 10).await;
    task_in(&app, TaskStatus::InProgress, -600).await;
    task_in(&app, TaskStatus::InProgress, -3_600).await;
    // Finished, recently and long ago: no gauge counts them (the per-event metrics do), and
    // the oldest of them is older than the oldest RECEIVED task.
    task_in(&app, TaskStatus::Done, 10).await;
    task_in(&app, TaskStatus::Done, 45).await;
    task_in(&app, TaskStatus::Done, 600).await;
    task_in(&app, TaskStatus::Failed, 5).await;
    task_in(&app, TaskStatus::Failed, 3_600).await;

    let before = Timestamp::now();
    handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    let gauges = pushed(&app);
    assert_eq!(gauges.len(), 4);
    assert_eq!(
        gauges[..3],
        [
            ("TasksActive", Some("RECEIVED"), 4.0, Unit::Count),
            ("TasksActive", Some("IN_PROGRESS"), 3.0, Unit::Count),
            ("TasksOverdue", None, 1.0, Unit::Count),
        ]
    );
    let (name, status, age, unit) = gauges[3];
    assert_eq!((name, status, unit), ("OldestReceivedAgeSeconds", None, Unit::Seconds));
    // The oldest RECEIVED task became due 90 s before `before`; the run read the clock later.
    let slack = after.millis_since(before) as f64 / 1000.0;
    assert!((90.0..=90.0 + slack + 0.001).contains(&age), "age {age} not within [90, {}]", 90.0 + slack);
    // Every gauge name is one the dashboard knows.
    for (name, ..) in &gauges {
        assert!(taskfleet_core::metrics::GAUGES.contains(name), "{name}");
    }
}

#[tokio::test]
async fn finished_tasks_are_no_gauge_any_more() {
    let app = app(Sink::default());
    task_in(&app, TaskStatus::Done, 10).await;
    task_in(&app, TaskStatus::Failed, 5).await;
    handle(&app, scheduled()).await.unwrap();
    let gauges = pushed(&app);
    // Exactly these, in this order: no TasksFinished (DONE or FAILED) among them.
    assert_eq!(
        gauges.iter().map(|(name, status, ..)| (*name, *status)).collect::<Vec<_>>(),
        [
            ("TasksActive", Some("RECEIVED")),
            ("TasksActive", Some("IN_PROGRESS")),
            ("TasksOverdue", None),
            ("OldestReceivedAgeSeconds", None),
        ]
    );
    assert!(gauges.iter().all(|(name, ..)| *name != "TasksFinished"), "{gauges:?}");
    assert_eq!(taskfleet_core::metrics::GAUGES, ["TasksActive", "OldestReceivedAgeSeconds", "TasksOverdue"]);
    // And the finished tasks count as nothing else either.
    assert!(gauges.iter().all(|(_, _, value, _)| *value == 0.0), "{gauges:?}");
}

#[tokio::test]
async fn a_backlog_of_retries_not_yet_due_has_no_age() {
    let app = app(Sink::default());
    task_in(&app, TaskStatus::Received, -30).await;
    task_in(&app, TaskStatus::Received, -300).await;
    handle(&app, scheduled()).await.unwrap();
    let gauges = pushed(&app);
    assert_eq!(gauges[0], ("TasksActive", Some("RECEIVED"), 2.0, Unit::Count));
    assert_eq!(gauges[3], ("OldestReceivedAgeSeconds", None, 0.0, Unit::Seconds));
}

#[tokio::test]
async fn an_empty_store_pushes_zeros() {
    let app = app(Sink::default());
    handle(&app, scheduled()).await.unwrap();
    assert_eq!(
        pushed(&app),
        [
            ("TasksActive", Some("RECEIVED"), 0.0, Unit::Count),
            ("TasksActive", Some("IN_PROGRESS"), 0.0, Unit::Count),
            ("TasksOverdue", None, 0.0, Unit::Count),
            ("OldestReceivedAgeSeconds", None, 0.0, Unit::Seconds),
        ]
    );
}

#[tokio::test]
async fn a_failing_sink_fails_the_run_for_lambda_to_report() {
    let app = app(Sink { fail: true, ..Sink::default() });
    task_in(&app, TaskStatus::Received, 1).await;
    let error = handle(&app, scheduled()).await.unwrap_err();
    assert!(matches!(error, MetricsRunError::Sink(_)), "{error:?}");
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "MetricsUnavailable");
    assert_eq!(diagnostic.error_message, "pushing metrics failed: Throttling: rate exceeded");
}
