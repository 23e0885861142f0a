use super::*;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_core::ExternalError;
use taskfleet_core::blob::{self, Content, DEFAULT_INLINE_MAX_BYTES};
use taskfleet_core::lifecycle::Transition;
use taskfleet_core::memory::{MemoryStore, RecordedEvents};
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::{Job, WriteOutcome};
use taskfleet_core::retry::RetryPolicy;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::token;
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, TtlPolicy};

const CALLBACK_BASE: &str = "https://hooks.example.com/prod";
const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;
const CALLBACK_TIMEOUT_SECONDS: u64 = 600;
const MAX_ATTEMPTS: u32 = 3;

/// An SNS notification as Lambda delivers it, from aws_lambda_events' `example-sns-event.json`
/// with the dispatch topic's ARN. `Message` and `MessageId` are set per test; the original
/// fixture's message ("Hello\r\nworld!") is kept here as an example of an unreadable one.
const SNS_EVENT: &str = r#"{
  "Records": [
    {
      "EventVersion": "1.0",
      "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:taskfleet-dispatch:228cc6c9-dcd8-4c92-9f3a-77f55176b9e3",
      "EventSource": "aws:sns",
      "Sns": {
        "Type" : "Notification",
        "MessageId" : "82833b5c-8d5d-56d0-b0e1-7511f8253eb8",
        "TopicArn" : "arn:aws:sns:us-east-1:123456789012:taskfleet-dispatch",
        "Subject" : null,
        "Message" : "Hello\r\nworld!",
        "Timestamp" : "2015-08-18T18:02:32.111Z",
        "SignatureVersion" : "1",
        "Signature" : "e+khMfZriwAOTkF0OVm3tmdVq9eY6s5Bj6rXZty4B2TYssx7SSSBpvsDCiDuzgeHe++MNsGLDDT+5OpGEFBqCcd/K7iXhofz+KabMEtvM2Ku3aXcFixjOCAY1BF8hH6zU6nKzOy+m7K4UIoVqIOOhqsLWoXNFWgwQseBol1pFQ/MRi9UH84/WGdU8//dH+1/zjLxCud8Lg1vY9Yi/jxMU1HVpZ2JuvzJBdNBFJWc/VYAiw8K1r/J+dxAiLr87P96MgUqyg1wWxYe00HaEXGtjIctCNcd92s3pngOOeGvPYGaTIZEbYhSf2leMYd+CXujUHRqozru5K0Zp+l99fUNTg==",
        "SigningCertURL" : "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-d6d679a1d18e95c2f9ffcf11f4f9e198.pem",
        "UnsubscribeURL" : "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:taskfleet-dispatch:228cc6c9-dcd8-4c92-9f3a-77f55176b9e3",
        "MessageAttributes": {}
      }
    }
  ]
}"#;

/// An external service that records each job exactly as it would be POSTed (the serialized
/// `Job`) and answers as told, one answer per call (the last one repeats).
#[derive(Default)]
struct Service {
    answers: Vec<Option<ExternalError>>,
    jobs: Mutex<Vec<Value>>,
}

impl Service {
    fn refusing(error: ExternalError) -> Self {
        Self { answers: vec![Some(error)], ..Self::default() }
    }

    fn answering(answers: Vec<Option<ExternalError>>) -> Self {
        Self { answers, ..Self::default() }
    }

    fn jobs(&self) -> Vec<Value> {
        self.jobs.lock().unwrap().clone()
    }
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.push(serde_json::to_value(job).unwrap());
        let answer = self.answers.get(jobs.len() - 1).or(self.answers.last()).cloned().flatten();
        answer.map_or(Ok(()), Err)
    }
}

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

type TestApp = App<MemoryStore, Service, MemoryBlobs>;

fn app(service: Service) -> (TestApp, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let app = App {
        store: MemoryStore::new(),
        blobs: Blobs::new(MemoryBlobs::new(), DEFAULT_INLINE_MAX_BYTES),
        service,
        callback_base: CALLBACK_BASE.to_owned(),
        policies: policies(),
        events: events.clone(),
    };
    (app, events)
}

/// An SNS event carrying these messages, one record each.
fn sns_event(messages: &[&str]) -> LambdaEvent<SnsEvent> {
    let template: Value = serde_json::from_str(SNS_EVENT).unwrap();
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let mut record = template["Records"][0].clone();
            record["Sns"]["Message"] = json!(message);
            record["Sns"]["MessageId"] = json!(format!("82833b5c-8d5d-56d0-b0e1-7511f8253e{index:02}"));
            record
        })
        .collect();
    let event: SnsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    LambdaEvent::new(event, Context::default())
}

fn dispatch(task_id: &TaskId, attempt: u32) -> String {
    json!({"task_id": task_id.as_str(), "attempt": attempt}).to_string()
}

/// A RECEIVED task created five seconds ago, not stored yet.
fn new_task() -> Task {
    let created = Timestamp::from_millis(Timestamp::now().as_millis() - 5_000);
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

#[tokio::test]
async fn the_fixture_event_parses_and_its_plain_text_message_is_dropped() {
    let (app, events) = app(Service::default());
    let event: SnsEvent = serde_json::from_str(SNS_EVENT).unwrap();
    assert_eq!(event.records[0].sns.message, "Hello\r\nworld!");
    let result = handle(&app, LambdaEvent::new(event, Context::default())).await;
    assert!(result.is_ok());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_dispatch_message_starts_the_attempt_and_hands_the_job_over() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let before = Timestamp::now();
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    let after = Timestamp::now();

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
    // The callback is due a callback timeout after the start.
    assert_eq!(stored.due_at, stored.updated_at.plus_seconds(CALLBACK_TIMEOUT_SECONDS));
    // Only the token's digest is kept.
    assert_eq!(stored.callback_tokens, BTreeMap::from([(1, token::digest(&token))]));
    assert!(!format!("{stored:?}").contains(&token), "the token itself is never stored");
    assert_eq!(
        stored.history[1..],
        [HistoryEntry { status: TaskStatus::InProgress, at: stored.updated_at, attempt: 1, reason: None }]
    );
    // Starting an attempt keeps the task's TTL.
    assert_eq!(stored.expires_at, task.expires_at);
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

    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
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
    let result = handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    assert!(result.is_ok(), "retrying cannot bring the payload back: {result:?}");
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
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, stored);
}

#[tokio::test]
async fn every_attempt_gets_its_own_token() {
    let (app, _) =
        app(Service::answering(vec![Some(ExternalError::Rejected { status: 503, retry_after_seconds: None }), None]));
    let task = received(&app).await;
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    handle(&app, sns_event(&[&dispatch(&task.task_id, 2)])).await.unwrap();
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
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    let url = app.service.jobs()[0]["callback_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{CALLBACK_BASE}/callbacks/{}?attempt=1&token=", task.task_id)), "{url}");
}

#[tokio::test]
async fn a_duplicate_message_calls_the_service_once() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let message = dispatch(&task.task_id, 1);

    // Twice in one event, then redelivered in another invocation.
    handle(&app, sns_event(&[&message, &message])).await.unwrap();
    let after_first = current(&app, &task).await;
    handle(&app, sns_event(&[&message])).await.unwrap();

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
    handle(&app, sns_event(&[&dispatch(&task.task_id, 2)])).await.unwrap();
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_service_asking_to_come_back_later_puts_the_task_back_for_a_retry() {
    let (app, events) = app(Service::answering(vec![
        Some(ExternalError::Rejected { status: 503, retry_after_seconds: Some(30) }),
        None,
    ]));
    let task = received(&app).await;
    let before = Timestamp::now();
    let result = handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    // A refusal is recorded on the task, not retried by Lambda.
    assert!(result.is_ok());
    assert_eq!(app.service.jobs().len(), 1);
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Received);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error, None);
    assert_eq!(stored.result, None);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    // Backoff for attempt 1 is 5-10 s; the service's Retry-After (30 s) is the floor.
    assert_eq!(stored.due_at, stored.updated_at.plus_seconds(30));
    assert_eq!(stored.expires_at, task.expires_at, "still an unfinished task");
    assert_eq!(last_entry(&stored), (TaskStatus::Received, 1, Some("attempt 1: the external service answered 503")));
    assert_eq!(events.events(), [TaskEvent::ExternalCall { accepted: false }, TaskEvent::Retried]);

    // The next attempt (the sweeper dispatches it when due) starts from there.
    handle(&app, sns_event(&[&dispatch(&task.task_id, 2)])).await.unwrap();
    let restarted = current(&app, &task).await;
    assert_eq!((restarted.status, restarted.attempts), (TaskStatus::InProgress, 2));
    assert_eq!(app.service.jobs().len(), 2);
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
        (
            ExternalError::Rejected { status: 429, retry_after_seconds: None },
            "attempt 1: the external service answered 429",
        ),
    ] {
        let (app, events) = app(Service::refusing(error));
        let task = received(&app).await;
        handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
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
        let (app, events) = app(Service::refusing(ExternalError::Rejected { status, retry_after_seconds: None }));
        let task = received(&app).await;
        let before = Timestamp::now();
        handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
        let after = Timestamp::now();

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
    let (app, events) = app(Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None }));
    let task = received(&app).await;
    for attempt in 1..=MAX_ATTEMPTS {
        handle(&app, sns_event(&[&dispatch(&task.task_id, attempt)])).await.unwrap();
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
    let (app, _) = app(Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None }));
    let task = received(&app).await;
    for attempt in 1..=MAX_ATTEMPTS {
        handle(&app, sns_event(&[&dispatch(&task.task_id, attempt)])).await.unwrap();
    }
    let ttl = app.policies.ttl;
    let replay = Transition::replay(&task.task_id, MAX_ATTEMPTS, Timestamp::now(), &ttl);
    assert!(matches!(app.store.apply(&replay).await.unwrap(), WriteOutcome::Applied(_)));

    // Attempt 4 is the first of the new series: refused, it is retried, not given up.
    handle(&app, sns_event(&[&dispatch(&task.task_id, 4)])).await.unwrap();
    let stored = current(&app, &task).await;
    assert_eq!((stored.status, stored.attempts, stored.series_start), (TaskStatus::Received, 4, 3));
    assert_eq!(last_entry(&stored), (TaskStatus::Received, 4, Some("attempt 4: the external service answered 503")));
    assert_eq!(token_in(&app.service.jobs()[3], &task, 4).len(), 43);
}

#[tokio::test]
async fn an_unparseable_message_is_dropped_without_error() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let unreadable = [
        "Hello\r\nworld!".to_owned(),
        String::new(),
        json!({"task_id": task.task_id.as_str()}).to_string(),
        json!({"task_id": task.task_id.as_str(), "attempt": 0}).to_string(),
        json!({"task_id": "not-a-task-id", "attempt": 1}).to_string(),
        json!({"task_id": task.task_id.as_str(), "attempt": 1, "extra": true}).to_string(),
    ];
    for message in &unreadable {
        let result = handle(&app, sns_event(&[message])).await;
        assert!(result.is_ok(), "{message:?}");
    }
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, task);
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn an_unreadable_message_does_not_stop_the_others_in_the_event() {
    let (app, _) = app(Service::default());
    let task = received(&app).await;
    handle(&app, sns_event(&["not json", &dispatch(&task.task_id, 1)])).await.unwrap();
    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(current(&app, &task).await.status, TaskStatus::InProgress);
}

#[tokio::test]
async fn a_message_for_a_task_that_no_longer_exists_is_ignored() {
    let (app, events) = app(Service::default());
    let result = handle(&app, sns_event(&[&dispatch(&TaskId::generate(), 1)])).await;
    assert!(result.is_ok());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(events.events(), []);
}

#[tokio::test]
async fn a_message_for_a_cancelled_task_calls_nobody() {
    let (app, events) = app(Service::default());
    let task = received(&app).await;
    let ttl = app.policies.ttl;
    let cancel =
        Transition::give_up(&task.task_id, TaskStatus::Received, Some(0), "cancelled", Timestamp::now(), &ttl).unwrap();
    assert!(matches!(app.store.apply(&cancel).await.unwrap(), WriteOutcome::Applied(_)));
    let cancelled = current(&app, &task).await;
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, cancelled);
    assert_eq!(events.events(), []);
}

#[test]
fn errors_that_lambda_retries_are_reported_by_kind() {
    let store = Diagnostic::from(CallerError::Store(StoreError::Unavailable("throttled".into())));
    assert_eq!(store.error_type, "StoreUnavailable");
    assert_eq!(store.error_message, "task store unavailable: storage is unavailable: throttled");
}
