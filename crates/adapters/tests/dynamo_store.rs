//! DynamoStore against the AWS emulator (moto server) through the real SDK: the item it writes,
//! its conditional transitions (including a lost race), and the counts over the status index.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{fresh_store, task_in};
use serde_json::{Value, json};
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::lifecycle::{Outcome, Transition};
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{StoreError, Task, TaskId, TaskStatus, Timestamp, TtlPolicy};

const TTL: TtlPolicy = TtlPolicy { task_ttl_seconds: 3_600, result_retention_seconds: 86_400 };

/// A fixed, realistic instant (2025-11-26T23:56:27.123Z), so every expected value is exact.
const T0: i64 = 1_764_201_387_123;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

/// A payload that only survives storage if it is kept exactly: nesting deeper than DynamoDB
/// maps allow (32), integers beyond f64 precision, key order, unicode, nulls, empty containers.
fn awkward_payload() -> Value {
    let mut deep = json!({"bottom": [1, 2.5, -0.0]});
    for level in 0..40 {
        deep = json!({ format!("level{level}"): deep });
    }
    json!({
        "zeta": 1,
        "alpha": u64::MAX,
        "min": i64::MIN,
        "float": 0.30000000000000004,
        "text": "ünïcødé \u{1F680} \"quoted\" \n newline",
        "empty_obj": {},
        "empty_arr": [],
        "nothing": null,
        "flags": [true, false],
        "deep": deep,
    })
}

async fn received_task(store: &DynamoStore, payload: Value) -> Task {
    let task = Task::received(common::client_id(), payload, at(0), TTL.new_task_expiry(at(0)));
    store.insert(&task).await.expect("insert");
    task
}

async fn in_progress_task(store: &DynamoStore) -> Task {
    let task = received_task(store, json!({"n": 1})).await;
    match store.apply(&Transition::start(&task.task_id, 1, at(1_000))).await.expect("start") {
        WriteOutcome::Applied(task) => task,
        other => panic!("start of a fresh task was not applied: {other:?}"),
    }
}

fn succeeded(task_id: &TaskId, result: Value, offset_ms: i64) -> Transition {
    Transition::finish(task_id, Outcome::Succeeded { result }, at(offset_ms), &TTL)
}

fn failed(task_id: &TaskId, error: &str, offset_ms: i64) -> Transition {
    Transition::finish(task_id, Outcome::Failed { error: error.to_owned() }, at(offset_ms), &TTL)
}

async fn raw_item(store: &DynamoStore, task_id: &TaskId) -> std::collections::HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key(table::PK, AttributeValue::S(table::task_key(task_id.as_str())))
        .consistent_read(true)
        .send()
        .await
        .expect("raw GetItem")
        .item
        .expect("the item is stored")
}

#[tokio::test]
async fn insert_then_get_round_trips_the_task_exactly() {
    let store = fresh_store().await;
    let task = received_task(&store, awkward_payload()).await;

    let got = store.get(&task.task_id).await.expect("get").expect("the inserted task is found");

    assert_eq!(got, task);
    assert_eq!(got.status, TaskStatus::Received);
    assert_eq!(got.payload, awkward_payload());
    assert_eq!(got.payload.to_string(), awkward_payload().to_string());
    assert_eq!(got.result, None);
    assert_eq!(got.error, None);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.created_at, at(0));
    assert_eq!(got.updated_at, at(0));
    assert_eq!(got.expires_at, at(0).as_epoch_seconds() + 3_600);
}

#[tokio::test]
async fn inserting_a_taken_id_fails_and_keeps_the_first_task() {
    let store = fresh_store().await;
    let first = received_task(&store, json!({"first": true})).await;

    let mut second = first.clone();
    second.payload = json!({"second": true});
    second.status = TaskStatus::Done;
    assert_eq!(store.insert(&second).await, Err(StoreError::AlreadyExists));
    assert_eq!(store.insert(&first).await, Err(StoreError::AlreadyExists));

    assert_eq!(store.get(&first.task_id).await.unwrap(), Some(first));
}

#[tokio::test]
async fn an_unknown_id_is_none() {
    let store = fresh_store().await;
    received_task(&store, json!({})).await;
    assert_eq!(store.get(&TaskId::generate()).await.unwrap(), None);
}

#[tokio::test]
async fn the_stored_item_has_the_documented_shape() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({"b": 1.50, "a": [1, {"x": null}]})).await;

    let item = raw_item(&store, &task.task_id).await;

    assert_eq!(item.get("pk"), Some(&AttributeValue::S(format!("TASK#{}", task.task_id))));
    assert_eq!(item.get("task_id"), Some(&AttributeValue::S(task.task_id.to_string())));
    assert_eq!(item.get("client_id"), Some(&AttributeValue::S("acme-corp_1.eu".into())));
    assert_eq!(item.get("status"), Some(&AttributeValue::S("RECEIVED".into())));
    // The TTL attribute must be a Number in epoch *seconds*, or DynamoDB never expires the item.
    let expected_expiry = T0 / 1000 + 3_600;
    assert_eq!(item.get("expires_at"), Some(&AttributeValue::N(expected_expiry.to_string())));
    let AttributeValue::N(expiry) = &item["expires_at"] else { unreachable!() };
    let expiry: i64 = expiry.parse().unwrap();
    assert!((1_000_000_000..10_000_000_000).contains(&expiry), "expires_at {expiry} is not epoch seconds");
    // updated_at is the status index's sort key: a Number, in milliseconds.
    assert_eq!(item.get("updated_at"), Some(&AttributeValue::N(T0.to_string())));
    assert_eq!(item.get("created_at"), Some(&AttributeValue::N(T0.to_string())));
    assert_eq!(item.get("attempts"), Some(&AttributeValue::N("0".into())));
    // Payload is JSON text, byte for byte what serde_json writes.
    assert_eq!(item.get("payload"), Some(&AttributeValue::S(r#"{"a":[1,{"x":null}],"b":1.5}"#.into())));
    assert!(!item.contains_key("result"), "no result before DONE");
    assert!(!item.contains_key("error"), "no error before FAILED");
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["attempts", "client_id", "created_at", "expires_at", "payload", "pk", "status", "task_id", "updated_at"]
    );
}

#[tokio::test]
async fn a_finished_item_stores_its_result_and_retention_expiry() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let outcome = store.apply(&succeeded(&task.task_id, json!({"ok": [1, 2]}), 5_000)).await.unwrap();
    assert!(matches!(outcome, WriteOutcome::Applied(_)), "{outcome:?}");

    let item = raw_item(&store, &task.task_id).await;
    assert_eq!(item.get("status"), Some(&AttributeValue::S("DONE".into())));
    assert_eq!(item.get("result"), Some(&AttributeValue::S(r#"{"ok":[1,2]}"#.into())));
    assert_eq!(item.get("expires_at"), Some(&AttributeValue::N(((T0 + 5_000) / 1000 + 86_400).to_string())));
    assert_eq!(item.get("updated_at"), Some(&AttributeValue::N((T0 + 5_000).to_string())));
    assert_eq!(item.get("attempts"), Some(&AttributeValue::N("1".into())));
    assert!(!item.contains_key("error"));
}

#[tokio::test]
async fn starting_applies_once_and_a_repeat_is_rejected_with_the_current_task() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({"job": "x"})).await;
    let start = Transition::start(&task.task_id, 1, at(2_000));

    let started = match store.apply(&start).await.unwrap() {
        WriteOutcome::Applied(started) => started,
        other => panic!("first start not applied: {other:?}"),
    };
    let expected = Task { status: TaskStatus::InProgress, attempts: 1, updated_at: at(2_000), ..task.clone() };
    assert_eq!(started, expected);

    // The same dispatch again (a repeated message) must not apply.
    assert_eq!(store.apply(&start).await.unwrap(), WriteOutcome::Rejected(Some(expected.clone())));
    // Nor may a later timestamp of the same attempt.
    assert_eq!(
        store.apply(&Transition::start(&task.task_id, 1, at(9_000))).await.unwrap(),
        WriteOutcome::Rejected(Some(expected.clone()))
    );
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(expected));
}

#[tokio::test]
async fn a_start_for_the_wrong_attempt_is_rejected() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    assert_eq!(
        store.apply(&Transition::start(&task.task_id, 2, at(1_000))).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn finishing_a_task_that_never_started_is_rejected() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;

    assert_eq!(
        store.apply(&succeeded(&task.task_id, json!(1), 3_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    assert_eq!(
        store.apply(&failed(&task.task_id, "boom", 3_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_transition_of_a_missing_task_is_rejected_and_creates_nothing() {
    let store = fresh_store().await;
    let missing = TaskId::generate();

    assert_eq!(store.apply(&Transition::start(&missing, 1, at(0))).await.unwrap(), WriteOutcome::Rejected(None));
    assert_eq!(store.apply(&failed(&missing, "boom", 0)).await.unwrap(), WriteOutcome::Rejected(None));
    assert_eq!(store.get(&missing).await.unwrap(), None);
    assert_eq!(store.count(TaskStatus::InProgress, None).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_outcomes_exactly_one_wins() {
    let store = fresh_store().await;
    let mut wins = [0u32; 2];
    for round in 0..20 {
        let task = in_progress_task(&store).await;
        let result = json!({"round": round});
        let done = succeeded(&task.task_id, result.clone(), 5_000);
        let fail = failed(&task.task_id, "external service failed", 5_001);

        let (a, b) = (store.clone(), store.clone());
        let (done_outcome, fail_outcome) = tokio::join!(
            tokio::spawn(async move { a.apply(&done).await }),
            tokio::spawn(async move { b.apply(&fail).await }),
        );
        let done_outcome = done_outcome.unwrap().unwrap();
        let fail_outcome = fail_outcome.unwrap().unwrap();

        let stored = store.get(&task.task_id).await.unwrap().unwrap();
        match (&done_outcome, &fail_outcome) {
            (WriteOutcome::Applied(winner), WriteOutcome::Rejected(Some(seen))) => {
                wins[0] += 1;
                assert_eq!(winner.status, TaskStatus::Done, "round {round}");
                assert_eq!(winner.result.as_ref(), Some(&result), "round {round}");
                assert_eq!(winner.error, None, "round {round}");
                assert_eq!(seen, winner, "the loser sees the winner (round {round})");
                assert_eq!(&stored, winner, "round {round}");
            }
            (WriteOutcome::Rejected(Some(seen)), WriteOutcome::Applied(winner)) => {
                wins[1] += 1;
                assert_eq!(winner.status, TaskStatus::Failed, "round {round}");
                assert_eq!(winner.error.as_deref(), Some("external service failed"), "round {round}");
                assert_eq!(winner.result, None, "round {round}");
                assert_eq!(seen, winner, "the loser sees the winner (round {round})");
                assert_eq!(&stored, winner, "round {round}");
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        }
        // Exactly one outcome is stored, never both.
        assert!(stored.result.is_some() != stored.error.is_some(), "round {round}: {stored:?}");
        assert_eq!(stored.attempts, 1, "round {round}");
    }
    eprintln!("race winners (DONE, FAILED): {wins:?}");
    assert_eq!(wins[0] + wins[1], 20, "wins (DONE, FAILED): {wins:?}");
}

#[tokio::test]
async fn late_and_duplicate_events_never_move_a_finished_task() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let done = match store.apply(&succeeded(&task.task_id, json!({"answer": 42}), 5_000)).await.unwrap() {
        WriteOutcome::Applied(done) => done,
        other => panic!("finish not applied: {other:?}"),
    };
    assert_eq!(done.status, TaskStatus::Done);
    assert_eq!(done.result, Some(json!({"answer": 42})));

    let late = [
        Transition::start(&task.task_id, 1, at(6_000)),
        Transition::start(&task.task_id, 2, at(6_000)),
        succeeded(&task.task_id, json!({"answer": 42}), 6_000),
        succeeded(&task.task_id, json!({"answer": "other"}), 6_000),
        failed(&task.task_id, "late failure", 6_000),
        Transition::fail(&task.task_id, TaskStatus::Received, "gave up", at(6_000), &TTL).unwrap(),
        Transition::fail(&task.task_id, TaskStatus::InProgress, "gave up", at(6_000), &TTL).unwrap(),
        Transition::fail(&task.task_id, TaskStatus::InProgress, "gave up", at(6_000), &TTL).unwrap().for_attempt(1),
    ];
    for transition in &late {
        assert_eq!(
            store.apply(transition).await.unwrap(),
            WriteOutcome::Rejected(Some(done.clone())),
            "{transition:?}"
        );
    }
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn counts_and_backlog_age_come_from_the_status_index() {
    let store = fresh_store().await;
    // Nothing stored yet.
    for status in TaskStatus::ALL {
        assert_eq!(store.count(status, None).await.unwrap(), 0, "{status}");
        assert_eq!(store.oldest_update(status).await.unwrap(), None, "{status}");
    }

    let tasks = [
        (TaskStatus::Received, 30_000),
        (TaskStatus::Received, 10_000), // the oldest RECEIVED
        (TaskStatus::Received, 20_000),
        (TaskStatus::InProgress, 5_000),
        (TaskStatus::InProgress, 40_000),
        (TaskStatus::Done, 1_000),
        (TaskStatus::Done, 50_000),
        (TaskStatus::Done, 60_000),
        (TaskStatus::Done, 70_000),
        (TaskStatus::Failed, 2_000),
        (TaskStatus::Failed, 80_000),
    ];
    for (status, offset) in tasks {
        store.insert(&task_in(status, T0 + offset, json!({"o": offset}))).await.unwrap();
    }

    let count = |status, since: Option<i64>| {
        let store = store.clone();
        async move { store.count(status, since.map(|s| Timestamp::from_millis(T0 + s))).await.unwrap() }
    };
    assert_eq!(count(TaskStatus::Received, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, None).await, 2);
    assert_eq!(count(TaskStatus::Done, None).await, 4);
    assert_eq!(count(TaskStatus::Failed, None).await, 2);

    // `since` is inclusive and filters on updated_at.
    assert_eq!(count(TaskStatus::Done, Some(50_000)).await, 3);
    assert_eq!(count(TaskStatus::Done, Some(50_001)).await, 2);
    assert_eq!(count(TaskStatus::Done, Some(70_001)).await, 0);
    assert_eq!(count(TaskStatus::Failed, Some(3_000)).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(0)).await, 3);

    assert_eq!(store.oldest_update(TaskStatus::Received).await.unwrap(), Some(at(10_000)));
    assert_eq!(store.oldest_update(TaskStatus::InProgress).await.unwrap(), Some(at(5_000)));
    assert_eq!(store.oldest_update(TaskStatus::Done).await.unwrap(), Some(at(1_000)));

    // A transition moves a task between the index's partitions.
    let oldest_received = store
        .apply(&Transition::start(&find(&store, TaskStatus::Received, 10_000).await, 1, at(90_000)))
        .await
        .unwrap();
    assert!(matches!(oldest_received, WriteOutcome::Applied(_)));
    assert_eq!(count(TaskStatus::Received, None).await, 2);
    assert_eq!(count(TaskStatus::InProgress, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, Some(90_000)).await, 1);
    assert_eq!(store.oldest_update(TaskStatus::Received).await.unwrap(), Some(at(20_000)));
}

/// The id of the task in `status` updated at T0 + `offset` (payload `{"o": offset}`).
async fn find(store: &DynamoStore, status: TaskStatus, offset: i64) -> TaskId {
    let items = store.client().scan().table_name(store.table()).send().await.unwrap().items.unwrap_or_default();
    items
        .into_iter()
        .map(|item| taskfleet_adapters::record::task_from_item(item).unwrap())
        .find(|task| task.status == status && task.payload == json!({"o": offset}))
        .map(|task| task.task_id)
        .expect("the task is stored")
}
