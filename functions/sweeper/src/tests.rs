use super::*;
use taskfleet_core::TaskStatus;

use lambda_runtime::Context;
use serde_json::json;
use taskfleet_core::blob::Content;
use taskfleet_core::lifecycle::{Outcome, Transition};
use taskfleet_core::memory::{MemoryStore, RecordedEvents};
use taskfleet_core::ports::{DueTask, IdempotencyRecord, ListPage, ListPosition, WriteOutcome};
use taskfleet_core::retry::RetryPolicy;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token;
use taskfleet_core::{ClientId, Task, TaskId, TtlPolicy};

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

type TestApp = App<MemoryStore>;

fn app_with(batch: usize) -> (TestApp, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App { store: MemoryStore::new(), policies: policies(), batch, events: events.clone() };
    (app, events)
}

fn app() -> (TestApp, Arc<RecordedEvents>) {
    app_with(100)
}

/// The scheduled event, in an invocation that must end `millis` from now.
fn scheduled_ending_in(millis: i64) -> LambdaEvent<EventBridgeEvent> {
    let mut context = Context::default();
    context.deadline = u64::try_from(Timestamp::now().as_millis() + millis).unwrap();
    LambdaEvent::new(serde_json::from_str(SCHEDULED_EVENT).unwrap(), context)
}

/// The scheduled event, in an invocation with a minute to go.
fn scheduled() -> LambdaEvent<EventBridgeEvent> {
    scheduled_ending_in(60_000)
}

fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + seconds * 1000)
}

async fn apply<S: TaskStore>(store: &S, transition: Transition) {
    let outcome = store.apply(&transition).await.unwrap();
    assert!(matches!(outcome, WriteOutcome::Applied(_)), "{transition:?}: {outcome:?}");
}

/// What a run answers.
fn counts(retried: usize, failed: usize, expired: usize, redispatched: usize, skipped: usize) -> serde_json::Value {
    json!({
        "timed_out_retried": retried,
        "timed_out_failed": failed,
        "expired": expired,
        "redispatched": redispatched,
        "skipped": skipped,
        "out_of_time": false
    })
}

/// Stores a task created `age` seconds ago that is RECEIVED after `attempts` failed attempts
/// and due to start `due_in` seconds from now (negative: in the past).
async fn received_aged(app: &TestApp, age: i64, attempts: u32, due_in: i64) -> Task {
    let created = seconds_from_now(-age);
    let ttl = app.policies.ttl;
    let expires_at = ttl.new_task_expiry(created);
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
        let digest = token::digest(&format!("t{attempt}"));
        apply(&app.store, Transition::start(&task.task_id, attempt, digest, (at, at), &ttl)).await;
        let retry_at = if attempt == attempts { seconds_from_now(due_in) } else { at };
        apply(
            &app.store,
            Transition::retry(&task.task_id, attempt, format!("attempt {attempt}: failed"), at, retry_at),
        )
        .await;
    }
    current(app, &task.task_id).await
}

/// A task created an hour ago, RECEIVED after `attempts` failed attempts, due `due_in` s from now.
async fn received(app: &TestApp, attempts: u32, due_in: i64) -> Task {
    received_aged(app, 3_600, attempts, due_in).await
}

/// Stores a task created an hour ago, now IN_PROGRESS on attempt `attempt` (after `attempt − 1`
/// failed ones), its callback due `due_in` seconds from now (negative: overdue).
async fn in_progress(app: &TestApp, attempt: u32, due_in: i64) -> Task {
    let task = received(app, attempt - 1, -3_000).await;
    let at = seconds_from_now(-1_000);
    let start = Transition::start(
        &task.task_id,
        attempt,
        token::digest("current"),
        (at, seconds_from_now(due_in)),
        &app.policies.ttl,
    );
    apply(&app.store, start).await;
    current(app, &task.task_id).await
}

/// Tasks whose TTL passed while they were active (created two days ago, with a one-day TTL):
/// one never started, one whose attempt started a minute after it was created.
async fn expired_while_active(app: &TestApp) -> (Task, Task) {
    let waiting = received_aged(app, 2 * 86_400, 0, -2 * 86_400).await;
    let never_finished = received_aged(app, 2 * 86_400, 0, -2 * 86_400).await;
    let at = never_finished.created_at.plus_seconds(60);
    let deadline = at.plus_seconds(CALLBACK_TIMEOUT_SECONDS);
    let start = Transition::start(&never_finished.task_id, 1, token::digest("lost"), (at, deadline), &app.policies.ttl);
    apply(&app.store, start).await;
    let running = current(app, &never_finished.task_id).await;
    let now = Timestamp::now();
    assert!(waiting.is_expired(now) && running.is_expired(now), "both outlived their TTL");
    (waiting, running)
}

async fn current(app: &TestApp, task_id: &TaskId) -> Task {
    app.store.get(task_id).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_attempt_overdue_past_the_grace_is_put_back_for_another_at_once() {
    let (app, events) = app();
    let task = in_progress(&app, 1, -DISPATCH_GRACE_SECONDS - 30).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, counts(1, 0, 0, 0, 0));
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
    // It has waited its whole callback timeout: due again at once (the stream starts it).
    assert_eq!(stored.due_at, stored.updated_at);
    assert_eq!(events.events(), [TaskEvent::Retried]);
}

#[tokio::test]
async fn an_attempt_within_the_grace_after_its_deadline_is_left_to_its_timer() {
    let (app, events) = app();
    let just_overdue = in_progress(&app, 1, -5).await;
    let nearly_lost = in_progress(&app, 2, -(DISPATCH_GRACE_SECONDS - 5)).await;
    let running = in_progress(&app, 1, 30).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(0, 0, 0, 0, 0));
    for task in [&just_overdue, &nearly_lost, &running] {
        assert_eq!(&current(&app, &task.task_id).await, task);
    }
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_overdue_last_attempt_fails_the_task() {
    let (app, events) = app();
    let task = in_progress(&app, MAX_ATTEMPTS, -60).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, counts(0, 1, 0, 0, 0));
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
    let task = in_progress(&app, MAX_ATTEMPTS, -60).await;
    handle(&app, scheduled()).await.unwrap();
    let ttl = app.policies.ttl;
    apply(&app.store, Transition::replay(&task.task_id, MAX_ATTEMPTS, Timestamp::now(), &ttl)).await;
    let at = Timestamp::now();
    apply(&app.store, Transition::start(&task.task_id, 4, token::digest("t4"), (at, seconds_from_now(-60)), &ttl))
        .await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer["timed_out_retried"], 1);
    let stored = current(&app, &task.task_id).await;
    assert_eq!((stored.status, stored.attempts, stored.series_start), (TaskStatus::Received, 4, 3));
    assert_eq!(stored.history.last().unwrap().reason.as_deref(), Some("attempt 4: no callback within 100 s"));
}

#[tokio::test]
async fn a_heartbeat_keeps_an_attempt_alive() {
    let (app, events) = app();
    let task = in_progress(&app, 1, -60).await;
    // The service reported it is still working: the deadline moved past now.
    let now = Timestamp::now();
    let deadline = now.plus_seconds(CALLBACK_TIMEOUT_SECONDS);
    let beat = Transition::heartbeat(&task.task_id, 1, token::digest("current"), (now, deadline), &app.policies.ttl);
    apply(&app.store, beat).await;
    let alive = current(&app, &task.task_id).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(0, 0, 0, 0, 0));
    assert_eq!(current(&app, &task.task_id).await, alive);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn received_tasks_due_past_the_grace_are_made_due_again_with_a_lease() {
    let (app, events) = app();
    let never_started = received(&app, 0, -60).await;
    let retry_due = received(&app, 1, -45).await;
    let replayed_due = received(&app, 2, -40).await;
    let just_past_the_grace = received(&app, 0, -DISPATCH_GRACE_SECONDS - 1).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, counts(0, 0, 0, 4, 0));
    // Due now, so the stream has the dispatcher send the start again; nothing else changes:
    // the caller starts the attempt.
    for task in [&never_started, &retry_due, &replayed_due, &just_past_the_grace] {
        let stored = current(&app, &task.task_id).await;
        assert!(before <= stored.due_at && stored.due_at <= after, "{:?}", stored.due_at);
        assert_eq!(stored, Task { due_at: stored.due_at, updated_at: stored.updated_at, ..task.clone() });
    }
    assert_eq!(events.events(), []);

    // The new due time is a lease: a run within the grace leaves them to their new timers.
    let leased = current(&app, &never_started.task_id).await;
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(0, 0, 0, 0, 0));
    assert_eq!(current(&app, &never_started.task_id).await, leased);
}

#[tokio::test]
async fn received_tasks_within_the_grace_or_not_yet_due_are_left_alone() {
    let (app, _) = app();
    // Their start timers have them (or the backoff has not ended).
    let tasks = [
        received(&app, 0, -10).await,
        received(&app, 0, -(DISPATCH_GRACE_SECONDS - 5)).await,
        received(&app, 1, 5).await,
        received(&app, 2, 3_600).await,
    ];
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(0, 0, 0, 0, 0));
    for task in &tasks {
        assert_eq!(&current(&app, &task.task_id).await, task);
    }
}

#[tokio::test]
async fn finished_tasks_are_not_touched() {
    let (app, events) = app();
    let done = in_progress(&app, 1, -500).await;
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
    let failed = in_progress(&app, 1, -500).await;
    let give_up =
        Transition::give_up(&failed.task_id, TaskStatus::InProgress, Some(1), "no", at, &app.policies.ttl).unwrap();
    apply(&app.store, give_up).await;
    let (done, failed) = (current(&app, &done.task_id).await, current(&app, &failed.task_id).await);

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(0, 0, 0, 0, 0));
    assert_eq!(current(&app, &done.task_id).await, done);
    assert_eq!(current(&app, &failed.task_id).await, failed);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn tasks_whose_ttl_passed_while_active_fail_as_expired_and_leave_the_index() {
    let (app, events) = app();
    let (waiting, running) = expired_while_active(&app).await;
    let before = Timestamp::now();
    let answer = handle(&app, scheduled()).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(answer, counts(0, 0, 2, 0, 0));
    let mut finished = Vec::new();
    for (task, attempts) in [(&waiting, 0), (&running, 1)] {
        let stored = current(&app, &task.task_id).await;
        assert_eq!((stored.status, stored.attempts), (TaskStatus::Failed, attempts));
        assert_eq!(stored.error.as_deref(), Some("expired"));
        assert!(before <= stored.updated_at && stored.updated_at <= after);
        assert_eq!(
            stored.history.last(),
            Some(&HistoryEntry {
                status: TaskStatus::Failed,
                at: stored.updated_at,
                attempt: attempts,
                reason: Some("expired".into())
            })
        );
        finished.push(TaskEvent::finished(&stored));
    }
    // The running one is found first (attempts before starts), then the waiting one.
    finished.reverse();
    assert_eq!(events.events(), finished);
    // Finished, they are out of the status index: no gauge counts them, no run finds them.
    assert!(app.store.due(TaskStatus::Received, after, 10).await.unwrap().is_empty());
    assert!(app.store.due(TaskStatus::InProgress, after, 10).await.unwrap().is_empty());
    assert_eq!(handle(&app, scheduled()).await.unwrap(), counts(0, 0, 0, 0, 0));
}

#[tokio::test]
async fn a_task_that_cannot_be_written_is_skipped_and_the_next_run_moves_it() {
    let (app, events) = app();
    let first = in_progress(&app, 1, -90).await;
    let second = in_progress(&app, 1, -60).await;
    let due = received(&app, 0, -60).await;
    // The first write of the run (the earliest overdue attempt's) is throttled.
    app.store.fail_writes(0, 1);
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(1, 0, 0, 1, 1), "the run goes on past it");
    assert_eq!(current(&app, &first.task_id).await, first, "left as it was");
    assert_eq!(current(&app, &second.task_id).await.status, TaskStatus::Received);
    assert_ne!(current(&app, &due.task_id).await.due_at, due.due_at);

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(1, 0, 0, 0, 0));
    assert_eq!(current(&app, &first.task_id).await.status, TaskStatus::Received);
    assert_eq!(events.events(), [TaskEvent::Retried, TaskEvent::Retried]);
}

#[tokio::test]
async fn a_run_stops_before_its_invocations_deadline() {
    for (ends_in, why) in [(0, "no time left"), (2_000, "within the margin"), (-5_000, "already past")] {
        let (app, events) = app();
        let overdue = in_progress(&app, 1, -60).await;
        let due = received(&app, 0, -60).await;
        let answer = handle(&app, scheduled_ending_in(ends_in)).await.unwrap();
        assert_eq!(answer["out_of_time"], true, "{why}");
        assert_eq!(
            answer,
            json!({
                "timed_out_retried": 0, "timed_out_failed": 0, "expired": 0, "redispatched": 0, "skipped": 0,
                "out_of_time": true
            }),
            "{why}"
        );
        assert_eq!(current(&app, &overdue.task_id).await, overdue, "{why}");
        assert_eq!(current(&app, &due.task_id).await, due, "{why}");
        assert_eq!(events.events(), [], "{why}");
    }
    assert!(DEADLINE_MARGIN > Duration::from_secs(2));
}

#[tokio::test]
async fn one_run_does_all_of_it_and_answers_the_counts() {
    let (app, events) = app();
    let retried = in_progress(&app, 1, -50).await;
    let failed = in_progress(&app, MAX_ATTEMPTS, -60).await;
    let running = in_progress(&app, 2, 50).await;
    let due = received(&app, 0, -120).await;
    let retry_due = received(&app, 1, -90).await;
    let fresh = received(&app, 0, -1).await;
    let (waiting_expired, running_expired) = expired_while_active(&app).await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(1, 1, 2, 2, 0));
    assert_eq!(current(&app, &retried.task_id).await.status, TaskStatus::Received);
    let failed_now = current(&app, &failed.task_id).await;
    assert_eq!(failed_now.status, TaskStatus::Failed);
    assert_eq!(current(&app, &running.task_id).await, running);
    assert_ne!(current(&app, &due.task_id).await.due_at, due.due_at);
    assert_ne!(current(&app, &retry_due.task_id).await.due_at, retry_due.due_at);
    assert_eq!(current(&app, &fresh.task_id).await, fresh);
    let (waiting_expired, running_expired) =
        (current(&app, &waiting_expired.task_id).await, current(&app, &running_expired.task_id).await);
    assert_eq!(
        events.events(),
        [
            TaskEvent::Retried,
            TaskEvent::finished(&failed_now),
            TaskEvent::finished(&running_expired),
            TaskEvent::finished(&waiting_expired),
        ]
    );
}

#[tokio::test]
async fn a_run_takes_at_most_a_batch_of_each_kind() {
    let (app, events) = app_with(1);
    let first_overdue = in_progress(&app, 1, -90).await;
    let second_overdue = in_progress(&app, 1, -60).await;
    let first_due = received(&app, 0, -300).await;
    let second_due = received(&app, 0, -200).await;

    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(1, 0, 0, 1, 0));
    assert_eq!(current(&app, &first_overdue.task_id).await.status, TaskStatus::Received);
    assert_eq!(current(&app, &second_overdue.task_id).await, second_overdue, "left for the next run");
    assert_ne!(current(&app, &first_due.task_id).await.due_at, first_due.due_at);
    assert_eq!(current(&app, &second_due.task_id).await, second_due, "left for the next run");
    assert_eq!(events.events(), [TaskEvent::Retried]);

    // The leased task is left alone within the grace; the next run takes the rest. (The timed
    // out attempt is RECEIVED and due now: its start is the stream's.)
    let answer = handle(&app, scheduled()).await.unwrap();
    assert_eq!(answer, counts(1, 0, 0, 1, 0));
    assert_eq!(current(&app, &second_overdue.task_id).await.status, TaskStatus::Received);
    assert_ne!(current(&app, &second_due.task_id).await.due_at, second_due.due_at);
    assert_eq!(events.events(), [TaskEvent::Retried, TaskEvent::Retried]);
}

#[test]
fn the_summary_counts_each_kind() {
    let task = Task::received(ClientId::parse("c").unwrap(), Timestamp::from_millis(0), 1);
    let report = SweepReport {
        timed_out_retried: vec![TaskId::generate(), TaskId::generate()],
        timed_out_failed: vec![task.clone()],
        expired: vec![task.clone(), task.clone(), task],
        redispatched: 7,
        skipped: vec![(TaskId::generate(), StoreError::Unavailable("throttled".into()))],
        out_of_time: true,
    };
    assert_eq!(
        summary(&report),
        json!({
            "timed_out_retried": 2,
            "timed_out_failed": 1,
            "expired": 3,
            "redispatched": 7,
            "skipped": 1,
            "out_of_time": true
        })
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
    let events = Arc::new(RecordedEvents::default());
    let app = App { store: Down, policies: policies(), batch: 10, events: events.clone() };
    let error = handle(&app, scheduled()).await.unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "StoreUnavailable");
    assert_eq!(diagnostic.error_message, "storage is unavailable: ProvisionedThroughputExceededException");
    assert_eq!(events.events(), []);
}
