use super::*;

use std::sync::Mutex;

use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_adapters::table::payload_item_key;
use taskfleet_core::dispatch::{DispatchMessage, MAX_DELAY_SECONDS, Step};
use taskfleet_core::memory::MemoryQueue;

/// A batch from the tasks table's stream as Lambda delivers it, in the shape of
/// aws_lambda_events' `example-dynamodb-event.json` (NEW_AND_OLD_IMAGES), with task items laid
/// out as `taskfleet_adapters::record::TaskRecord` stores them:
///
/// 1. INSERT of a new RECEIVED task, due at once (the start of attempt 1),
/// 2. MODIFY RECEIVED → IN_PROGRESS (the caller started attempt 1: the deadline timer of
///    attempt 1, due at its callback deadline),
/// 3. MODIFY of a RECEIVED task with identical images (a no-op write: nothing),
/// 4. REMOVE by TTL (nothing),
/// 5. INSERT of an item that is not a task (nothing).
///
/// A task's payload is not in its state item: it is an item of its own (see
/// `an_insert_of_a_payload_item_sets_no_timer`).
const MIXED_BATCH: &str = r#"{
  "Records": [
    {
      "eventID": "f07f8ca4b0b26cb9c4e5e77e69f274ee",
      "eventName": "INSERT",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "dynamodb": {
        "ApproximateCreationDateTime": 1764201387,
        "Keys": {
          "pk": {"S": "TASK#0b7e8c1a-3f5d-4c2e-9a6b-1d2c3e4f5a6b"}
        },
        "NewImage": {
          "pk": {"S": "TASK#0b7e8c1a-3f5d-4c2e-9a6b-1d2c3e4f5a6b"},
          "task_id": {"S": "0b7e8c1a-3f5d-4c2e-9a6b-1d2c3e4f5a6b"},
          "client_id": {"S": "alpha"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "series_start": {"N": "0"},
          "created_at": {"N": "1764201387123"},
          "updated_at": {"N": "1764201387123"},
          "due_at": {"N": "1764201387123"},
          "expires_at": {"N": "1764287787"},
          "history": {"L": [
            {"M": {"status": {"S": "RECEIVED"}, "at": {"N": "1764201387123"}, "attempt": {"N": "0"}}}
          ]}
        },
        "SequenceNumber": "1405400000000002063282832",
        "SizeBytes": 254,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    },
    {
      "eventID": "f07f8ca4b0b26cb9c4e5e77e42f274ee",
      "eventName": "MODIFY",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "dynamodb": {
        "ApproximateCreationDateTime": 1764201388,
        "Keys": {
          "pk": {"S": "TASK#1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"}
        },
        "NewImage": {
          "pk": {"S": "TASK#1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
          "task_id": {"S": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
          "client_id": {"S": "alpha"},
          "status": {"S": "IN_PROGRESS"},
          "attempts": {"N": "1"},
          "created_at": {"N": "1764201380000"},
          "updated_at": {"N": "1764201388000"},
          "due_at": {"N": "1764202288000"},
          "expires_at": {"N": "1764287780"},
          "tokens": {"M": {"1": {"S": "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sUbDwCgg"}}}
        },
        "OldImage": {
          "pk": {"S": "TASK#1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
          "task_id": {"S": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
          "client_id": {"S": "alpha"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "created_at": {"N": "1764201380000"},
          "updated_at": {"N": "1764201380000"},
          "due_at": {"N": "1764201380000"},
          "expires_at": {"N": "1764287780"}
        },
        "SequenceNumber": "1405400000000002063282833",
        "SizeBytes": 480,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    },
    {
      "eventID": "a17f8ca4b0b26cb9c4e5e77e42f27400",
      "eventName": "MODIFY",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "dynamodb": {
        "ApproximateCreationDateTime": 1764201389,
        "Keys": {
          "pk": {"S": "TASK#2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"}
        },
        "NewImage": {
          "pk": {"S": "TASK#2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"},
          "task_id": {"S": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"},
          "client_id": {"S": "beta"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "created_at": {"N": "1764201381000"},
          "updated_at": {"N": "1764201381000"},
          "due_at": {"N": "1764201381000"},
          "expires_at": {"N": "1764287781"}
        },
        "OldImage": {
          "pk": {"S": "TASK#2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"},
          "task_id": {"S": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"},
          "client_id": {"S": "beta"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "created_at": {"N": "1764201381000"},
          "updated_at": {"N": "1764201381000"},
          "due_at": {"N": "1764201381000"},
          "expires_at": {"N": "1764287781"}
        },
        "SequenceNumber": "1405400000000002063282834",
        "SizeBytes": 470,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    },
    {
      "eventID": "b27f8ca4b0b26cb9c4e5e77e42f27411",
      "eventName": "REMOVE",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "userIdentity": {
        "type": "Service",
        "principalId": "dynamodb.amazonaws.com"
      },
      "dynamodb": {
        "ApproximateCreationDateTime": 1764201390,
        "Keys": {
          "pk": {"S": "TASK#3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b"}
        },
        "OldImage": {
          "pk": {"S": "TASK#3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b"},
          "task_id": {"S": "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b"},
          "client_id": {"S": "alpha"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "created_at": {"N": "1764100000000"},
          "updated_at": {"N": "1764100000000"},
          "due_at": {"N": "1764100000000"},
          "expires_at": {"N": "1764186400"}
        },
        "SequenceNumber": "1405400000000002063282835",
        "SizeBytes": 230,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    },
    {
      "eventID": "c37f8ca4b0b26cb9c4e5e77e42f27422",
      "eventName": "INSERT",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "dynamodb": {
        "ApproximateCreationDateTime": 1764201391,
        "Keys": {
          "pk": {"S": "IDEMPOTENCY#client-request-7"}
        },
        "NewImage": {
          "pk": {"S": "IDEMPOTENCY#client-request-7"},
          "status": {"S": "RECEIVED"},
          "attempts": {"N": "0"},
          "expires_at": {"N": "1764287791"}
        },
        "SequenceNumber": "1405400000000002063282836",
        "SizeBytes": 90,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    }
  ]
}"#;

/// A queue that records what it was asked to send, refuses the messages of chosen tasks and,
/// when told, answers only the first `answered` results.
#[derive(Default)]
struct Queue {
    refuse: Vec<String>,
    answered: Option<usize>,
    calls: Mutex<Vec<Vec<Dispatch>>>,
}

impl Queue {
    fn refusing(task_id: &str) -> Self {
        Self { refuse: vec![task_id.to_owned()], ..Self::default() }
    }

    fn answering_only(answered: usize) -> Self {
        Self { answered: Some(answered), ..Self::default() }
    }

    /// Every message sent, in order, over all calls.
    fn sent(&self) -> Vec<Dispatch> {
        self.calls.lock().unwrap().concat()
    }
}

impl Publisher for Queue {
    async fn publish(&self, dispatches: &[Dispatch]) -> Vec<Result<(), PublishError>> {
        self.calls.lock().unwrap().push(dispatches.to_vec());
        dispatches
            .iter()
            .take(self.answered.unwrap_or(usize::MAX))
            .map(|dispatch| {
                if self.refuse.contains(&dispatch.message.task_id) {
                    Err(PublishError("ThrottlingException: rate exceeded".into()))
                } else {
                    Ok(())
                }
            })
            .collect()
    }
}

/// A dispatcher whose jobs queue is `queue` (its deliveries queue takes everything).
fn app(queue: Queue) -> App<Queue> {
    App { jobs: queue, deliveries: Queue::default() }
}

fn lambda_event(event: Value) -> LambdaEvent<Event> {
    LambdaEvent::new(serde_json::from_value(event).unwrap(), Context::default())
}

/// When the fixtures' tasks became due: in the past, so they are due now.
const DUE: i64 = 1_764_201_387_123;
/// 2100-01-01: a retry waiting far in the future.
const FAR_FUTURE: i64 = 4_102_444_800_000;

/// A task item's image in DynamoDB JSON, as a NEW_AND_OLD_IMAGES stream carries it.
fn task_image(task_id: &str, status: &str, attempts: u32) -> Value {
    json!({
        "pk": {"S": format!("TASK#{task_id}")},
        "task_id": {"S": task_id},
        "client_id": {"S": "alpha"},
        "status": {"S": status},
        "attempts": {"N": attempts.to_string()},
        "series_start": {"N": "0"},
        "created_at": {"N": "1764201387123"},
        "updated_at": {"N": "1764201387123"},
        "due_at": {"N": DUE.to_string()},
        "expires_at": {"N": "1764287787"}
    })
}

/// The same image, due at `due_at` (epoch milliseconds).
fn due(mut image: Value, due_at: i64) -> Value {
    image["due_at"] = json!({"N": due_at.to_string()});
    image
}

/// The same image, of another client's task.
fn of_client(mut image: Value, client: &str) -> Value {
    image["client_id"] = json!({"S": client});
    image
}

/// One stream record in the shape of `example-dynamodb-event.json`.
fn record(event_name: &str, sequence: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let image = new.as_ref().or(old.as_ref()).unwrap();
    let mut change = json!({
        "ApproximateCreationDateTime": 1764201387,
        "Keys": {"pk": image["pk"].clone()},
        "SequenceNumber": sequence,
        "SizeBytes": 254,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(new) = new {
        change["NewImage"] = new;
    }
    if let Some(old) = old {
        change["OldImage"] = old;
    }
    json!({
        "eventID": format!("event-{sequence}"),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/taskfleet-tasks/stream/2025-11-26T00:00:00.000"
    })
}

fn insert(sequence: &str, task_id: &str) -> Value {
    record("INSERT", sequence, None, Some(task_image(task_id, "RECEIVED", 0)))
}

fn modify(sequence: &str, old: Value, new: Value) -> Value {
    record("MODIFY", sequence, Some(old), Some(new))
}

fn batch(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

fn failures(answer: &DynamoDbEventResponse) -> Vec<String> {
    answer.batch_item_failures.iter().map(|failure| failure.item_identifier.clone().unwrap()).collect()
}

fn timer(task_id: &str, attempt: u32, step: Step, due_at: i64) -> DispatchMessage {
    DispatchMessage { task_id: task_id.to_owned(), attempt, step, due_at }
}

/// The start of attempt `attempt`, due long ago: sent with no delay in the client's group.
fn start_now(task_id: &str, attempt: u32) -> Dispatch {
    Dispatch { message: timer(task_id, attempt, Step::Start, DUE), group: "alpha".into(), delay_seconds: 0 }
}

/// The deadline timer of attempt `attempt`, due at `due_at` (past: no delay).
fn deadline_now(task_id: &str, attempt: u32, due_at: i64) -> Dispatch {
    Dispatch { message: timer(task_id, attempt, Step::Deadline, due_at), group: "alpha".into(), delay_seconds: 0 }
}

fn now_plus(millis: i64) -> i64 {
    Timestamp::now().as_millis() + millis
}

/// The delays of what was sent, by task.
fn delays(sent: &[Dispatch]) -> Vec<(&str, u32)> {
    sent.iter().map(|dispatch| (dispatch.message.task_id.as_str(), dispatch.delay_seconds)).collect()
}

const ID_1: &str = "4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c";
const ID_2: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
const ID_3: &str = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e";
const ID_4: &str = "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";

#[tokio::test]
async fn a_mixed_batch_sets_the_new_tasks_start_and_the_started_attempts_deadline() {
    let app = app(Queue::default());
    let answer = handle(&app, lambda_event(serde_json::from_str(MIXED_BATCH).unwrap())).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(
        app.jobs.sent(),
        [
            start_now("0b7e8c1a-3f5d-4c2e-9a6b-1d2c3e4f5a6b", 1),
            deadline_now("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", 1, 1_764_202_288_000),
        ]
    );
}

#[tokio::test]
async fn an_insert_of_a_received_task_starts_attempt_one_at_once_in_its_clients_group() {
    let app = app(Queue::default());
    let answer = handle(&app, lambda_event(batch(vec![insert("100", ID_1)]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = app.jobs.sent();
    assert_eq!(sent, [start_now(ID_1, 1)]);
    assert_eq!((sent[0].group.as_str(), sent[0].delay_seconds), ("alpha", 0));
    // What goes on the queue is exactly the contract the caller parses.
    assert_eq!(
        serde_json::to_value(&sent[0].message).unwrap(),
        json!({"task_id": ID_1, "attempt": 1, "step": "start", "due_at": DUE})
    );
    assert!(DispatchMessage::parse(&serde_json::to_string(&sent[0].message).unwrap()).is_ok());
}

#[tokio::test]
async fn each_clients_timers_go_in_its_own_message_group() {
    let app = app(Queue::default());
    let records = vec![
        record("INSERT", "100", None, Some(of_client(task_image(ID_1, "RECEIVED", 0), "beta"))),
        insert("101", ID_2),
        modify(
            "102",
            of_client(task_image(ID_3, "RECEIVED", 0), "gamma.eu-1"),
            of_client(task_image(ID_3, "IN_PROGRESS", 1), "gamma.eu-1"),
        ),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert!(answer.batch_item_failures.is_empty());
    let groups: Vec<(String, String)> = app.jobs.sent().into_iter().map(|d| (d.message.task_id, d.group)).collect();
    assert_eq!(
        groups,
        [
            (ID_1.to_owned(), "beta".to_owned()),
            (ID_2.to_owned(), "alpha".to_owned()),
            (ID_3.to_owned(), "gamma.eu-1".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_modify_with_identical_images_sets_no_timer() {
    let app = app(Queue::default());
    let records = vec![
        modify("100", task_image(ID_1, "RECEIVED", 0), task_image(ID_1, "RECEIVED", 0)),
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), task_image(ID_2, "IN_PROGRESS", 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), []);
}

#[tokio::test]
async fn only_status_attempts_and_due_at_tell_a_change_from_a_no_op() {
    let app = app(Queue::default());
    // Other attributes differ: still a no-op as far as timers go.
    let mut touched = task_image(ID_1, "RECEIVED", 0);
    touched["updated_at"] = json!({"N": "1764201399999"});
    touched["history_omitted"] = json!({"N": "1"});
    touched["expires_at"] = json!({"N": "1799999999"});
    let no_op = modify("100", task_image(ID_1, "RECEIVED", 0), touched);
    // Only `due_at` differs (the sweeper made a task whose start was lost due again).
    let redispatched =
        modify("101", due(task_image(ID_2, "RECEIVED", 0), DUE - 60_000), task_image(ID_2, "RECEIVED", 0));
    // Only `attempts` differs.
    let recounted = modify("102", task_image(ID_3, "RECEIVED", 1), task_image(ID_3, "RECEIVED", 2));
    let answer = handle(&app, lambda_event(batch(vec![no_op, redispatched, recounted]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), [start_now(ID_2, 1), start_now(ID_3, 3)]);
}

#[tokio::test]
async fn a_started_attempt_gets_a_deadline_timer_at_its_callback_deadline() {
    let app = app(Queue::default());
    let deadline = now_plus(600_000);
    let started = modify("100", task_image(ID_1, "RECEIVED", 2), due(task_image(ID_1, "IN_PROGRESS", 3), deadline));
    let answer = handle(&app, lambda_event(batch(vec![started]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = app.jobs.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, timer(ID_1, 3, Step::Deadline, deadline));
    assert_eq!(sent[0].group, "alpha");
    assert!((599..=600).contains(&sent[0].delay_seconds), "{}", sent[0].delay_seconds);
}

#[tokio::test]
async fn a_heartbeat_that_moves_the_deadline_sets_a_deadline_timer_for_the_new_one() {
    let app = app(Queue::default());
    let (old, moved) = (now_plus(10_000), now_plus(300_000));
    let beat =
        modify("100", due(task_image(ID_1, "IN_PROGRESS", 1), old), due(task_image(ID_1, "IN_PROGRESS", 1), moved));
    let answer = handle(&app, lambda_event(batch(vec![beat]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = app.jobs.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message, timer(ID_1, 1, Step::Deadline, moved));
    assert!((299..=300).contains(&sent[0].delay_seconds), "{}", sent[0].delay_seconds);
}

#[tokio::test]
async fn changes_that_finish_a_task_set_no_timer() {
    let app = app(Queue::default());
    let records = vec![
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), task_image(ID_2, "DONE", 1)),
        modify("102", task_image(ID_3, "RECEIVED", 0), task_image(ID_3, "FAILED", 0)),
        modify("103", task_image(ID_4, "IN_PROGRESS", 2), task_image(ID_4, "FAILED", 2)),
        // A later write to a finished task (e.g. a cancelled task's late write).
        modify("104", task_image(ID_1, "FAILED", 2), due(task_image(ID_1, "FAILED", 2), DUE + 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), []);
}

#[tokio::test]
async fn a_task_returned_to_received_and_due_now_starts_the_next_attempt_at_once() {
    let app = app(Queue::default());
    // Timed out at its deadline: retried at once.
    let retry = modify("100", task_image(ID_1, "IN_PROGRESS", 1), task_image(ID_1, "RECEIVED", 1));
    // A replay of a FAILED task: a new series after three attempts.
    let replay = modify("101", task_image(ID_2, "FAILED", 3), task_image(ID_2, "RECEIVED", 3));
    let answer = handle(&app, lambda_event(batch(vec![retry, replay]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), [start_now(ID_1, 2), start_now(ID_2, 4)]);
}

#[tokio::test]
async fn a_retry_waiting_for_its_backoff_starts_when_it_ends() {
    let app = app(Queue::default());
    let in_thirty_seconds = now_plus(30_000);
    let in_five_seconds = now_plus(5_000);
    let thirty =
        modify("100", task_image(ID_1, "IN_PROGRESS", 1), due(task_image(ID_1, "RECEIVED", 1), in_thirty_seconds));
    let five = modify("101", task_image(ID_2, "IN_PROGRESS", 2), due(task_image(ID_2, "RECEIVED", 2), in_five_seconds));
    let far = modify("102", task_image(ID_3, "IN_PROGRESS", 1), due(task_image(ID_3, "RECEIVED", 1), FAR_FUTURE));
    let answer = handle(&app, lambda_event(batch(vec![thirty, five, far]))).await;
    assert!(answer.batch_item_failures.is_empty(), "waiting is not failing");

    let sent = app.jobs.sent();
    assert_eq!(
        sent.iter().map(|d| d.message.clone()).collect::<Vec<_>>(),
        [
            timer(ID_1, 2, Step::Start, in_thirty_seconds),
            timer(ID_2, 3, Step::Start, in_five_seconds),
            timer(ID_3, 2, Step::Start, FAR_FUTURE)
        ],
        "each due when its backoff ends"
    );
    let delays = delays(&sent);
    assert!([(ID_1, 29), (ID_1, 30)].contains(&delays[0]), "{delays:?}");
    assert!([(ID_2, 4), (ID_2, 5)].contains(&delays[1]), "{delays:?}");
    // Longer than the queue can delay: the longest delay, then the caller sends it on.
    assert_eq!(delays[2], (ID_3, MAX_DELAY_SECONDS));
    assert_eq!(MAX_DELAY_SECONDS, 900);
}

#[tokio::test]
async fn a_task_due_within_a_second_goes_with_no_delay() {
    let app = app(Queue::default());
    // Delays are whole seconds, rounded down: the caller waits out the rest.
    let just_ahead = now_plus(500);
    let record = modify("100", task_image(ID_1, "IN_PROGRESS", 1), due(task_image(ID_1, "RECEIVED", 1), just_ahead));
    let answer = handle(&app, lambda_event(batch(vec![record]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = app.jobs.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].message.clone(), sent[0].delay_seconds), (timer(ID_1, 2, Step::Start, just_ahead), 0));
}

#[tokio::test]
async fn a_remove_sets_no_timer() {
    let app = app(Queue::default());
    // A TTL deletion of a task that never left RECEIVED: still nothing to do.
    let mut removal = record("REMOVE", "100", Some(task_image(ID_1, "RECEIVED", 0)), None);
    removal["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    let answer = handle(&app, lambda_event(batch(vec![removal]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), []);
}

#[tokio::test]
async fn an_item_that_is_not_a_task_is_ignored() {
    let app = app(Queue::default());
    let other = record(
        "INSERT",
        "100",
        None,
        Some(json!({
            "pk": {"S": "CLIENT#alpha"},
            "status": {"S": "RECEIVED"},
            "attempts": {"N": "0"},
            "due_at": {"N": "1764201387123"},
            "note": {"S": "anything"}
        })),
    );
    let answer = handle(&app, lambda_event(batch(vec![other]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.jobs.sent(), []);
}

#[tokio::test]
async fn an_insert_of_a_payload_item_sets_no_timer() {
    let app = app(Queue::default());
    // Ingest writes a task as two items: its state (a timer) and its payload (not a task).
    let inline = record(
        "INSERT",
        "100",
        None,
        Some(json!({
            "pk": {"S": payload_item_key(ID_1)},
            "payload": {"S": "{\"n\":1}"},
            "expires_at": {"N": "1764374187"}
        })),
    );
    let stored = record(
        "INSERT",
        "101",
        None,
        Some(json!({
            "pk": {"S": payload_item_key(ID_2)},
            "payload_key": {"S": format!("payloads/{ID_2}")},
            "expires_at": {"N": "1764374187"}
        })),
    );
    let answer = handle(&app, lambda_event(batch(vec![inline, insert("102", ID_1), stored]))).await;
    assert!(answer.batch_item_failures.is_empty(), "a payload item is no corrupt task");
    assert_eq!(app.jobs.sent(), [start_now(ID_1, 1)]);
}

#[tokio::test]
async fn a_corrupt_task_image_is_reported_by_sequence_number_and_the_rest_still_go() {
    let app = app(Queue::default());
    let mut bad_status = task_image(ID_2, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "PAUSED"});
    let mut no_attempts = task_image(ID_3, "RECEIVED", 0);
    no_attempts.as_object_mut().unwrap().remove("attempts");
    let bad_id = json!({
        "pk": {"S": "TASK#not-a-uuid"},
        "client_id": {"S": "alpha"},
        "status": {"S": "RECEIVED"},
        "attempts": {"N": "0"},
        "due_at": {"N": "1764201387123"}
    });
    let mut no_due = task_image(ID_4, "RECEIVED", 0);
    no_due.as_object_mut().unwrap().remove("due_at");
    let records = vec![
        insert("1405400000000002063282901", ID_1),
        record("INSERT", "1405400000000002063282902", None, Some(bad_status)),
        record("INSERT", "1405400000000002063282903", None, Some(no_attempts)),
        record("INSERT", "1405400000000002063282904", None, Some(bad_id)),
        record("INSERT", "1405400000000002063282905", None, Some(no_due)),
        insert("1405400000000002063282906", "8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a"),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(
        failures(&answer),
        [
            "1405400000000002063282902",
            "1405400000000002063282903",
            "1405400000000002063282904",
            "1405400000000002063282905"
        ]
    );
    assert_eq!(app.jobs.sent(), [start_now(ID_1, 1), start_now("8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a", 1)]);
}

#[tokio::test]
async fn a_task_image_without_its_client_is_unreadable() {
    let app = app(Queue::default());
    // The message group is the client: a timer without one cannot be set.
    let mut anonymous = task_image(ID_1, "RECEIVED", 0);
    anonymous.as_object_mut().unwrap().remove("client_id");
    let mut started = task_image(ID_3, "IN_PROGRESS", 1);
    started.as_object_mut().unwrap().remove("client_id");
    let records = vec![
        record("INSERT", "100", None, Some(anonymous)),
        insert("101", ID_2),
        modify("102", task_image(ID_3, "RECEIVED", 0), started),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["100", "102"]);
    assert_eq!(app.jobs.sent(), [start_now(ID_2, 1)]);
}

#[tokio::test]
async fn an_unreadable_old_image_counts_as_a_change() {
    let app = app(Queue::default());
    // The old image only tells a no-op from a change; unreadable, the record is a change.
    let mut bad_status = task_image(ID_1, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "PAUSED"});
    let mut no_due = task_image(ID_2, "IN_PROGRESS", 1);
    no_due.as_object_mut().unwrap().remove("due_at");
    let mut no_client = task_image(ID_3, "RECEIVED", 0);
    no_client.as_object_mut().unwrap().remove("client_id");
    let records = vec![
        modify("100", bad_status, task_image(ID_1, "RECEIVED", 0)),
        modify("101", no_due, task_image(ID_2, "RECEIVED", 1)),
        modify("102", no_client, task_image(ID_3, "RECEIVED", 0)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.jobs.sent(), [start_now(ID_1, 1), start_now(ID_2, 2), start_now(ID_3, 1)]);
}

#[tokio::test]
async fn an_unreadable_new_image_of_a_task_still_fails_its_record() {
    let app = app(Queue::default());
    let mut bad_status = task_image(ID_1, "RECEIVED", 1);
    bad_status["status"] = json!({"S": "PAUSED"});
    let records = vec![
        modify("100", task_image(ID_1, "IN_PROGRESS", 1), bad_status),
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), task_image(ID_2, "RECEIVED", 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["100"]);
    assert_eq!(app.jobs.sent(), [start_now(ID_2, 2)]);
}

#[tokio::test]
async fn a_record_without_a_sequence_number_is_reported_by_its_event_id() {
    let app = app(Queue::default());
    let mut bad_status = task_image(ID_1, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "??"});
    let mut broken = record("INSERT", "100", None, Some(bad_status));
    broken["dynamodb"].as_object_mut().unwrap().remove("SequenceNumber");
    broken["eventID"] = json!("f07f8ca4b0b26cb9c4e5e77e69f274ee");
    let answer = handle(&app, lambda_event(batch(vec![broken]))).await;
    assert_eq!(failures(&answer), ["f07f8ca4b0b26cb9c4e5e77e69f274ee"]);
}

#[tokio::test]
async fn a_send_failure_reports_exactly_that_records_sequence_number() {
    let app = app(Queue::refusing(ID_2));
    let records = vec![
        insert("1405400000000002063283001", ID_1),
        insert("1405400000000002063283002", ID_2),
        modify("1405400000000002063283003", task_image(ID_1, "RECEIVED", 0), task_image(ID_1, "RECEIVED", 0)),
        insert("1405400000000002063283004", ID_3),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["1405400000000002063283002"]);
    // All three timers were sent, in stream order, in one call.
    assert_eq!(*app.jobs.calls.lock().unwrap(), [vec![start_now(ID_1, 1), start_now(ID_2, 1), start_now(ID_3, 1)]]);
}

#[tokio::test]
async fn a_queue_refusing_everything_fails_only_the_records_that_set_a_timer() {
    let app = App { jobs: MemoryQueue::default(), deliveries: MemoryQueue::default() };
    app.jobs.refuse(true);
    let mut removal = record("REMOVE", "102", Some(task_image(ID_2, "RECEIVED", 0)), None);
    removal["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    let records = vec![
        insert("100", ID_1),
        modify("101", task_image(ID_3, "IN_PROGRESS", 1), task_image(ID_3, "DONE", 1)),
        removal,
        modify("103", task_image(ID_4, "RECEIVED", 0), task_image(ID_4, "IN_PROGRESS", 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["100", "103"]);
    assert_eq!(app.jobs.sent(), []);

    // Once the queue takes messages again, the retried records set their timers.
    app.jobs.refuse(false);
    let answer = handle(&app, lambda_event(batch(vec![insert("100", ID_1)]))).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.jobs.sent(), [start_now(ID_1, 1)]);
}

#[tokio::test]
async fn messages_the_queue_gives_no_result_for_are_failures() {
    let partial = app(Queue::answering_only(1));
    let records = vec![
        insert("1405400000000002063283101", ID_1),
        insert("1405400000000002063283102", ID_2),
        insert("1405400000000002063283103", ID_3),
    ];
    let answer = handle(&partial, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["1405400000000002063283102", "1405400000000002063283103"]);
    assert_eq!(partial.jobs.sent(), [start_now(ID_1, 1), start_now(ID_2, 1), start_now(ID_3, 1)]);

    let silent = app(Queue::answering_only(0));
    let answer = handle(&silent, lambda_event(batch(vec![insert("900", ID_1)]))).await;
    assert_eq!(failures(&answer), ["900"]);
}

#[tokio::test]
async fn the_answer_is_the_partial_batch_response_lambda_reads() {
    let failing = app(Queue::refusing(ID_1));
    let answer = handle(&failing, lambda_event(batch(vec![insert("900", ID_1)]))).await;
    assert_eq!(serde_json::to_value(&answer).unwrap(), json!({"batchItemFailures": [{"itemIdentifier": "900"}]}));

    let healthy = app(Queue::default());
    let answer = handle(&healthy, lambda_event(batch(vec![insert("901", ID_1)]))).await;
    assert_eq!(serde_json::to_value(&answer).unwrap(), json!({"batchItemFailures": []}));
}

// ---- completion-webhook deliveries: the deliveries queue ----------------------------------

/// The same image, of a task with a completion webhook.
fn notifying(mut image: Value) -> Value {
    image["webhook_url"] = json!({"S": "https://hooks.example.com/done?token=t"});
    image
}

/// The same image, its delivery recorded as `state` after `attempts` attempts, the next due at
/// `next_at` (epoch milliseconds).
fn delivery(mut image: Value, state: &str, attempts: u32, next_at: Option<i64>) -> Value {
    image["webhook_state"] = json!({"S": state});
    image["webhook_attempts"] = json!({"N": attempts.to_string()});
    if let Some(next_at) = next_at {
        image["webhook_next_at"] = json!({"N": next_at.to_string()});
    }
    image
}

fn deliver_now(task_id: &str, attempt: u32, due_at: i64) -> Dispatch {
    Dispatch { message: timer(task_id, attempt, Step::Deliver, due_at), group: "alpha".into(), delay_seconds: 0 }
}

#[tokio::test]
async fn a_task_that_ends_with_a_webhook_sets_its_first_delivery_on_the_deliveries_queue() {
    let app = app(Queue::default());
    let records = vec![
        modify("100", notifying(task_image(ID_1, "IN_PROGRESS", 1)), notifying(task_image(ID_1, "DONE", 1))),
        insert("101", ID_2),
        modify("102", notifying(task_image(ID_3, "RECEIVED", 0)), notifying(task_image(ID_3, "FAILED", 0))),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.deliveries.sent(), [deliver_now(ID_1, 1, DUE), deliver_now(ID_3, 1, DUE)]);
    assert_eq!(app.jobs.sent(), [start_now(ID_2, 1)], "jobs never go to the deliveries queue, nor deliveries here");
    // Both queues were sent to in one call each.
    assert_eq!(app.deliveries.calls.lock().unwrap().len(), 1);
    assert_eq!(app.jobs.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_attempt_sets_the_next_one_when_it_is_due_and_a_final_delivery_sets_none() {
    let app = app(Queue::default());
    let next_at = now_plus(300_000);
    let ended = notifying(task_image(ID_1, "DONE", 1));
    let retrying = modify("100", ended.clone(), delivery(ended.clone(), "pending", 1, Some(next_at)));
    let delivered = modify(
        "101",
        notifying(task_image(ID_2, "DONE", 1)),
        delivery(notifying(task_image(ID_2, "DONE", 1)), "delivered", 1, None),
    );
    let given_up = modify(
        "102",
        delivery(notifying(task_image(ID_3, "FAILED", 1)), "pending", 7, Some(DUE)),
        delivery(notifying(task_image(ID_3, "FAILED", 1)), "failed", 8, None),
    );
    // Another write to an ended task whose recorded delivery did not change.
    let waiting = delivery(notifying(task_image(ID_4, "DONE", 1)), "pending", 1, Some(next_at));
    let unchanged = modify("103", waiting.clone(), due(waiting, DUE + 1));
    let answer = handle(&app, lambda_event(batch(vec![retrying, delivered, given_up, unchanged]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = app.deliveries.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].message.clone(), sent[0].group.as_str()), (timer(ID_1, 2, Step::Deliver, next_at), "alpha"));
    assert!((299..=300).contains(&sent[0].delay_seconds), "{}", sent[0].delay_seconds);
    assert_eq!(app.jobs.sent(), []);
}

#[tokio::test]
async fn a_deliveries_queue_refusing_fails_only_the_records_of_deliveries() {
    let app = App { jobs: Queue::default(), deliveries: Queue::refusing(ID_1) };
    let records = vec![
        modify("100", notifying(task_image(ID_1, "IN_PROGRESS", 1)), notifying(task_image(ID_1, "DONE", 1))),
        insert("101", ID_2),
        modify("102", notifying(task_image(ID_3, "IN_PROGRESS", 1)), notifying(task_image(ID_3, "DONE", 1))),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["100"]);
    assert_eq!(app.jobs.sent(), [start_now(ID_2, 1)]);
    assert_eq!(app.deliveries.sent(), [deliver_now(ID_1, 1, DUE), deliver_now(ID_3, 1, DUE)]);

    // A deliveries queue that answers for none of them has confirmed none.
    let silent = App { jobs: Queue::default(), deliveries: Queue::answering_only(0) };
    let ended = modify("200", notifying(task_image(ID_1, "IN_PROGRESS", 1)), notifying(task_image(ID_1, "DONE", 1)));
    let answer = handle(&silent, lambda_event(batch(vec![ended, insert("201", ID_2)]))).await;
    assert_eq!(failures(&answer), ["200"]);
}
