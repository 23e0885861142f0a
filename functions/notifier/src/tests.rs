//! The notifier against the AWS emulator (tasks and secret records in a table of their own,
//! through the real SDK) and a receiver listening on 127.0.0.1, reached by the real
//! `CompletionSender` (the rules allow loopback receivers, as in local runs). Needs
//! `AWS_ENDPOINT_URL` (see `taskfleet_testkit`).

use super::*;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_adapters::table;
use taskfleet_core::blob::Content;
use taskfleet_core::completion::delivery::DeliveryState;
use taskfleet_core::completion::destination::Rules;
use taskfleet_core::completion::rotation;
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::lifecycle::{Outcome as Reported, Transition};
use taskfleet_core::memory::{MemoryQueue, RecordedEvents};
use taskfleet_core::memory_blobs::MemoryBlobs;
use taskfleet_core::ports::WriteOutcome;
use taskfleet_core::signing::{self, Signed, SigningSecrets};
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus};

const TTL: TtlPolicy = TtlPolicy { task_ttl_seconds: 3_600, result_retention_seconds: 86_400 };
const DAY: Duration = Duration::from_secs(86_400);

/// A batch from the deliveries queue as Lambda delivers it (aws_lambda_events'
/// `example-sqs-event.json`, the queue's ARN, the client as message group); `body` and
/// `messageId` are set per message.
const SQS_RECORD: &str = r#"{
  "messageId" : "MessageID_1",
  "receiptHandle" : "MessageReceiptHandle",
  "body" : "Message Body",
  "md5OfBody" : "fce0ea8dd236ccb3ed9b37dae260836f",
  "md5OfMessageAttributes" : null,
  "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:taskfleet-deliveries",
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
}"#;

/// What the receiver got: the three Standard Webhooks headers and the body, per request.
#[derive(Default)]
struct Got {
    requests: Mutex<Vec<(Signed, Vec<u8>)>>,
    status: AtomicU16,
}

/// A receiver on 127.0.0.1 answering `status` (changeable) to every POST; its URL and what it got.
async fn receiver(status: u16) -> (String, Arc<Got>) {
    let got = Arc::new(Got { status: AtomicU16::new(status), ..Got::default() });
    async fn take(State(got): State<Arc<Got>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let signed = Signed {
            id: header(signing::ID),
            timestamp: header(signing::TIMESTAMP),
            signature: header(signing::SIGNATURE),
        };
        got.requests.lock().unwrap().push((signed, body.to_vec()));
        StatusCode::from_u16(got.status.load(Ordering::SeqCst)).unwrap()
    }
    let app = axum::Router::new().route("/hooks/done", axum::routing::post(take)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hooks/done?token=secret-in-query"), got)
}

type TestApp = App<DynamoStore, DynamoSecretRecords, CompletionSender, MemoryBlobs, MemoryQueue>;

fn master() -> MasterKey {
    MasterKey::parse("whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap()
}

/// A notifier over a fresh table of its own, retrying on `schedule`.
async fn app(schedule: &str) -> (TestApp, Arc<RecordedEvents>) {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("notifier");
    table::create(&client, &name).await.unwrap();
    let events = Arc::new(RecordedEvents::default());
    let app = App {
        store: DynamoStore::new(client.clone(), &name),
        records: DynamoSecretRecords::new(client, &name),
        sender: CompletionSender::new(Rules { allow_loopback: true }, Duration::from_secs(2)).unwrap(),
        blobs: MemoryBlobs::new(),
        master: master(),
        schedule: DeliverySchedule::parse(schedule).unwrap(),
        ttl: TTL,
        events: events.clone(),
        queue: MemoryQueue::default(),
        concurrency: 4,
    };
    (app, events)
}

fn alpha() -> ClientId {
    ClientId::parse("alpha").unwrap()
}

/// Gives alpha its webhook secret, as `POST /webhook-secret` does; the secret as alpha sees it.
async fn secret_of_alpha(app: &TestApp) -> SigningSecrets {
    let issued = rotation::rotate(&app.records, &app.master, &alpha(), Timestamp::now(), DAY).await.unwrap();
    SigningSecrets::parse(&issued.secret).unwrap()
}

async fn apply(app: &TestApp, transition: Transition) -> Task {
    match app.store.apply(&transition).await.unwrap() {
        WriteOutcome::Applied(task) => task,
        other => panic!("{transition:?}: {other:?}"),
    }
}

/// A task of alpha's notifying `url`, which its first attempt finished with `result`.
async fn done(app: &TestApp, url: &str, result: Content) -> Task {
    let now = Timestamp::now();
    let task = Task::received(alpha(), now, TTL.new_task_expiry(now)).notifying(Some(url.to_owned()));
    app.store.insert(&task, &Content::Inline(json!({"n": 1})), TTL.payload_expiry(now)).await.unwrap();
    apply(app, Transition::start(&task.task_id, 1, "d".into(), (now, now.plus(DAY)), &TTL)).await;
    let finished = Transition::finish(&task.task_id, 1, "d".into(), Reported::Succeeded { result }, now, &TTL);
    apply(app, finished).await
}

async fn current(app: &TestApp, task_id: &TaskId) -> Task {
    app.store.get(task_id).await.unwrap().unwrap()
}

fn body(task_id: &TaskId, attempt: u32, step: Step, due_at: Timestamp) -> String {
    let message = DispatchMessage { task_id: task_id.to_string(), attempt, step, due_at: due_at.as_millis() };
    serde_json::to_string(&message).unwrap()
}

/// The timer of attempt `attempt` of the task's delivery, due now.
fn deliver(task_id: &TaskId, attempt: u32) -> String {
    body(task_id, attempt, Step::Deliver, Timestamp::now())
}

/// A batch carrying these bodies; message i has id `MessageID_i`.
fn sqs_event(bodies: &[&str]) -> LambdaEvent<SqsEvent> {
    let template: Value = serde_json::from_str(SQS_RECORD).unwrap();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            let mut record = template.clone();
            record["body"] = json!(body);
            record["messageId"] = json!(format!("MessageID_{index}"));
            record
        })
        .collect();
    LambdaEvent::new(serde_json::from_value(json!({ "Records": records })).unwrap(), Context::default())
}

fn failures(answer: &SqsBatchResponse) -> Vec<String> {
    let mut failed: Vec<String> = answer.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    failed.sort();
    failed
}

fn reasons(task: &Task) -> Vec<String> {
    task.history.iter().filter_map(|entry| entry.reason.clone()).collect()
}

#[tokio::test]
async fn a_2xx_answer_delivers_the_task_view_signed_with_the_clients_secret() {
    let (app, events) = app("5s").await;
    let secret = secret_of_alpha(&app).await;
    let (url, got) = receiver(204).await;
    let task = done(&app, &url, Content::Inline(json!({"ok": true}))).await;
    let before = Timestamp::now();
    let answer = handle(&app, sqs_event(&[&deliver(&task.task_id, 1)])).await;

    assert_eq!(failures(&answer), Vec::<String>::new());
    let requests = got.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (signed, bytes) = &requests[0];
    assert_eq!(secret.verify(signed, bytes, Timestamp::now()), Ok(()), "signed with alpha's own secret");
    assert_eq!(signed.id, format!("msg_{}", task.task_id));
    let sent: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(sent["type"], "task.succeeded");
    // The data is the task exactly as GET /tasks/{id} showed it when the attempt was made.
    let shown = serde_json::to_value(TaskView::from(&task)).unwrap();
    assert_eq!(sent["data"], shown);
    assert_eq!(sent["data"]["result"], json!({"ok": true}));
    assert_eq!(sent["data"]["webhook"], json!({"state": "pending", "attempts": 0}));

    let stored = current(&app, &task.task_id).await;
    let delivery = stored.delivery().unwrap();
    assert_eq!((delivery.state, delivery.attempts, delivery.next_at), (DeliveryState::Delivered, 1, None));
    assert_eq!(reasons(&stored).last().map(String::as_str), Some("webhook delivered (attempt 1)"));
    assert!(stored.updated_at >= before);
    assert_eq!(stored.status, TaskStatus::Done, "the task itself is unchanged");
    assert_eq!(events.events(), [TaskEvent::WebhookDelivered]);
    assert_eq!(app.queue.sent(), []);
}

#[tokio::test]
async fn a_500_records_the_failed_attempt_and_the_next_one_then_the_last_failure_gives_up() {
    let (app, events) = app("1s").await;
    secret_of_alpha(&app).await;
    let (url, got) = receiver(500).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    let answer = handle(&app, sqs_event(&[&deliver(&task.task_id, 1)])).await;

    assert_eq!(failures(&answer), Vec::<String>::new(), "a receiver's failure never fails the message");
    let stored = current(&app, &task.task_id).await;
    let delivery = stored.delivery().unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Pending, 1));
    let (next, next_at) = delivery.next_attempt().unwrap();
    assert_eq!(next, 2);
    assert_eq!(next_at, stored.updated_at.plus(Duration::from_secs(1)), "one schedule wait after the attempt");
    let last = reasons(&stored).pop().unwrap();
    assert!(last.starts_with("webhook attempt 1 failed: HTTP 500"), "{last}");
    assert!(!last.contains("secret-in-query") && !last.contains("127.0.0.1"), "the URL is never recorded: {last}");
    assert_eq!(events.events(), [TaskEvent::WebhookRetried]);

    // Attempt 2, the schedule's last, fails too: given up for good.
    let answer = handle(&app, sqs_event(&[&body(&task.task_id, 2, Step::Deliver, next_at)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(got.requests.lock().unwrap().len(), 2);
    let stored = current(&app, &task.task_id).await;
    let delivery = stored.delivery().unwrap();
    assert_eq!((delivery.state, delivery.attempts, delivery.next_at), (DeliveryState::Failed, 2, None));
    assert!(reasons(&stored).pop().unwrap().ends_with("given up"));
    assert_eq!(events.events(), [TaskEvent::WebhookRetried, TaskEvent::WebhookGaveUp]);
}

#[tokio::test]
async fn a_retry_that_gets_a_2xx_is_delivered_with_the_same_webhook_id() {
    let (app, events) = app("1s").await;
    let secret = secret_of_alpha(&app).await;
    let (url, got) = receiver(503).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    handle(&app, sqs_event(&[&deliver(&task.task_id, 1)])).await;
    got.status.store(200, Ordering::SeqCst);
    handle(&app, sqs_event(&[&deliver(&task.task_id, 2)])).await;

    let requests = got.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].0.id, requests[1].0.id);
    assert_eq!(secret.verify(&requests[1].0, &requests[1].1, Timestamp::now()), Ok(()));
    let data: Value = serde_json::from_slice(&requests[1].1).unwrap();
    assert_eq!(data["data"]["webhook"], json!({"state": "pending", "attempts": 1}));
    let delivery = current(&app, &task.task_id).await.delivery().unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Delivered, 2));
    assert_eq!(events.events(), [TaskEvent::WebhookRetried, TaskEvent::WebhookDelivered]);
}

#[tokio::test]
async fn a_timer_delivered_twice_sends_nothing_the_second_time() {
    let (app, events) = app("5s").await;
    secret_of_alpha(&app).await;
    let (url, got) = receiver(200).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    let timer = deliver(&task.task_id, 1);
    // Twice in one batch (handled one after the other here) and once more later.
    let mut one_at_a_time = app;
    one_at_a_time.concurrency = 1;
    let app = one_at_a_time;
    let answer = handle(&app, sqs_event(&[&timer, &timer])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let delivered = current(&app, &task.task_id).await;
    handle(&app, sqs_event(&[&timer])).await;

    assert_eq!(got.requests.lock().unwrap().len(), 1, "sent once");
    assert_eq!(current(&app, &task.task_id).await, delivered, "recorded once");
    assert_eq!(events.events(), [TaskEvent::WebhookDelivered]);
    // A timer for an attempt the delivery does not wait for sends nothing either.
    handle(&app, sqs_event(&[&deliver(&task.task_id, 2)])).await;
    assert_eq!(got.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn job_timers_and_unreadable_messages_are_dropped_without_sending() {
    let (app, events) = app("5s").await;
    secret_of_alpha(&app).await;
    let (url, got) = receiver(200).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    let start = body(&task.task_id, 2, Step::Start, Timestamp::now());
    let deadline = body(&task.task_id, 1, Step::Deadline, Timestamp::now());
    let answer = handle(&app, sqs_event(&[&start, &deadline, "Message Body"])).await;

    assert_eq!(failures(&answer), Vec::<String>::new(), "retrying cannot help them");
    assert_eq!(got.requests.lock().unwrap().len(), 0);
    assert_eq!(current(&app, &task.task_id).await, task);
    assert_eq!(events.events(), []);
    assert_eq!(app.queue.sent(), []);
}

#[tokio::test]
async fn a_stored_result_is_shown_as_a_presigned_result_url_as_get_tasks_shows_it() {
    let (app, _) = app("5s").await;
    let secret = secret_of_alpha(&app).await;
    let (url, got) = receiver(200).await;
    let key = format!("results/{}/1/result.json", TaskId::generate());
    let task = done(&app, &url, Content::Stored { key: key.clone() }).await;
    handle(&app, sqs_event(&[&deliver(&task.task_id, 1)])).await;

    let requests = got.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(secret.verify(&requests[0].0, &requests[0].1, Timestamp::now()), Ok(()));
    let sent: Value = serde_json::from_slice(&requests[0].1).unwrap();
    let shown = serde_json::to_value(TaskView::shown(&task, &app.blobs).await.unwrap()).unwrap();
    assert_eq!(sent["data"], shown);
    assert_eq!(sent["data"]["result_url"], format!("memory://blobs/{key}?expires_in=900"));
    assert!(sent["data"].get("result").is_none());
}

#[tokio::test]
async fn a_client_without_a_secret_gets_nothing_and_the_attempt_counts_as_failed() {
    let (app, events) = app("5s").await;
    let (url, got) = receiver(200).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    let answer = handle(&app, sqs_event(&[&deliver(&task.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(got.requests.lock().unwrap().len(), 0, "nothing unsigned is sent");
    let delivery = current(&app, &task.task_id).await.delivery().unwrap();
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Pending, 1));
    assert_eq!(events.events(), [TaskEvent::WebhookRetried]);
}

#[tokio::test]
async fn a_timer_due_later_than_a_second_is_sent_on_in_its_group() {
    let (app, events) = app("5s").await;
    let task_id = TaskId::generate();
    let due = Timestamp::now().plus(Duration::from_secs(3_600));
    let answer = handle(&app, sqs_event(&[&body(&task_id, 3, Step::Deliver, due)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    let sent = app.queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message.step, Step::Deliver);
    assert_eq!((sent[0].message.attempt, sent[0].message.due_at), (3, due.as_millis()));
    assert_eq!((sent[0].group.as_str(), sent[0].delay_seconds), ("alpha", 900));
    assert_eq!(events.events(), []);

    // One that cannot be sent on comes back.
    app.queue.refuse(true);
    let answer = handle(&app, sqs_event(&[&body(&task_id, 3, Step::Deliver, due)])).await;
    assert_eq!(failures(&answer), ["MessageID_0"]);
}

#[tokio::test]
async fn a_store_that_cannot_be_read_fails_only_that_message() {
    let (mut app, _) = app("5s").await;
    let (url, got) = receiver(200).await;
    let task = done(&app, &url, Content::Inline(json!("ok"))).await;
    let sdk = taskfleet_testkit::sdk_config().await;
    app.store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "no-such-table");
    let answer = handle(&app, sqs_event(&["not json", &deliver(&task.task_id, 1)])).await;
    assert_eq!(failures(&answer), ["MessageID_1"]);
    assert_eq!(got.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_the_other_deliveries_of_the_batch() {
    let (app, events) = app("5s").await;
    secret_of_alpha(&app).await;
    // A receiver that never answers: its attempt ends at the sender's 2 s timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hooks/done", silent.local_addr().unwrap());
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (url, got) = receiver(200).await;
    let stuck = done(&app, &silent_url, Content::Inline(json!("ok"))).await;
    let fine = done(&app, &url, Content::Inline(json!("ok"))).await;
    let clock = std::time::Instant::now();
    let answer = handle(&app, sqs_event(&[&deliver(&stuck.task_id, 1), &deliver(&fine.task_id, 1)])).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert!(clock.elapsed() < Duration::from_secs(4), "attempts run at once, each bounded: {:?}", clock.elapsed());
    assert_eq!(got.requests.lock().unwrap().len(), 1);
    assert_eq!(current(&app, &fine.task_id).await.delivery().unwrap().state, DeliveryState::Delivered);
    assert_eq!(current(&app, &stuck.task_id).await.delivery().unwrap().attempts, 1);
    let mut recorded = events.events();
    recorded.sort_by_key(|event| format!("{event:?}"));
    assert_eq!(recorded, [TaskEvent::WebhookDelivered, TaskEvent::WebhookRetried]);
}
