use super::*;

use std::sync::Mutex;

use lambda_runtime::Context;
use serde_json::{Value, json};
use taskfleet_adapters::table::payload_item_key;
use taskfleet_core::PublishError;

/// A batch from the tasks table's stream as Lambda delivers it, in the shape of
/// aws_lambda_events' `example-dynamodb-event.json` (NEW_AND_OLD_IMAGES), with task items laid
/// out as `taskfleet_adapters::record::TaskRecord` stores them:
///
/// 1. INSERT of a new RECEIVED task, due at once (dispatch attempt 1),
/// 2. MODIFY RECEIVED → IN_PROGRESS (the caller started attempt 1, due by its callback deadline:
///    nothing to dispatch),
/// 3. MODIFY of a RECEIVED task with identical images (a no-op write: nothing),
/// 4. REMOVE by TTL (nothing),
/// 5. INSERT of an item that is not a task (nothing).
///
/// A task's payload is not in its state item: it is an item of its own (see
/// `an_insert_of_a_payload_item_publishes_nothing`).
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

/// A topic that records what it was asked to publish, refuses the messages of chosen tasks and,
/// when told, answers only the first `answered` results.
#[derive(Default)]
struct Topic {
    refuse: Vec<String>,
    answered: Option<usize>,
    calls: Mutex<Vec<Vec<DispatchMessage>>>,
}

impl Topic {
    fn refusing(task_id: &str) -> Self {
        Self { refuse: vec![task_id.to_owned()], ..Self::default() }
    }

    fn answering_only(answered: usize) -> Self {
        Self { answered: Some(answered), ..Self::default() }
    }

    /// Every message published, in order, over all calls.
    fn published(&self) -> Vec<DispatchMessage> {
        self.calls.lock().unwrap().concat()
    }
}

impl Publisher for Topic {
    async fn publish(&self, messages: &[DispatchMessage]) -> Vec<Result<(), PublishError>> {
        self.calls.lock().unwrap().push(messages.to_vec());
        messages
            .iter()
            .take(self.answered.unwrap_or(usize::MAX))
            .map(|message| {
                if self.refuse.contains(&message.task_id) {
                    Err(PublishError("Throttling: rate exceeded".into()))
                } else {
                    Ok(())
                }
            })
            .collect()
    }
}

fn app(topic: Topic) -> App<Topic> {
    App { publisher: topic }
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

fn message(task_id: &str, attempt: u32) -> DispatchMessage {
    DispatchMessage { task_id: task_id.to_owned(), attempt }
}

fn now_plus(millis: i64) -> i64 {
    Timestamp::now().as_millis() + millis
}

const ID_1: &str = "4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c";
const ID_2: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
const ID_3: &str = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e";
const ID_4: &str = "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";

#[tokio::test]
async fn a_mixed_batch_dispatches_only_the_new_received_task() {
    let app = app(Topic::default());
    let answer = handle(&app, lambda_event(serde_json::from_str(MIXED_BATCH).unwrap())).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.publisher.published(), [message("0b7e8c1a-3f5d-4c2e-9a6b-1d2c3e4f5a6b", 1)]);
}

#[tokio::test]
async fn an_insert_of_a_received_task_publishes_attempt_one() {
    let app = app(Topic::default());
    let answer = handle(&app, lambda_event(batch(vec![insert("100", ID_1)]))).await;
    assert!(answer.batch_item_failures.is_empty());
    let published = app.publisher.published();
    assert_eq!(published, [message(ID_1, 1)]);
    // What goes on the topic is exactly the contract the caller parses.
    assert_eq!(serde_json::to_value(&published[0]).unwrap(), json!({"task_id": ID_1, "attempt": 1}));
}

#[tokio::test]
async fn a_modify_with_identical_received_images_publishes_nothing() {
    let app = app(Topic::default());
    let no_op = modify("100", task_image(ID_1, "RECEIVED", 0), task_image(ID_1, "RECEIVED", 0));
    let answer = handle(&app, lambda_event(batch(vec![no_op]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn only_status_attempts_and_due_at_tell_a_change_from_a_no_op() {
    let app = app(Topic::default());
    // Other attributes differ: still a no-op as far as dispatching goes.
    let mut touched = task_image(ID_1, "RECEIVED", 0);
    touched["updated_at"] = json!({"N": "1764201399999"});
    touched["history_omitted"] = json!({"N": "1"});
    touched["expires_at"] = json!({"N": "1799999999"});
    let no_op = modify("100", task_image(ID_1, "RECEIVED", 0), touched);
    // Only `due_at` differs: a change of a RECEIVED task that is due, so it is dispatched.
    let rescheduled =
        modify("101", due(task_image(ID_2, "RECEIVED", 0), DUE - 60_000), task_image(ID_2, "RECEIVED", 0));
    // Only `attempts` differs.
    let recounted = modify("102", task_image(ID_3, "RECEIVED", 1), task_image(ID_3, "RECEIVED", 2));
    let answer = handle(&app, lambda_event(batch(vec![no_op, rescheduled, recounted]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), [message(ID_2, 1), message(ID_3, 3)]);
}

#[tokio::test]
async fn modifies_that_do_not_end_in_received_publish_nothing() {
    let app = app(Topic::default());
    let records = vec![
        modify("100", task_image(ID_1, "RECEIVED", 0), task_image(ID_1, "IN_PROGRESS", 1)),
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), task_image(ID_2, "DONE", 1)),
        modify("102", task_image(ID_3, "RECEIVED", 0), task_image(ID_3, "FAILED", 0)),
        modify("103", task_image(ID_4, "IN_PROGRESS", 2), task_image(ID_4, "FAILED", 2)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn a_task_returned_to_received_and_due_now_publishes_the_next_attempt() {
    let app = app(Topic::default());
    let retry = modify("100", task_image(ID_1, "IN_PROGRESS", 1), task_image(ID_1, "RECEIVED", 1));
    // A replay of a FAILED task: a new series after three attempts.
    let replay = modify("101", task_image(ID_2, "FAILED", 3), task_image(ID_2, "RECEIVED", 3));
    let answer = handle(&app, lambda_event(batch(vec![retry, replay]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), [message(ID_1, 2), message(ID_2, 4)]);
}

#[tokio::test]
async fn a_retry_waiting_for_its_time_is_left_to_the_sweeper() {
    let app = app(Topic::default());
    let far = modify("100", task_image(ID_1, "IN_PROGRESS", 1), due(task_image(ID_1, "RECEIVED", 1), FAR_FUTURE));
    let in_a_minute =
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), due(task_image(ID_2, "RECEIVED", 1), now_plus(60_000)));
    let in_five_seconds =
        modify("102", task_image(ID_3, "IN_PROGRESS", 2), due(task_image(ID_3, "RECEIVED", 2), now_plus(5_000)));
    let answer = handle(&app, lambda_event(batch(vec![far, in_a_minute, in_five_seconds]))).await;
    assert!(answer.batch_item_failures.is_empty(), "waiting is not failing");
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn a_task_due_within_a_second_is_published_at_once() {
    let app = app(Topic::default());
    // Writers' clocks differ a little: a due time just ahead of the dispatcher's clock is now.
    let just_ahead =
        modify("100", task_image(ID_1, "IN_PROGRESS", 1), due(task_image(ID_1, "RECEIVED", 1), now_plus(500)));
    let answer = handle(&app, lambda_event(batch(vec![just_ahead]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), [message(ID_1, 2)]);
}

#[tokio::test]
async fn a_remove_publishes_nothing() {
    let app = app(Topic::default());
    // A TTL deletion of a task that never left RECEIVED: still nothing to dispatch.
    let mut removal = record("REMOVE", "100", Some(task_image(ID_1, "RECEIVED", 0)), None);
    removal["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    let answer = handle(&app, lambda_event(batch(vec![removal]))).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn an_item_that_is_not_a_task_is_ignored() {
    let app = app(Topic::default());
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
    assert_eq!(app.publisher.published(), []);
}

#[tokio::test]
async fn an_insert_of_a_payload_item_publishes_nothing() {
    let app = app(Topic::default());
    // Ingest writes a task as two items: its state (dispatched) and its payload (not a task).
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
    assert_eq!(app.publisher.published(), [message(ID_1, 1)]);
}

#[tokio::test]
async fn a_corrupt_task_image_is_reported_by_sequence_number_and_the_rest_still_publish() {
    let app = app(Topic::default());
    let mut bad_status = task_image(ID_2, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "PAUSED"});
    let mut no_attempts = task_image(ID_3, "RECEIVED", 0);
    no_attempts.as_object_mut().unwrap().remove("attempts");
    let bad_id = json!({
        "pk": {"S": "TASK#not-a-uuid"},
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
    assert_eq!(app.publisher.published(), [message(ID_1, 1), message("8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a", 1)]);
}

#[tokio::test]
async fn an_unreadable_old_image_counts_as_a_change() {
    let app = app(Topic::default());
    // The old image only tells a no-op from a change; unreadable, the record is a change.
    let mut bad_status = task_image(ID_1, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "PAUSED"});
    let mut no_due = task_image(ID_2, "IN_PROGRESS", 1);
    no_due.as_object_mut().unwrap().remove("due_at");
    let records = vec![
        modify("100", bad_status, task_image(ID_1, "RECEIVED", 0)),
        modify("101", no_due, task_image(ID_2, "RECEIVED", 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(app.publisher.published(), [message(ID_1, 1), message(ID_2, 2)]);
}

#[tokio::test]
async fn an_unreadable_new_image_of_a_task_still_fails_its_record() {
    let app = app(Topic::default());
    let mut bad_status = task_image(ID_1, "RECEIVED", 1);
    bad_status["status"] = json!({"S": "PAUSED"});
    let records = vec![
        modify("100", task_image(ID_1, "IN_PROGRESS", 1), bad_status),
        modify("101", task_image(ID_2, "IN_PROGRESS", 1), task_image(ID_2, "RECEIVED", 1)),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["100"]);
    assert_eq!(app.publisher.published(), [message(ID_2, 2)]);
}

#[tokio::test]
async fn a_record_without_a_sequence_number_is_reported_by_its_event_id() {
    let app = app(Topic::default());
    let mut bad_status = task_image(ID_1, "RECEIVED", 0);
    bad_status["status"] = json!({"S": "??"});
    let mut broken = record("INSERT", "100", None, Some(bad_status));
    broken["dynamodb"].as_object_mut().unwrap().remove("SequenceNumber");
    broken["eventID"] = json!("f07f8ca4b0b26cb9c4e5e77e69f274ee");
    let answer = handle(&app, lambda_event(batch(vec![broken]))).await;
    assert_eq!(failures(&answer), ["f07f8ca4b0b26cb9c4e5e77e69f274ee"]);
}

#[tokio::test]
async fn a_publish_failure_reports_exactly_that_records_sequence_number() {
    let app = app(Topic::refusing(ID_2));
    let records = vec![
        insert("1405400000000002063283001", ID_1),
        insert("1405400000000002063283002", ID_2),
        modify("1405400000000002063283003", task_image(ID_1, "RECEIVED", 0), task_image(ID_1, "RECEIVED", 0)),
        insert("1405400000000002063283004", ID_3),
    ];
    let answer = handle(&app, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["1405400000000002063283002"]);
    // All three dispatches were attempted, in stream order, in one call.
    assert_eq!(*app.publisher.calls.lock().unwrap(), [vec![message(ID_1, 1), message(ID_2, 1), message(ID_3, 1)]]);
}

#[tokio::test]
async fn messages_the_publisher_gives_no_result_for_are_failures() {
    let partial = app(Topic::answering_only(1));
    let records = vec![
        insert("1405400000000002063283101", ID_1),
        insert("1405400000000002063283102", ID_2),
        insert("1405400000000002063283103", ID_3),
    ];
    let answer = handle(&partial, lambda_event(batch(records))).await;
    assert_eq!(failures(&answer), ["1405400000000002063283102", "1405400000000002063283103"]);
    assert_eq!(partial.publisher.published(), [message(ID_1, 1), message(ID_2, 1), message(ID_3, 1)]);

    let silent = app(Topic::answering_only(0));
    let answer = handle(&silent, lambda_event(batch(vec![insert("900", ID_1)]))).await;
    assert_eq!(failures(&answer), ["900"]);
}

#[tokio::test]
async fn the_answer_is_the_partial_batch_response_lambda_reads() {
    let failing = app(Topic::refusing(ID_1));
    let answer = handle(&failing, lambda_event(batch(vec![insert("900", ID_1)]))).await;
    assert_eq!(serde_json::to_value(&answer).unwrap(), json!({"batchItemFailures": [{"itemIdentifier": "900"}]}));

    let healthy = app(Topic::default());
    let answer = handle(&healthy, lambda_event(batch(vec![insert("901", ID_1)]))).await;
    assert_eq!(serde_json::to_value(&answer).unwrap(), json!({"batchItemFailures": []}));
}
