use super::*;

use std::sync::Mutex;

use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_core::ExternalError;
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::ports::Job;
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus};

const CALLBACK_BASE: &str = "https://hooks.example.com/prod";
const TASK_TTL: u64 = 3_600;
const RETENTION: u64 = 86_400;

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
/// `Job`) and answers as told.
#[derive(Default)]
struct Service {
    refuse_with: Option<ExternalError>,
    jobs: Mutex<Vec<Value>>,
}

impl Service {
    fn refusing(error: ExternalError) -> Self {
        Self { refuse_with: Some(error), ..Self::default() }
    }

    fn jobs(&self) -> Vec<Value> {
        self.jobs.lock().unwrap().clone()
    }
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        self.jobs.lock().unwrap().push(serde_json::to_value(job).unwrap());
        self.refuse_with.clone().map_or(Ok(()), Err)
    }
}

fn app(service: Service) -> App<MemoryStore, Service> {
    App {
        store: MemoryStore::new(),
        service,
        callback_base: CALLBACK_BASE.to_owned(),
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
    }
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

async fn received(app: &App<MemoryStore, Service>) -> Task {
    let created = Timestamp::from_millis(Timestamp::now().as_millis() - 5_000);
    let task = Task::received(
        ClientId::parse("alpha").unwrap(),
        json!({"job": "resize", "sizes": [64, 128], "opts": {"keep": true}}),
        created,
        created.plus_seconds(TASK_TTL).as_epoch_seconds(),
    );
    app.store.insert(&task).await.unwrap();
    task
}

async fn current(app: &App<MemoryStore, Service>, task: &Task) -> Task {
    app.store.get(&task.task_id).await.unwrap().unwrap()
}

#[tokio::test]
async fn the_fixture_event_parses_and_its_plain_text_message_is_dropped() {
    let app = app(Service::default());
    let event: SnsEvent = serde_json::from_str(SNS_EVENT).unwrap();
    assert_eq!(event.records[0].sns.message, "Hello\r\nworld!");
    let result = handle(&app, LambdaEvent::new(event, Context::default())).await;
    assert!(result.is_ok());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
}

#[tokio::test]
async fn a_dispatch_message_starts_the_attempt_and_hands_the_job_over() {
    let app = app(Service::default());
    let task = received(&app).await;
    let before = Timestamp::now();
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    let after = Timestamp::now();

    assert_eq!(
        app.service.jobs(),
        [json!({
            "task_id": task.task_id.as_str(),
            "payload": {"job": "resize", "sizes": [64, 128], "opts": {"keep": true}},
            "callback_url": format!("https://hooks.example.com/prod/callbacks/{}", task.task_id),
            "attempt": 1
        })]
    );
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error, None);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    // Starting an attempt keeps the task's TTL.
    assert_eq!(stored.expires_at, task.expires_at);
}

#[tokio::test]
async fn a_trailing_slash_on_the_callback_base_is_not_doubled() {
    let mut app = app(Service::default());
    app.callback_base = format!("{CALLBACK_BASE}/");
    let task = received(&app).await;
    handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
    assert_eq!(app.service.jobs()[0]["callback_url"], format!("{CALLBACK_BASE}/callbacks/{}", task.task_id));
}

#[tokio::test]
async fn a_duplicate_message_calls_the_service_once() {
    let app = app(Service::default());
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
}

#[tokio::test]
async fn an_attempt_that_does_not_follow_the_stored_count_is_skipped() {
    let app = app(Service::default());
    let task = received(&app).await;
    handle(&app, sns_event(&[&dispatch(&task.task_id, 2)])).await.unwrap();
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
    assert_eq!(current(&app, &task).await, task);
}

#[tokio::test]
async fn a_refusing_service_leaves_the_task_failed_with_the_reason() {
    let app = app(Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: Some(30) }));
    let task = received(&app).await;
    let before = Timestamp::now();
    let result = handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await;
    let after = Timestamp::now();

    // A refusal is recorded on the task, not retried by Lambda.
    assert!(result.is_ok());
    assert_eq!(app.service.jobs().len(), 1);
    let stored = current(&app, &task).await;
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.error.as_deref(), Some("external service refused attempt 1: the external service answered 503"));
    assert_eq!(stored.result, None);
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    assert_eq!(stored.expires_at, stored.updated_at.plus_seconds(RETENTION).as_epoch_seconds());
}

#[tokio::test]
async fn an_unreachable_or_slow_service_also_fails_the_task() {
    for (error, reason) in [
        (
            ExternalError::Timeout { timeout_ms: 10_000 },
            "external service refused attempt 1: the external service did not answer within 10000 ms",
        ),
        (
            ExternalError::Unreachable("connection refused".into()),
            "external service refused attempt 1: the external service could not be reached: connection refused",
        ),
    ] {
        let app = app(Service::refusing(error));
        let task = received(&app).await;
        handle(&app, sns_event(&[&dispatch(&task.task_id, 1)])).await.unwrap();
        let stored = current(&app, &task).await;
        assert_eq!(stored.status, TaskStatus::Failed);
        assert_eq!(stored.error.as_deref(), Some(reason));
    }
}

#[tokio::test]
async fn an_unparseable_message_is_dropped_without_error() {
    let app = app(Service::default());
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
}

#[tokio::test]
async fn an_unreadable_message_does_not_stop_the_others_in_the_event() {
    let app = app(Service::default());
    let task = received(&app).await;
    handle(&app, sns_event(&["not json", &dispatch(&task.task_id, 1)])).await.unwrap();
    assert_eq!(app.service.jobs().len(), 1);
    assert_eq!(current(&app, &task).await.status, TaskStatus::InProgress);
}

#[tokio::test]
async fn a_message_for_a_task_that_no_longer_exists_is_ignored() {
    let app = app(Service::default());
    let result = handle(&app, sns_event(&[&dispatch(&TaskId::generate(), 1)])).await;
    assert!(result.is_ok());
    assert_eq!(app.service.jobs(), Vec::<Value>::new());
}
