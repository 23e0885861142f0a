use super::*;
use taskfleet_core::dispatch::DispatchMessage;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_core::blob::{self, Content, DEFAULT_INLINE_MAX_BYTES};
use taskfleet_core::lifecycle::Transition;
use taskfleet_core::memory::{Call, Intercepted, Interceptor, MemoryQueue, MemoryStore, RecordedEvents};
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::{Job, WriteOutcome};
use taskfleet_core::retry::RetryPolicy;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token;
use taskfleet_core::{ClientId, ExternalError, Task, TaskId, TtlPolicy};

const CALLBACK_BASE: &str = "https://hooks.example.com/prod";
const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;
const CALLBACK_TIMEOUT_SECONDS: u64 = 600;
const MAX_ATTEMPTS: u32 = 3;
const CONCURRENCY: usize = 4;

/// A batch from the jobs queue as Lambda delivers it, from aws_lambda_events'
/// `example-sqs-event.json` with the jobs queue's ARN and the message group (the client) among
/// the system attributes. `body`, `messageId` and `MessageGroupId` are set per test; the
/// original fixture's body ("Message Body") is kept here as an example of an unreadable one.
const SQS_EVENT: &str = r#"{
  "Records": [
    {
      "messageId" : "MessageID_1",
      "receiptHandle" : "MessageReceiptHandle",
      "body" : "Message Body",
      "md5OfBody" : "fce0ea8dd236ccb3ed9b37dae260836f",
      "md5OfMessageAttributes" : null,
      "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:taskfleet-jobs",
      "eventSource": "aws:sqs",
      "awsRegion": "us-east-1",
      "attributes" : {
        "ApproximateReceiveCount" : "1",
        "SentTimestamp" : "1520621625029",
        "SenderId" : "AROAIWPX5BD2BHG722MW4:sender",
        "ApproximateFirstReceiveTimestamp" : "1520621634884",
        "MessageGroupId" : "alpha"
      },
      "messageAttributes" : {}
    }
  ]
}"#;

/// An external service that records each job exactly as it would be POSTed (the serialized
/// `Job`) and answers as told, one answer per call (the last one repeats). It can take a while
/// to answer, and counts how many jobs it had in hand at once.
#[derive(Default)]
struct Service {
    answers: Vec<Option<ExternalError>>,
    jobs: Mutex<Vec<Value>>,
    pause: Duration,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl Service {
    fn refusing(error: ExternalError) -> Self {
        Self { answers: vec![Some(error)], ..Self::default() }
    }

    fn answering(answers: Vec<Option<ExternalError>>) -> Self {
        Self { answers, ..Self::default() }
    }

    fn taking(pause: Duration) -> Self {
        Self { pause, ..Self::default() }
    }

    fn jobs(&self) -> Vec<Value> {
        self.jobs.lock().unwrap().clone()
    }
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        let answer = {
            let mut jobs = self.jobs.lock().unwrap();
            jobs.push(serde_json::to_value(job).unwrap());
            self.answers.get(jobs.len() - 1).or(self.answers.last()).cloned().flatten()
        };
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer.map_or(Ok(()), Err)
    }
}

/// Makes the in-memory store unavailable for the tasks it is told to be (every request about
/// them but a claim fails as a throttled DynamoDB's would).
#[derive(Default)]
struct DownFor(Mutex<Vec<TaskId>>);

impl Interceptor for DownFor {
    fn before(&self, call: Call<'_>) -> Result<(), StoreError> {
        if !matches!(call, Call::Claim(_)) && self.0.lock().unwrap().contains(call.task_id()) {
            return Err(StoreError::Unavailable(format!("{}: ProvisionedThroughputExceededException", call.task_id())));
        }
        Ok(())
    }
}

type Store = Intercepted<DownFor>;

fn policies() -> Policies {
    Policies {
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
        retry: RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(120),
        },
        callback_timeout: Duration::from_secs(CALLBACK_TIMEOUT_SECONDS),
        dispatch_grace: Duration::from_secs(30),
    }
}

type TestApp = App<Store, Service, MemoryBlobs, MemoryQueue, Arc<MemoryStore>>;

/// An instance of the caller whose fleet keeps its hold in `hold`.
fn instance(service: Service, hold: Arc<MemoryStore>) -> (TestApp, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App {
        store: Store::default(),
        blobs: Blobs::new(MemoryBlobs::new(), DEFAULT_INLINE_MAX_BYTES),
        service,
        callback_base: CALLBACK_BASE.to_owned(),
        policies: policies(),
        events: events.clone(),
        queue: MemoryQueue::default(),
        hold: HoldGate::new(hold),
        concurrency: CONCURRENCY,
    };
    (app, events)
}

fn app(service: Service) -> (TestApp, Arc<RecordedEvents>) {
    instance(service, Arc::new(MemoryStore::new()))
}

/// A batch from the jobs queue carrying these bodies, one message each, in the message group
/// `group` (none if `None`); message i has id `MessageID_i`.
fn sqs_event_in(group: Option<&str>, bodies: &[&str]) -> LambdaEvent<SqsEvent> {
    let template: Value = serde_json::from_str(SQS_EVENT).unwrap();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            let mut record = template["Records"][0].clone();
            record["body"] = json!(body);
            record["messageId"] = json!(message_id(index));
            match group {
                Some(group) => record["attributes"]["MessageGroupId"] = json!(group),
                None => {
                    record["attributes"].as_object_mut().unwrap().remove("MessageGroupId");
                }
            }
            record
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    LambdaEvent::new(event, Context::default())
}

/// A batch in the client's message group, as the dispatcher sends them.
fn sqs_event(bodies: &[&str]) -> LambdaEvent<SqsEvent> {
    sqs_event_in(Some("alpha"), bodies)
}

fn message_id(index: usize) -> String {
    format!("MessageID_{index}")
}

fn failures(answer: &SqsBatchResponse) -> Vec<String> {
    let mut failed: Vec<String> = answer.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    failed.sort();
    failed
}

fn timer(task_id: &TaskId, attempt: u32, step: Step, due_at: Timestamp) -> DispatchMessage {
    DispatchMessage { task_id: task_id.to_string(), attempt, step, due_at: due_at.as_millis() }
}

fn body(message: &DispatchMessage) -> String {
    serde_json::to_string(message).unwrap()
}

/// The start of attempt `attempt`, due now.
fn start(task_id: &TaskId, attempt: u32) -> String {
    body(&timer(task_id, attempt, Step::Start, Timestamp::now()))
}

/// The deadline timer of the task's current attempt, due at its callback deadline.
fn deadline_of(task: &Task) -> String {
    body(&timer(&task.task_id, task.attempts, Step::Deadline, task.due_at))
}

fn millis_from_now(millis: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + millis)
}

/// A RECEIVED task created five seconds ago, not stored yet.
fn new_task() -> Task {
    let created = millis_from_now(-5_000);
    Task::received(ClientId::parse("alpha").unwrap(), created, created.plus_seconds(TASK_TTL).as_epoch_seconds())
}

/// Stores `task` with its payload as ingest does.
async fn store(app: &TestApp, task: &Task, payload: Content) {
    app.store.insert(task, &payload, app.policies.ttl.payload_expiry(task.created_at)).await.unwrap();
}

/// A stored RECEIVED task with a small payload, kept inline.
async fn received(app: &TestApp) -> Task {
    let task = new_task();
    store(app, &task, Content::Inline(json!({"job": "resize", "sizes": [64, 128], "opts": {"keep": true}}))).await;
    task
}

async fn apply(app: &TestApp, transition: Transition) {
    let outcome = app.store.apply(&transition).await.unwrap();
    assert!(matches!(outcome, WriteOutcome::Applied(_)), "{transition:?}: {outcome:?}");
}

/// A stored task running attempt `attempt` (the earlier ones of its series failed), its
/// callback due at `deadline`.
async fn running(app: &TestApp, attempt: u32, deadline: Timestamp) -> Task {
    let task = received(app).await;
    let (now, ttl) = (Timestamp::now(), app.policies.ttl);
    for earlier in 1..attempt {
        let digest = token::digest(&format!("token-{earlier}"));
        apply(app, Transition::start(&task.task_id, earlier, digest, (now, now), &ttl)).await;
        apply(app, Transition::retry(&task.task_id, earlier, format!("attempt {earlier}: refused"), now, now)).await;
    }
    let digest = token::digest(&format!("token-{attempt}"));
    apply(app, Transition::start(&task.task_id, attempt, digest, (now, deadline), &ttl)).await;
    current(app, &task).await
}

async fn current(app: &TestApp, task: &Task) -> Task {
    app.store.get(&task.task_id).await.unwrap().unwrap()
}

/// The callback URL's token, checking the URL's exact shape for `task` and `attempt`.
fn token_in(job: &Value, task: &Task, attempt: u32) -> String {
    let url = job["callback_url"].as_str().unwrap();
    let prefix = format!("{CALLBACK_BASE}/callbacks/{}?attempt={attempt}&token=", task.task_id);
    let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
    assert!(token::is_well_formed(token), "{url}");
    token.to_owned()
}

fn last_entry(task: &Task) -> (TaskStatus, u32, Option<&str>) {
    let entry = task.history.last().unwrap();
    (entry.status, entry.attempt, entry.reason.as_deref())
}

fn rejected(status: u16, retry_after_seconds: Option<u64>) -> ExternalError {
    ExternalError::Rejected { status, retry_after_seconds }
}

#[tokio::test]
async fn the_fixture_event_parses_and_its_plain_text_body_is_dropped() {
    let (app, events) = app(Service::default());
    let event: SqsEvent = serde_json::from_str(SQS_EVENT).unwrap();
    assert_eq!(event.records[0].body.as_deref(), Some("Message Body"));
    assert_eq!(event.records[0].attributes["MessageGroupId"], "alpha");
    let answer = handle(&app, LambdaEvent::new(event, Context::default())).await;
    assert_eq!(failures(&answer), Vec::<String>::new(), "retrying cannot make it readable");
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(app.queue.sent(), []);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_start_timer_starts_the_attempt_and_hands_the_job_over() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let before = Timestamp::now();
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    assert_eq!(failures(&answer), Vec::<String>::new());
    let jobs = app.service.jobs();
    assert_eq!(jobs.len(), 1);
    let token = token_in(&jobs[0], &task, 1);
    assert_eq!(
        jobs[0],
        json!({
            "task_id": task.task_id.as_str(),
            "payload": {"job": "resize", "sizes": [64, 128], "opts": {"keep": true}},
            "callback_url": format!("https://hooks.example.com/prod/callbacks/{}?attempt=1&token={token}", task.task_id),
            "attempt": 1
        })
    );
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error, None);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    // The callback is due a callback timeout after the start (the dispatcher sets that timer).
    assert_eq!(stored.due_at, stored.updated_at.plus_seconds(CALLBACK_TIMEOUT_SECONDS));
    // Only the token's digest is kept.
    assert_eq!(stored.callback_tokens, BTreeMap::from([(1, token::digest(&token))]));
    assert!(!format!("{stored:?}").contains(&token), "the token itself is never stored");
    assert_eq!(
        stored.history[1..],
        [HistoryEntry { status: TaskStatus::InProgress, at: stored.updated_at, attempt: 1, reason: None }]
    );
    // Starting an attempt gives the task a task TTL from the start.
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(TASK_TTL).as_epoch_seconds());
    assert!(stored.expires_at > task.expires_at);
    assert_eq!(app.queue.sent(), [], "a timer that fired is not sent on");
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: true }]);
}

#[tokio::test]
async fn a_payload_kept_in_the_blob_store_is_read_from_there_for_the_job() {
    let (mut app, events) = app(Service::default());
    app.blobs.inline_max = 16;
    let large = json!({"job": "resize", "image": "x".repeat(64)});
    let task = new_task();
    // Kept as ingest keeps it: the blob under the payload's key, the task store only the key.
    let kept = app.blobs.keep(large.clone(), |_| blob::payload_key(&task.task_id)).await.unwrap();
    let key = format!("payloads/{}", task.task_id);
    assert_eq!(kept, Content::Stored { key: key.clone() });
    assert_eq!(app.blobs.store.keys(), [key]);
    store(&app, &task, kept).await;

    handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    let jobs = app.service.jobs();
    assert_eq!(jobs.len(), 1);
    let token = token_in(&jobs[0], &task, 1);
    assert_eq!(
        jobs[0],
        json!({
            "task_id": task.task_id.as_str(),
            "payload": large,
            "callback_url": format!("{CALLBACK_BASE}/callbacks/{}?attempt=1&token={token}", task.task_id),
            "attempt": 1
        }),
        "the job carries the payload itself, not its key"
    );
    assert_eq!(current(&app, &task).await.status, TaskStatus::InProgress);
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: true }]);
}

#[tokio::test]
async fn a_task_whose_payload_is_gone_fails_without_calling_the_service() {
    let (app, events) = app(Service::default());
    let task = new_task();
    // The task refers to a blob that is no longer there (it outlived it).
    store(&app, &task, Content::Stored { key: blob::payload_key(&task.task_id) }).await;
    assert_eq!(app.blobs.store.keys(), Vec::<String>::new());
    let before = Timestamp::now();
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    assert_eq!(failures(&answer), Vec::<String>::new(), "retrying cannot bring the payload back");
    assert_eq!(app.service.jobs(), Vec::<Value>::new(), "the service is not called");
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error.as_deref(), Some(service::PAYLOAD_GONE));
    assert_eq!(stored.error.as_deref(), Some("the task's payload is no longer stored"));
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(last_entry(&stored), (TaskStatus::Failed, 1, Some(service::PAYLOAD_GONE)));
    let latency = stored.updated_at.millis_since(stored.created_at);
    assert_eq!(events.events(), [TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(latency) }]);

    // A redelivered message changes nothing and still calls nobody.
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, stored);
}

#[tokio::test]
async fn every_attempt_gets_its_own_token() {
    let (app, _) = app(Service::answering(vec![Some(rejected(503, None)), None]));
    let task = received(&app).await;
    handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    handle(&app, sqs_event(&[&start(&task.task_id, 2)])).await;
    let jobs = app.service.jobs();
    let first = token_in(&jobs[0], &task, 1);
    let second = token_in(&jobs[1], &task, 2);
    assert_ne!(first, second);
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts), (TaskStatus::InProgress, 2));
    assert_eq!(stored.callback_tokens, BTreeMap::from([(1, token::digest(&first)), (2, token::digest(&second))]));
}

#[tokio::test]
async fn a_trailing_slash_on_the_callback_base_is_not_doubled() {
    let (mut app, _) = app(Service::default());
    app.callback_base = format!("{CALLBACK_BASE}/");
    let task = received(&app).await;
    handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    let url = app.service.jobs()[0]["callback_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{CALLBACK_BASE}/callbacks/{}?attempt=1&token=", task.task_id)), "{url}");
}

#[tokio::test]
async fn a_duplicate_message_calls_the_service_once() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let message = start(&task.task_id, 1);

    // Twice in one batch (handled at once), then redelivered in another invocation.
    let answer = handle(&app, sqs_event(&[&message, &message])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let after_first = current(&app, &task).await;
    handle(&app, sqs_event(&[&message])).await;

    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(app.service.jobs()[0]["attempt"], 1);
    assert_eq!(current(&app, &task).await, after_first);
    assert_eq!(after_first.status, TaskStatus::InProgress);
    assert_eq!(after_first.attempts, 1);
    assert_eq!(after_first.callback_tokens.len(), 1);
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: true }]);
}

#[tokio::test]
async fn an_attempt_that_does_not_follow_the_stored_count_is_skipped() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 2)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_service_asking_to_come_back_later_puts_the_task_back_for_a_retry() {
    let (app, events) = app(Service::answering(vec![Some(rejected(503, Some(30))), None]));
    let task = received(&app).await;
    let before = Timestamp::now();
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    // A refusal is recorded on the task, not retried by Lambda.
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 1);
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Received);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error, None);
    assert_eq!(stored.result, None);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    // Backoff for attempt 1 is 5-10 s; the service's Retry-After (30 s) is the floor. The
    // dispatcher sets the start of attempt 2 for then.
    assert_eq!(stored.due_at, stored.updated_at.plus_seconds(30));
    assert_eq!(last_entry(&stored), (TaskStatus::Received, 1, Some("attempt 1: the external service answered 503")));
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);
    assert_eq!(app.queue.sent(), [], "the retry's timer comes from the stream, not from here");
}

#[tokio::test]
async fn a_slow_or_unreachable_service_is_retried_with_backoff() {
    for (error, reason) in [
        (
            ExternalError::Timeout { timeout_ms: 10_000 },
            "attempt 1: the external service did not answer within 10000 ms",
        ),
        (
            ExternalError::Unreachable("connection refused".into()),
            "attempt 1: the external service could not be reached: connection refused",
        ),
        (rejected(429, None), "attempt 1: the external service answered 429"),
    ] {
        let (app, events) = app(Service::refusing(error));
        let task = received(&app).await;
        handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
        let stored = current(&app, &task).await;
        assert_eq!((stored.status, stored.attempts, stored.error.as_deref()), (TaskStatus::Received, 1, None));
        assert_eq!(last_entry(&stored), (TaskStatus::Received, 1, Some(reason)));
        // Half of the 10 s base delay fixed, half jitter.
        let wait = stored.due_at.millis_since(stored.updated_at);
        assert!((5_000..10_000).contains(&wait), "{reason}: waits {wait} ms");
        assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);
    }
}

#[tokio::test]
async fn a_client_error_fails_the_task_at_once() {
    for status in [400, 422] {
        let (app, events) = app(Service::refusing(rejected(status, None)));
        let task = received(&app).await;
        let before = Timestamp::now();
        let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
        let after = Timestamp::now();

        assert_eq!(failures(&answer), Vec::<String>::new());
        let stored = current(&app, &task).await;
        let reason = format!("attempt 1: the external service answered {status}");
        assert_eq!(stored.status, TaskStatus::Failed);
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.error.as_deref(), Some(reason.as_str()));
        assert_eq!(stored.result, None);
        assert!(before <= stored.updated_at && stored.updated_at <= after);
        assert_eq!(stored.due_at, stored.updated_at);
        assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
        assert_eq!(last_entry(&stored), (TaskStatus::Failed, 1, Some(reason.as_str())));
        let latency = stored.updated_at.millis_since(stored.created_at);
        assert!(latency >= 5_000, "{latency}");
        assert_eq!(
            events.events(),
            [
                TaskEvent::ExternalCall { accepted: false },
                TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(latency) }
            ]
        );
    }
}

#[tokio::test]
async fn the_last_attempt_of_a_series_gives_up() {
    let (app, events) = app(Service::refusing(rejected(503, None)));
    let task = received(&app).await;
    for attempt in 1..=MAX_ATTEMPTS {
        handle(&app, sqs_event(&[&start(&task.task_id, attempt)])).await;
    }
    assert_eq!(app.service.jobs().len(), 3);
    let stored = current(&app, &task).await;
    let reason = "gave up after 3 attempts; last: the external service answered 503";
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.attempts, 3);
    assert_eq!(stored.error.as_deref(), Some(reason));
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(
        stored.history.iter().map(|e| (e.status, e.attempt, e.reason.as_deref())).collect::<Vec<_>>(),
        [
            (TaskStatus::Received, 0, None),
            (TaskStatus::InProgress, 1, None),
            (TaskStatus::Received, 1, Some("attempt 1: the external service answered 503")),
            (TaskStatus::InProgress, 2, None),
            (TaskStatus::Received, 2, Some("attempt 2: the external service answered 503")),
            (TaskStatus::InProgress, 3, None),
            (TaskStatus::Failed, 3, Some(reason)),
        ]
    );
    let latency = stored.updated_at.millis_since(stored.created_at);
    assert_eq!(
        events.events(),
        [
            TaskEvent::ExternalCall { accepted: false },
            TaskEvent::Retried,
            TaskEvent::ExternalCall { accepted: false },
            TaskEvent::Retried,
            TaskEvent::ExternalCall { accepted: false },
            TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(latency) },
        ]
    );
}

#[tokio::test]
async fn a_replayed_task_gets_a_fresh_series_of_attempts() {
    let (app, _) = app(Service::refusing(rejected(503, None)));
    let task = received(&app).await;
    for attempt in 1..=MAX_ATTEMPTS {
        handle(&app, sqs_event(&[&start(&task.task_id, attempt)])).await;
    }
    let ttl = app.policies.ttl;
    apply(&app, Transition::replay(&task.task_id, MAX_ATTEMPTS, Timestamp::now(), &ttl)).await;

    // Attempt 4 is the first of the new series: refused, it is retried, not given up.
    handle(&app, sqs_event(&[&start(&task.task_id, 4)])).await;
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts, stored.series_start), (TaskStatus::Received, 4, 3));
    assert_eq!(last_entry(&stored), (TaskStatus::Received, 4, Some("attempt 4: the external service answered 503")));
    assert_eq!(token_in(&app.service.jobs()[3], &task, 4).len(), 43);
}

#[tokio::test]
async fn an_unparseable_message_is_dropped_without_failing() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let id = task.task_id.as_str();
    let due = Timestamp::now().as_millis();
    let unreadable = [
        "Hello\r\nworld!".to_owned(),
        String::new(),
        json!({"task_id": id, "attempt": 1}).to_string(),
        json!({"task_id": id, "attempt": 1, "step": "start"}).to_string(),
        json!({"task_id": id, "attempt": 0, "step": "start", "due_at": due}).to_string(),
        json!({"task_id": "not-a-task-id", "attempt": 1, "step": "start", "due_at": due}).to_string(),
        json!({"task_id": id, "attempt": 1, "step": "later", "due_at": due}).to_string(),
        json!({"task_id": id, "attempt": 1, "step": "start", "due_at": due, "extra": true}).to_string(),
    ];
    let bodies: Vec<&str> = unreadable.iter().map(String::as_str).collect();
    let answer = handle(&app, sqs_event(&bodies)).await;
    assert_eq!(failures(&answer), Vec::<String>::new(), "redelivery cannot fix a message");

    // A message with no body at all is dropped too.
    let mut event = sqs_event(&["x"]);
    event.payload.records[0].body = None;
    assert_eq!(failures(&handle(&app, event).await), Vec::<String>::new());

    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(app.queue.sent(), []);
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_unreadable_message_does_not_stop_the_others_in_the_batch() {
    let (app, _) = app(Service::default());
    let task = received(&app).await;
    let answer = handle(&app, sqs_event(&["not json", &start(&task.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(current(&app, &task).await.status, TaskStatus::InProgress);
}

#[tokio::test]
async fn a_message_for_a_task_that_no_longer_exists_is_ignored() {
    let (app, events) = app(Service::default());
    let gone = TaskId::generate();
    let deadline = body(&timer(&gone, 1, Step::Deadline, millis_from_now(-1_000)));
    let answer = handle(&app, sqs_event(&[&start(&gone, 1), &deadline])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_message_for_a_cancelled_task_calls_nobody() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let ttl = app.policies.ttl;
    apply(&app, Transition::cancel(&task.task_id, TaskStatus::Received, 0, Timestamp::now(), &ttl).unwrap()).await;
    let cancelled = current(&app, &task).await;
    handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, cancelled);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn only_the_message_whose_store_is_unavailable_fails_and_it_succeeds_when_it_comes_back() {
    let (app, events) = app(Service::default());
    let tasks = [received(&app).await, received(&app).await, received(&app).await, received(&app).await];
    let unlucky = &tasks[2];
    app.store.interceptor.0.lock().unwrap().push(unlucky.task_id.clone());
    let bodies: Vec<String> = tasks.iter().map(|task| start(&task.task_id, 1)).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();

    let answer = handle(&app, sqs_event(&bodies)).await;
    assert_eq!(failures(&answer), [message_id(2)], "only that message comes back");
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]}),
        "the partial batch response Lambda reads"
    );
    for (index, task) in tasks.iter().enumerate() {
        if index != 2 {
            assert_eq!(current(&app, task).await.status, TaskStatus::InProgress, "task {index}");
        }
    }
    assert_eq!(app.service.jobs().len(), 3);

    // Redelivered once storage is back, it starts its attempt.
    app.store.interceptor.0.lock().unwrap().clear();
    assert_eq!(current(&app, unlucky).await, *unlucky, "nothing was written for it");
    let answer = handle(&app, sqs_event(&[bodies[2]])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(current(&app, unlucky).await.status, TaskStatus::InProgress);
    assert_eq!(app.service.jobs().len(), 4);
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: true }; 4]);
}

#[tokio::test]
async fn a_follow_up_write_is_tried_again_while_storage_is_briefly_unavailable() {
    let (app, events) = app(Service::refusing(rejected(503, None)));
    let task = received(&app).await;
    // The start applies; the next two writes (tries of the retry) fail as throttled.
    app.store.fail_writes(1, 2);
    let answer = handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts), (TaskStatus::Received, 1), "put back for attempt 2");
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);
}

#[tokio::test]
async fn a_follow_up_write_that_keeps_failing_fails_the_message_and_the_deadline_timer_recovers_the_attempt() {
    let (app, events) = app(Service::refusing(rejected(503, None)));
    let task = received(&app).await;
    app.store.fail_writes(1, service::FOLLOW_UP_TRIES as usize);
    let message = start(&task.task_id, 1);
    let answer = handle(&app, sqs_event(&[&message])).await;
    assert_eq!(failures(&answer), [message_id(0)]);
    let started = current(&app, &task).await;
    assert_eq!((started.status, started.attempts), (TaskStatus::InProgress, 1), "left running");

    // The redelivered message finds the attempt started and calls nobody …
    let answer = handle(&app, sqs_event(&[&message])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 1, "the service is called once per attempt");
    assert_eq!(current(&app, &task).await, started);

    // … and the attempt's deadline timer puts it back once the callback is overdue.
    let overdue = millis_from_now(-1);
    apply(
        &app,
        Transition::heartbeat(
            &task.task_id,
            1,
            started.callback_tokens[&1].clone(),
            (overdue, overdue),
            &app.policies.ttl,
        ),
    )
    .await;
    let running = current(&app, &task).await;
    let answer = handle(&app, sqs_event(&[&deadline_of(&running)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts), (TaskStatus::Received, 1));
    assert_eq!(events.events(), [TaskEvent::Retried]);
}

#[tokio::test]
async fn a_start_timer_that_arrives_early_is_sent_on_in_its_message_group() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let early = timer(&task.task_id, 1, Step::Start, millis_from_now(30_000));
    let answer = handle(&app, sqs_event(&[&body(&early)])).await;

    assert_eq!(failures(&answer), Vec::<String>::new());
    let sent = app.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, early, "the same timer, due when it was");
    assert_eq!(sent[0].group, "alpha");
    assert!((29..=30).contains(&sent[0].delay_seconds), "{}", sent[0].delay_seconds);
    assert_eq!(app.service.jobs(), Vec::<Value>::new(), "not due: the service is not called");
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_timer_due_later_than_the_queue_can_delay_is_sent_on_for_the_longest_delay() {
    let (app, _) = app(Service::default());
    let task = running(&app, 1, millis_from_now(3_600_000)).await;
    let beta = sqs_event_in(Some("beta"), &[&deadline_of(&task)]);
    let answer = handle(&app, beta).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let sent = app.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message.due_at, task.due_at.as_millis());
    assert_eq!(sent[0].message.step, Step::Deadline);
    assert_eq!((sent[0].group.as_str(), sent[0].delay_seconds), ("beta", 900));
    assert_eq!(current(&app, &task).await, task);

    // A message that came without a group goes on without one.
    let answer = handle(&app, sqs_event_in(None, &[&deadline_of(&task)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.queue.sent()[1].group, "");
}

#[tokio::test]
async fn a_timer_that_cannot_be_sent_on_fails_its_message() {
    let (app, _) = app(Service::default());
    let task = received(&app).await;
    app.queue.refuse(true);
    let early = body(&timer(&task.task_id, 1, Step::Start, millis_from_now(60_000)));
    let answer = handle(&app, sqs_event(&["not json", &early])).await;
    assert_eq!(failures(&answer), [message_id(1)], "it comes back to be sent on again");
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
}

#[tokio::test]
async fn a_timer_less_than_a_second_early_waits_and_then_fires() {
    let (app, _) = app(Service::default());
    let task = received(&app).await;
    let clock = Instant::now();
    let due = millis_from_now(300);
    let answer = handle(&app, sqs_event(&[&body(&timer(&task.task_id, 1, Step::Start, due))])).await;
    let elapsed = clock.elapsed();

    assert_eq!(failures(&answer), Vec::<String>::new());
    assert!(elapsed >= Duration::from_millis(290), "waited only {elapsed:?}");
    assert_eq!(app.queue.sent(), [], "waited, not sent on");
    assert_eq!(app.service.jobs().len(), 1);
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert!(stored.updated_at >= due, "started at {:?}, due {due:?}", stored.updated_at);
}

#[tokio::test]
async fn a_deadline_timer_times_out_an_attempt_whose_callback_did_not_come() {
    let (app, events) = app(Service::default());
    let task = running(&app, 1, millis_from_now(-1_000)).await;
    let message = deadline_of(&task);
    let before = Timestamp::now();
    let answer = handle(&app, sqs_event(&[&message])).await;
    let after = Timestamp::now();

    assert_eq!(failures(&answer), Vec::<String>::new());
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts, stored.error.as_deref()), (TaskStatus::Received, 1, None));
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.due_at, stored.updated_at, "it has waited its whole callback timeout: retried at once");
    assert_eq!(last_entry(&stored), (TaskStatus::Received, 1, Some("attempt 1: no callback within 600 s")));
    assert_eq!(events.events(), [TaskEvent::Retried]);
    assert_eq!(app.service.jobs(), Vec::<Value>::new(), "the next attempt's start is another timer");

    // Redelivered, it finds the attempt over and changes nothing.
    handle(&app, sqs_event(&[&message])).await;
    assert_eq!(current(&app, &task).await, stored);
    assert_eq!(events.events(), [TaskEvent::Retried]);
}

#[tokio::test]
async fn a_deadline_timer_of_the_last_attempt_fails_the_task() {
    let (app, events) = app(Service::default());
    let task = running(&app, MAX_ATTEMPTS, millis_from_now(-1_000)).await;
    handle(&app, sqs_event(&[&deadline_of(&task)])).await;
    let stored = current(&app, &task).await;
    let reason = "gave up after 3 attempts; last: no callback within 600 s";
    assert_eq!((stored.status, stored.attempts, stored.error.as_deref()), (TaskStatus::Failed, 3, Some(reason)));
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
    assert_eq!(events.events(), [TaskEvent::finished(&stored)]);
}

#[tokio::test]
async fn a_deadline_timer_changes_nothing_once_a_heartbeat_moved_the_deadline() {
    let (app, events) = app(Service::default());
    let task = running(&app, 1, millis_from_now(-1_000)).await;
    let old_timer = deadline_of(&task);
    let now = Timestamp::now();
    let moved = now.plus_seconds(CALLBACK_TIMEOUT_SECONDS);
    let beat = Transition::heartbeat(&task.task_id, 1, token::digest("token-1"), (now, moved), &app.policies.ttl);
    apply(&app, beat).await;
    let alive = current(&app, &task).await;

    let answer = handle(&app, sqs_event(&[&old_timer])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(current(&app, &task).await, alive);
    assert_eq!(events.events(), []);

    // The new deadline's timer, arriving early (the queue delays at most 900 s), goes on.
    handle(&app, sqs_event(&[&deadline_of(&alive)])).await;
    assert_eq!(current(&app, &task).await, alive);
    let sent = app.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].message.step, sent[0].message.due_at), (Step::Deadline, moved.as_millis()));
}

#[tokio::test]
async fn a_deadline_timer_of_a_finished_attempt_changes_nothing() {
    let (app, events) = app(Service::default());
    let task = running(&app, 1, millis_from_now(-1_000)).await;
    let finish = Transition::finish(
        &task.task_id,
        1,
        token::digest("token-1"),
        taskfleet_core::lifecycle::Outcome::Succeeded { result: Content::Inline(json!("ok")) },
        Timestamp::now(),
        &app.policies.ttl,
    );
    apply(&app, finish).await;
    let done = current(&app, &task).await;
    handle(&app, sqs_event(&[&deadline_of(&task)])).await;
    assert_eq!(current(&app, &task).await, done);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_early_deadline_timer_of_a_finished_attempt_is_dropped_without_waiting() {
    let (app, events) = app(Service::default());
    // Due in 800 ms: the timer arrived early (delays are whole seconds, rounded down).
    let task = running(&app, 1, millis_from_now(800)).await;
    let finish = Transition::finish(
        &task.task_id,
        1,
        token::digest("token-1"),
        taskfleet_core::lifecycle::Outcome::Succeeded { result: Content::Inline(json!("ok")) },
        Timestamp::now(),
        &app.policies.ttl,
    );
    apply(&app, finish).await;
    let done = current(&app, &task).await;
    let started = std::time::Instant::now();
    handle(&app, sqs_event(&[&deadline_of(&task)])).await;
    assert!(started.elapsed() < Duration::from_millis(400), "waited {:?} for a finished attempt", started.elapsed());
    assert_eq!(current(&app, &task).await, done);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_early_deadline_timer_of_a_running_attempt_waits_for_the_deadline_then_times_it_out() {
    let (app, events) = app(Service::default());
    let deadline = millis_from_now(300);
    let task = running(&app, 1, deadline).await;
    handle(&app, sqs_event(&[&deadline_of(&task)])).await;
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Received);
    assert!(stored.updated_at >= deadline, "timed out {} ms early", deadline.millis_since(stored.updated_at));
    assert_eq!(events.events(), [TaskEvent::Retried]);
}

#[tokio::test]
async fn a_refusal_with_retry_after_holds_new_jobs_fleet_wide_until_then() {
    let hold = Arc::new(MemoryStore::new());
    let (app, events) = instance(Service::refusing(rejected(429, Some(5))), hold.clone());
    let (first, second) = (received(&app).await, received(&app).await);
    let before = Timestamp::now();
    handle(&app, sqs_event(&[&start(&first.task_id, 1)])).await;
    let after = Timestamp::now();

    let held_until = hold.held_until().await.unwrap().expect("a hold is stored");
    assert!(before.plus_seconds(5) <= held_until && held_until <= after.plus_seconds(5), "{held_until:?}");
    assert_eq!(current(&app, &first).await.status, TaskStatus::Received, "the refused attempt is retried");

    // Another start meets the hold: sent on to arrive when it ends, its task untouched.
    let answer = handle(&app, sqs_event(&[&start(&second.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 1, "the service is not called during the hold");
    let stored = current(&app, &second).await;
    assert_eq!((stored.status, stored.attempts), (TaskStatus::Received, 0));
    assert_eq!(stored, second);
    let sent = app.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, timer(&second.task_id, 1, Step::Start, held_until));
    assert_eq!(sent[0].group, "alpha");
    assert!((4..=5).contains(&sent[0].delay_seconds), "{}", sent[0].delay_seconds);
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);
}

#[tokio::test]
async fn another_instance_sharing_the_hold_sends_its_starts_on_too() {
    let hold = Arc::new(MemoryStore::new());
    let (setter, _) = instance(Service::refusing(rejected(503, Some(60))), hold.clone());
    let task = received(&setter).await;
    handle(&setter, sqs_event(&[&start(&task.task_id, 1)])).await;
    let held_until = hold.held_until().await.unwrap().unwrap();

    let (other, _) = instance(Service::default(), hold.clone());
    let waiting = received(&other).await;
    handle(&other, sqs_event(&[&start(&waiting.task_id, 1)])).await;
    assert_eq!(other.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&other, &waiting).await, waiting);
    assert_eq!(other.queue.sent()[0].message.due_at, held_until.as_millis());
}

#[tokio::test]
async fn refusals_without_a_usable_retry_after_do_not_hold() {
    for error in
        [rejected(500, None), rejected(429, None), rejected(503, None), rejected(500, Some(5)), rejected(400, Some(5))]
    {
        let hold = Arc::new(MemoryStore::new());
        let (app, _) = instance(Service::answering(vec![Some(error.clone()), None]), hold.clone());
        let (first, second) = (received(&app).await, received(&app).await);
        handle(&app, sqs_event(&[&start(&first.task_id, 1)])).await;
        assert_eq!(hold.held_until().await.unwrap(), None, "{error:?}");

        handle(&app, sqs_event(&[&start(&second.task_id, 1)])).await;
        assert_eq!(app.service.jobs().len(), 2, "{error:?}: the next start goes ahead");
        assert_eq!(current(&app, &second).await.status, TaskStatus::InProgress);
        assert_eq!(app.queue.sent(), []);
    }
}

#[tokio::test]
async fn a_hold_does_not_stop_deadline_timers() {
    let hold = Arc::new(MemoryStore::new());
    hold.hold_until(millis_from_now(60_000)).await.unwrap();
    let (app, events) = instance(Service::default(), hold);
    let task = running(&app, 1, millis_from_now(-1_000)).await;
    handle(&app, sqs_event(&[&deadline_of(&task)])).await;
    assert_eq!(current(&app, &task).await.status, TaskStatus::Received);
    assert_eq!(events.events(), [TaskEvent::Retried]);
    assert_eq!(app.queue.sent(), []);
}

#[tokio::test]
async fn a_hold_that_has_ended_lets_starts_through() {
    let hold = Arc::new(MemoryStore::new());
    hold.hold_until(millis_from_now(-1)).await.unwrap();
    let (app, _) = instance(Service::default(), hold);
    let task = received(&app).await;
    handle(&app, sqs_event(&[&start(&task.task_id, 1)])).await;
    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(current(&app, &task).await.status, TaskStatus::InProgress);
    assert_eq!(app.queue.sent(), []);
}

#[tokio::test]
async fn a_hold_that_cannot_be_stored_still_holds_this_instance() {
    let hold = Arc::new(MemoryStore::new());
    hold.fail_writes(0, 1);
    let (app, events) = instance(Service::refusing(rejected(429, Some(30))), hold.clone());
    let (first, second) = (received(&app).await, received(&app).await);
    let answer = handle(&app, sqs_event(&[&start(&first.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new(), "the refusal is recorded; the lost hold is only logged");
    assert_eq!(hold.held_until().await.unwrap(), None);
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);

    handle(&app, sqs_event(&[&start(&second.task_id, 1)])).await;
    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(current(&app, &second).await, second);
    assert_eq!(app.queue.sent().len(), 1);
}

#[tokio::test]
async fn the_jobs_of_a_batch_run_concurrently_up_to_the_bound() {
    let (mut app, _) = app(Service::taking(Duration::from_millis(50)));
    app.concurrency = 2;
    let mut bodies = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let task = received(&app).await;
        bodies.push(start(&task.task_id, 1));
        tasks.push(task);
    }
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let clock = Instant::now();
    let answer = handle(&app, sqs_event(&bodies)).await;
    let elapsed = clock.elapsed();

    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 6);
    assert_eq!(app.service.most_in_flight.load(Ordering::SeqCst), 2, "two at once, never more");
    assert!(elapsed >= Duration::from_millis(150), "three rounds of two: {elapsed:?}");
    for task in &tasks {
        assert_eq!(current(&app, task).await.status, TaskStatus::InProgress);
    }
}

#[tokio::test]
async fn a_concurrency_of_zero_still_handles_the_batch_one_at_a_time() {
    let (mut app, _) = app(Service::taking(Duration::from_millis(10)));
    app.concurrency = 0;
    let (first, second) = (received(&app).await, received(&app).await);
    let answer = handle(&app, sqs_event(&[&start(&first.task_id, 1), &start(&second.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.service.jobs().len(), 2);
    assert_eq!(app.service.most_in_flight.load(Ordering::SeqCst), 1);
}

#[test]
fn why_a_message_failed_is_told_by_kind() {
    let store = CallerError::Store(StoreError::Unavailable("throttled".into()));
    assert_eq!(store.to_string(), "task store unavailable: storage is unavailable: throttled");
    let queue = CallerError::Queue(PublishError("Throttling: rate exceeded".into()));
    assert!(queue.to_string().starts_with("cannot send the timer on: "), "{queue}");
}
