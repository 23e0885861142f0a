use super::*;
use taskfleet_core::TaskStatus;

use std::sync::Mutex;
use std::time::Duration;

use lambda_runtime::Context;
use serde_json::json;
use taskfleet_core::blob::Content;
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::lifecycle::{Outcome, Transition};
use taskfleet_core::memory::{MemoryStore, RecordedEvents};
use taskfleet_core::ports::{DueTask, IdempotencyRecord, ListPage, ListPosition, WriteOutcome};
use taskfleet_core::retry::RetryPolicy;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token;
use taskfleet_core::{ClientId, PublishError, Task, TaskId, TtlPolicy};

// Long enough that tasks created "an hour ago" have not expired (expired tasks take no writes).
const TASK_TTL: u64 = 86_400;
const RETENTION: u64 = 86_400;
const CALLBACK_TIMEOUT_SECONDS: u64 = 100;
const DISPATCH_GRACE_SECONDS: i64 = 30;
const MAX_ATTEMPTS: u32 = 3;

/// An EventBridge scheduled event as Lambda receives it: aws_lambda_events'
/// `example-eventbridge-schedule.json`, with the sweeper's rule.
const SCHEDULED_EVENT: &str = r#"{
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2015-10-08T16:53:06Z",
    "region": "us-east-1",
    "resources": [
        "arn:aws:events:us-east-1:123456789012:rule/taskfleet-sweeper"
    ],
    "detail": {}
}"#;

/// A topic that records what it was asked to publish and refuses every message when told to.
#[derive(Default)]
struct Topic {
    refuse: bool,
    published: Mutex<Vec<DispatchMessage>>,
}

impl Publisher for Topic {
    async fn publish(&self, messages: &[DispatchMessage]) -> Vec<Result<(), PublishError>> {
        self.published.lock().unwrap().extend_from_slice(messages);
        messages
            .iter()
            .map(|_| if self.refuse { Err(PublishError("Throttling: rate exceeded".into())) } else { Ok(()) })
            .collect()
    }
}

impl Topic {
    fn published(&self) -> Vec<DispatchMessage> {
        self.published.lock().unwrap().clone()
    }
}

fn policies() -> Policies {
    Policies {
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
        retry: RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        },
        callback_timeout: Duration::from_secs(CALLBACK_TIMEOUT_SECONDS),
        dispatch_grace: Duration::from_secs(DISPATCH_GRACE_SECONDS as u64),
    }
}

fn app_with(topic: Topic, batch: usize) -> (App<MemoryStore, Topic>, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App { store: MemoryStore::new(), publisher: topic, policies: policies(), batch, events: events.clone() };
    (app, events)
}

fn app() -> (App<MemoryStore, Topic>, Arc<RecordedEvents>) {
    app_with(Topic::default(), 100)
}

fn scheduled() -> LambdaEvent<EventBridgeEvent> {
    LambdaEvent::new(serde_json::from_str(SCHEDULED_EVENT).unwrap(), Context::default())
}

fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + seconds * 1000)
}

async fn apply<S: TaskStore>(store: &S, transition: Transition) {
    let outcome = store.apply(&transition).await.unwrap();
    assert!(matches!(outcome, WriteOutcome::Applied(_)), "{transition:?}: {outcome:?}");
}

/// Stores a task created an hour ago that is RECEIVED after `attempts` failed attempts and due
/// to be dispatched `due_in` seconds from now (negative: in the past).
async fn received(app: &App<MemoryStore, Topic>, attempts: u32, due_in: i64) -> Task {
    let created = seconds_from_now(-3_600);
    let expires_at = created.plus_seconds(TASK_TTL).as_epoch_seconds();
    let mut task = Task::received(ClientId::parse("alpha").unwrap(), created, expires_at);
    let payload = Content::Inline(json!({"n": 1}));
    if attempts == 0 {
        task.due_at = seconds_from_now(due_in);
        app.store.insert(&task, &payload, expires_at).await.unwrap();
        return task;
    }
    app.store.insert(&task, &payload, expires_at).await.unwrap();
    for attempt in 1..=attempts {
        let at = created.plus_seconds(u64::from(attempt) * 60);
        apply(&app.store, Transition::start(&task.task_id, attempt, token::digest(&format!("t{attempt}")), (at, at), &TtlPolicy::default()))
            .await;
        let retry_at = if attempt == attempts { seconds_from_now(due_in) } else { at };
        apply(
            &app.store,
            Transition::retry(&task.task_id, attempt, format!("attempt {attempt}: failed"), at, retry_at),
        )
        .await;
    }
    current(app, &task.task_id).await
}

/// Stores a task created an hour ago, now IN_PROGRESS on attempt `attempt` (after `attempt − 1`
/// failed ones), its callback due `due_in` seconds from now (negative: overdue).
async fn in_progress(app: &App<MemoryStore, Topic>, attempt: u32, due_in: i64) -> Task {
    let task = received(app, attempt - 1, -3_000).await;
    let at = seconds_from_now(-1_000);
    let start = Transition::start(&task.task_id, attempt, token::digest("current"), (at, seconds_from_now(due_in)), &TtlPolicy::default());
    apply(&app.store, start).await;
    current(app, &task.task_id).await
}

async fn current(app: &App<MemoryStore, Topic>, task_id: &TaskId) -> Task {
    app.store.get(task_id).await.unwrap().unwrap()
}

fn message(task: &Task, attempt: u32) -> DispatchMessage {
    DispatchMessage { task_id: task.task_id.to_string(), attempt }
}

#[tokio::test]
async fn an_overdue_attempt_is_put_back_for_another() {
    let (app, events) = app();
    let task = in_progress(&app, 1, -5).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, json!({"timed_out_retried": 1, "timed_out_failed": 0, "dispatched": 0, "dispatch_failures": 0}));
    let stored = current(&app, &task.task_id).await;
    assert_eq!(stored.status, TaskStatus::Received);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error, None);
    assert_eq!(stored.expires_at, task.expires_at, "still an unfinished task");
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    let reason = "attempt 1: no callback within 100 s";
    assert_eq!(
        stored.history[task.history.len()..],
        [HistoryEntry { status: TaskStatus::Received, at: stored.updated_at, attempt: 1, reason: Some(reason.into()) }]
    );
    // Backoff after attempt 1: half of the 10 s base delay fixed, half jitter.
    let wait = stored.due_at.millis_since(stored.updated_at);
    assert!((5_000..10_000).contains(&wait), "waits {wait} ms");
    // Not due yet, so not dispatched in the same run.
    assert_eq!(app.publisher.published(), []);
    assert_eq!(events.events(), [TaskEvent::Retried]);
}

#[tokio::test]
async fn an_overdue_last_attempt_fails_the_task() {
    let (app, events) = app();
    let task = in_progress(&app, MAX_ATTEMPTS, -5).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 1, "dispatched": 0, "dispatch_failures": 0}));
    let stored = current(&app, &task.task_id).await;
    let reason = "gave up after 3 attempts; last: no callback within 100 s";
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.attempts, 3);
    assert_eq!(stored.error.as_deref(), Some(reason));
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.due_at, stored.updated_at);
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(
        stored.history.last(),
        Some(&HistoryEntry {
            status: TaskStatus::Failed,
            at: stored.updated_at,
            attempt: 3,
            reason: Some(reason.into())
        })
    );
    assert_eq!(events.events(), [TaskEvent::finished(&stored)], "the latency runs from creation to the failure");
}

#[tokio::test]
async fn a_replayed_task_times_out_within_its_new_series() {
    let (app, _) = app();
    // Three attempts, given up, replayed by its owner, attempt 4 (the new series' first) overdue.
    let task = in_progress(&app, MAX_ATTEMPTS, -5).await;
    handle(&app, scheduled()).await.unwrap();
    let ttl = app.policies.ttl;
    apply(&app.store, Transition::replay(&task.task_id, MAX_ATTEMPTS, Timestamp::now(), &ttl)).await;
    let at = Timestamp::now();
    apply(&app.store, Transition::start(&task.task_id, 4, token::digest("t4"), (at, seconds_from_now(-1)), &TtlPolicy::default())).await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer["timed_out_retried"], 1);
    let stored = current(&app, &task.task_id).await;
    assert_eq!((stored.status, stored.attempts, stored.series_start), (TaskStatus::Received, 4, 3));
    assert_eq!(stored.history.last().unwrap().reason.as_deref(), Some("attempt 4: no callback within 100 s"));
}

#[tokio::test]
async fn an_attempt_within_its_deadline_is_left_alone() {
    let (app, events) = app();
    let task = in_progress(&app, 1, 30).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 0, "dispatched": 0, "dispatch_failures": 0}));
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_heartbeat_keeps_an_attempt_alive() {
    let (app, _) = app();
    let task = in_progress(&app, 1, -5).await;
    // The service reported it is still working: the deadline moved past now.
    let now = Timestamp::now();
    let beat = Transition::heartbeat(&task.task_id, 1, token::digest("current"), (now, now.plus_seconds(CALLBACK_TIMEOUT_SECONDS)), &TtlPolicy::default());
    apply(&app.store, beat).await;
    let alive = current(&app, &task.task_id).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer["timed_out_retried"], 0);
    assert_eq!(current(&app, &task.task_id).await, alive);
}

#[tokio::test]
async fn received_tasks_due_longer_than_the_grace_are_dispatched() {
    let (app, events) = app();
    let never_dispatched = received(&app, 0, -60).await;
    let retry_due = received(&app, 1, -45).await;
    let replayed_due = received(&app, 2, -40).await;
    let task = received(&app, 0, -DISPATCH_GRACE_SECONDS - 1).await;
    let answer = handle(&app, scheduled()).await.unwrap();

    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 0, "dispatched": 4, "dispatch_failures": 0}));
    // Earliest due first; the attempt is the one after those made.
    assert_eq!(
        app.publisher.published(),
        [message(&never_dispatched, 1), message(&retry_due, 2), message(&replayed_due, 3), message(&task, 1)]
    );
    // Dispatching changes nothing: the caller starts the attempt.
    for task in [&never_dispatched, &retry_due, &replayed_due, &task] {
        assert_eq!(&current(&app, &task.task_id).await, task);
    }
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn received_tasks_within_the_grace_or_not_yet_due_are_not_dispatched() {
    let (app, _) = app();
    // The dispatcher handles these (or the backoff has not ended).
    received(&app, 0, -10).await;
    received(&app, 0, -(DISPATCH_GRACE_SECONDS - 5)).await;
    received(&app, 1, 5).await;
    received(&app, 2, 3_600).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 0, "dispatched": 0, "dispatch_failures": 0}));
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn finished_tasks_are_not_touched() {
    let (app, events) = app();
    let done = in_progress(&app, 1, -50).await;
    let at = Timestamp::now();
    let finish = Transition::finish(
        &done.task_id,
        1,
        token::digest("current"),
        Outcome::Succeeded { result: Content::Inline(json!(1)) },
        at,
        &app.policies.ttl,
    );
    apply(&app.store, finish).await;
    let failed = in_progress(&app, 1, -50).await;
    let give_up =
        Transition::give_up(&failed.task_id, TaskStatus::InProgress, Some(1), "no", at, &app.policies.ttl).unwrap();
    apply(&app.store, give_up).await;
    let (done, failed) = (current(&app, &done.task_id).await, current(&app, &failed.task_id).await);

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 0, "dispatched": 0, "dispatch_failures": 0}));
    assert_eq!(current(&app, &done.task_id).await, done);
    assert_eq!(current(&app, &failed.task_id).await, failed);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn one_run_does_all_of_it_and_answers_the_counts() {
    let (app, events) = app();
    let retried = in_progress(&app, 1, -5).await;
    let failed = in_progress(&app, MAX_ATTEMPTS, -20).await;
    let running = in_progress(&app, 2, 50).await;
    let due = received(&app, 0, -120).await;
    let retry_due = received(&app, 1, -90).await;
    let fresh = received(&app, 0, -1).await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 1, "timed_out_failed": 1, "dispatched": 2, "dispatch_failures": 0}));
    assert_eq!(app.publisher.published(), [message(&due, 1), message(&retry_due, 2)]);
    assert_eq!(current(&app, &retried.task_id).await.status, TaskStatus::Received);
    assert_eq!(current(&app, &failed.task_id).await.status, TaskStatus::Failed);
    assert_eq!(current(&app, &running.task_id).await, running);
    assert_eq!(current(&app, &fresh.task_id).await, fresh);
    let failed_now = current(&app, &failed.task_id).await;
    assert_eq!(events.events(), [TaskEvent::Retried, TaskEvent::finished(&failed_now)]);
}

#[tokio::test]
async fn a_run_takes_at_most_a_batch_of_each_kind() {
    let (app, events) = app_with(Topic::default(), 1);
    let first_overdue = in_progress(&app, 1, -60).await;
    let second_overdue = in_progress(&app, 1, -30).await;
    let first_due = received(&app, 0, -300).await;
    let second_due = received(&app, 0, -200).await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 1, "timed_out_failed": 0, "dispatched": 1, "dispatch_failures": 0}));
    assert_eq!(current(&app, &first_overdue.task_id).await.status, TaskStatus::Received);
    assert_eq!(current(&app, &second_overdue.task_id).await, second_overdue, "left for the next run");
    assert_eq!(app.publisher.published(), [message(&first_due, 1)]);
    assert_eq!(events.events(), [TaskEvent::Retried]);

    // The caller starts the dispatched task; the next run takes the rest.
    let at = Timestamp::now();
    apply(&app.store, Transition::start(&first_due.task_id, 1, token::digest("t"), (at, at.plus_seconds(100)), &TtlPolicy::default())).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 1, "timed_out_failed": 0, "dispatched": 1, "dispatch_failures": 0}));
    assert_eq!(current(&app, &second_overdue.task_id).await.status, TaskStatus::Received);
    assert_eq!(app.publisher.published(), [message(&first_due, 1), message(&second_due, 1)]);
    assert_eq!(events.events(), [TaskEvent::Retried, TaskEvent::Retried]);
}

#[tokio::test]
async fn refused_dispatches_are_counted_and_do_not_fail_the_run() {
    let (app, _) = app_with(Topic { refuse: true, ..Topic::default() }, 100);
    let due = received(&app, 0, -60).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, json!({"timed_out_retried": 0, "timed_out_failed": 0, "dispatched": 0, "dispatch_failures": 1}));
    assert_eq!(app.publisher.published(), [message(&due, 1)]);
    assert_eq!(current(&app, &due.task_id).await, due, "the next run tries again");
}

#[test]
fn the_summary_counts_each_kind() {
    let report = SweepReport {
        timed_out_retried: vec![TaskId::generate(), TaskId::generate()],
        timed_out_failed: vec![Task::received(
            taskfleet_core::ClientId::parse("c").unwrap(),
            Timestamp::from_millis(0),
            1,
        )],
        dispatched: 7,
        dispatch_failures: 3,
    };
    assert_eq!(
        summary(&report),
        json!({"timed_out_retried": 2, "timed_out_failed": 1, "dispatched": 7, "dispatch_failures": 3})
    );
}

/// A store that is down.
struct Down;

impl TaskStore for Down {
    async fn insert(&self, _: &Task, _: &Content, _: i64) -> Result<(), StoreError> {
        Err(down())
    }
    async fn get(&self, _: &TaskId) -> Result<Option<Task>, StoreError> {
        Err(down())
    }
    async fn payload(&self, _: &TaskId) -> Result<Option<Content>, StoreError> {
        Err(down())
    }
    async fn apply(&self, _: &Transition) -> Result<WriteOutcome, StoreError> {
        Err(down())
    }
    async fn claim(&self, _: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>, StoreError> {
        Err(down())
    }
    async fn count(&self, _: TaskStatus, _: Option<Timestamp>, _: Option<Timestamp>) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn earliest_due(&self, _: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        Err(down())
    }
    async fn list(
        &self,
        _: &ClientId,
        _: Option<TaskStatus>,
        _: usize,
        _: Option<&ListPosition>,
        _: Timestamp,
    ) -> Result<ListPage, StoreError> {
        Err(down())
    }
    async fn due(&self, _: TaskStatus, _: Timestamp, _: usize) -> Result<Vec<DueTask>, StoreError> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("ProvisionedThroughputExceededException".into())
}

#[tokio::test]
async fn a_store_that_is_down_fails_the_run_for_lambda_to_report() {
    let app = App {
        store: Down,
        publisher: Topic::default(),
        policies: policies(),
        batch: 10,
        events: Arc::new(RecordedEvents::default()),
    };
    let error = handle(&app, scheduled()).await.unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "StoreUnavailable");
    assert_eq!(diagnostic.error_message, "storage is unavailable: ProvisionedThroughputExceededException");
    assert_eq!(app.publisher.published(), []);
}
