//! DynamoStore against the AWS emulator (moto server) through the real SDK: the two items a task
//! is stored as (its state, and its payload written once), its conditional transitions and their
//! guards (status, attempt, callback token, the deadline the writer saw), heartbeats, a lost
//! race, replays, the history every transition appends, and the bounds on what a task item can
//! grow by (tokens, history, replays; the worst-case item size).
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{
    T0, TTL, all_items, applied, at, fresh_store, history_map, item_size, n, names, number_size, payload_expiry,
    raw_item, raw_item_at, raw_payload_item, s, token_digest, tokens_map, value_size,
};
use serde_json::{Value, json};
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::blob::{self, Content};
use taskfleet_core::completion::delivery::{Delivery, DeliveryState};
use taskfleet_core::completion::destination::MAX_URL_LEN;
use taskfleet_core::lifecycle::{CANCELLED, HISTORY_KEPT, MAX_REPLAYS, Outcome, TOKENS_KEPT, Transition};
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::trace::TraceId;
use taskfleet_core::{ClientId, StoreError, Task, TaskId, TaskStatus, Timestamp};

/// How long after its start an attempt's callback is due in these tests (15 minutes).
const TIMEOUT_MS: i64 = 900_000;

/// The reason a replay records.
const REPLAYED: &str = "replayed by its owner";

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

fn entry(status: TaskStatus, offset_ms: i64, attempt: u32, reason: Option<&str>) -> HistoryEntry {
    HistoryEntry { status, at: at(offset_ms), attempt, reason: reason.map(str::to_owned) }
}

/// The callback-token digests of `attempts`, as a task holds them.
fn tokens(attempts: impl IntoIterator<Item = u32>) -> BTreeMap<u32, String> {
    attempts.into_iter().map(|attempt| (attempt, token_digest(attempt))).collect()
}

async fn received_task(store: &DynamoStore, payload: Value) -> Task {
    let task = Task::received(common::client_id(), at(0), TTL.new_task_expiry(at(0)));
    common::insert_with(store, &task, payload).await;
    task
}

/// Starts attempt `attempt` at `at(offset_ms)` with that attempt's token; due `TIMEOUT_MS` later.
fn start(task_id: &TaskId, attempt: u32, offset_ms: i64) -> Transition {
    Transition::start(task_id, attempt, token_digest(attempt), (at(offset_ms), at(offset_ms + TIMEOUT_MS)), &TTL)
}

async fn apply(store: &DynamoStore, transition: &Transition) -> Task {
    applied(store.apply(transition).await.expect("apply"), &format!("{transition:?}"))
}

/// A task whose first attempt started at `at(1_000)`.
async fn in_progress_task(store: &DynamoStore) -> Task {
    let task = received_task(store, json!({"n": 1})).await;
    apply(store, &start(&task.task_id, 1, 1_000)).await
}

fn succeeded(task_id: &TaskId, attempt: u32, result: Value, offset_ms: i64) -> Transition {
    let outcome = Outcome::Succeeded { result: Content::Inline(result) };
    Transition::finish(task_id, attempt, token_digest(attempt), outcome, at(offset_ms), &TTL)
}

fn failed(task_id: &TaskId, attempt: u32, error: &str, offset_ms: i64) -> Transition {
    let outcome = Outcome::Failed { error: error.to_owned() };
    Transition::finish(task_id, attempt, token_digest(attempt), outcome, at(offset_ms), &TTL)
}

fn heartbeat(task_id: &TaskId, attempt: u32, digest: String, offset_ms: i64) -> Transition {
    Transition::heartbeat(task_id, attempt, digest, (at(offset_ms), at(offset_ms + TIMEOUT_MS)), &TTL)
}

fn give_up(task_id: &TaskId, from: TaskStatus, attempt: Option<u32>, error: &str, offset_ms: i64) -> Transition {
    Transition::give_up(task_id, from, attempt, error, at(offset_ms), &TTL).expect("a legal give-up")
}

/// The owner's cancel of a task in `from` after `attempts` attempts.
fn cancel(task_id: &TaskId, from: TaskStatus, attempts: u32, offset_ms: i64) -> Transition {
    Transition::cancel(task_id, from, attempts, at(offset_ms), &TTL).expect("a legal cancel")
}

#[tokio::test]
async fn insert_then_get_round_trips_the_task_and_its_payload_exactly() {
    let store = fresh_store().await;
    let task = received_task(&store, awkward_payload()).await;

    let got = store.get(&task.task_id).await.expect("get").expect("the inserted task is found");

    assert_eq!(got, task);
    assert_eq!(got.status, TaskStatus::Received);
    assert_eq!(got.result, None);
    assert_eq!(got.error, None);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.series_start, 0);
    assert_eq!(got.created_at, at(0));
    assert_eq!(got.updated_at, at(0));
    assert_eq!(got.due_at, at(0));
    assert_eq!(got.expires_at, at(0).as_epoch_seconds() + 3_600);
    assert_eq!(got.callback_tokens, BTreeMap::new());
    assert_eq!(got.history, [entry(TaskStatus::Received, 0, 0, None)]);
    assert_eq!((got.history_omitted, got.replays), (0, 0));

    // The payload is kept apart, exactly.
    let Some(Content::Inline(payload)) = store.payload(&task.task_id).await.expect("payload") else {
        panic!("the payload is stored inline")
    };
    assert_eq!(payload, awkward_payload());
    assert_eq!(payload.to_string(), awkward_payload().to_string());
}

#[tokio::test]
async fn a_task_with_every_field_set_round_trips_exactly() {
    let store = fresh_store().await;
    for result in [
        Content::Inline(json!({"partial": [1.25, null, u64::MAX], "deep": {"er": [1, {"x": "ÿ"}]}})),
        Content::Stored { key: "results/some-task/3/0123456789abcdef".into() },
    ] {
        let task = Task {
            task_id: TaskId::generate(),
            client_id: common::client_id(),
            status: TaskStatus::Failed,
            result: Some(result),
            error: Some("gave up after 2 attempts; last: HTTP 503 «busy»".into()),
            cancelled: true,
            attempts: 3,
            series_start: 1,
            created_at: at(0),
            updated_at: at(9_000),
            due_at: at(9_000),
            expires_at: at(9_000).as_epoch_seconds() + 86_400,
            callback_tokens: tokens(1..=3),
            history: vec![
                entry(TaskStatus::Received, 3_000, 1, Some(REPLAYED)),
                entry(TaskStatus::InProgress, 4_000, 2, None),
                entry(TaskStatus::Received, 5_000, 2, Some("attempt 2: HTTP 503")),
                entry(TaskStatus::InProgress, 6_000, 3, None),
                entry(TaskStatus::Failed, 9_000, 3, Some("gave up after 2 attempts; last: HTTP 503 «busy»")),
            ],
            history_omitted: 3,
            replays: 1,
            run_at: Some(at(2_000)),
            trace_id: Some(TraceId::generate()),
            webhook_url: Some("https://hooks.example.com/taskfleet?tenant=ü".into()),
            webhook: Some(Delivery { state: DeliveryState::Pending, attempts: 2, next_at: Some(at(9_500)) }),
        };
        common::insert(&store, &task).await;
        assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
    }
}

#[tokio::test]
async fn inserting_a_taken_id_fails_and_keeps_the_first_task_and_its_payload() {
    let store = fresh_store().await;
    let first = received_task(&store, json!({"first": true})).await;
    let payload_item = raw_payload_item(&store, &first.task_id).await;

    // Another task under the same id: created at another time, or by another client.
    let mut later = first.clone();
    later.created_at = at(1);
    later.status = TaskStatus::Done;
    let mut other_client = first.clone();
    other_client.client_id = taskfleet_core::ClientId::parse("someone-else").unwrap();
    for (task, payload) in [
        (&later, Content::Inline(json!({"first": true}))),
        (&later, Content::Stored { key: blob::payload_key(&first.task_id) }),
        (&other_client, Content::Inline(json!({"second": true}))),
    ] {
        assert_eq!(store.insert(task, &payload, payload_expiry(at(0)) + 99).await, Err(StoreError::AlreadyExists));
    }
    // The very same task again is its own earlier insert having landed (a retried write whose
    // answer was lost): done, and nothing changes.
    assert_eq!(
        store.insert(&first, &Content::Inline(json!({"again": true})), payload_expiry(at(0)) + 99).await,
        Ok(())
    );

    assert_eq!(store.get(&first.task_id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.payload(&first.task_id).await.unwrap(), Some(Content::Inline(json!({"first": true}))));
    assert_eq!(raw_payload_item(&store, &first.task_id).await, payload_item, "the payload is written once");
}

#[tokio::test]
async fn an_unknown_id_is_none() {
    let store = fresh_store().await;
    received_task(&store, json!({})).await;
    assert_eq!(store.get(&TaskId::generate()).await.unwrap(), None);
    assert_eq!(store.payload(&TaskId::generate()).await.unwrap(), None);
}

#[tokio::test]
async fn the_payload_item_holds_the_payload_as_json_text_or_its_blob_key_and_its_expiry() {
    let store = fresh_store().await;

    // Inline: the compact JSON text, byte for byte what serde_json writes.
    let inline = Task::received(common::client_id(), at(0), TTL.new_task_expiry(at(0)));
    let payload = Content::Inline(json!({"b": 1.50, "a": [1, {"x": null}]}));
    store.insert(&inline, &payload, 1_900_000_123).await.expect("insert");
    let item = raw_payload_item(&store, &inline.task_id).await;
    assert_eq!(names(&item), ["expires_at", "payload", "pk"]);
    assert_eq!(item.get("pk"), Some(&s(&format!("PAYLOAD#{}", inline.task_id))));
    assert_eq!(item.get("payload"), Some(&s(r#"{"a":[1,{"x":null}],"b":1.5}"#)));
    assert_eq!(item.get("expires_at"), Some(&n(1_900_000_123)), "the given expiry, in epoch seconds");
    assert_eq!(store.payload(&inline.task_id).await.unwrap(), Some(payload));

    // In the blob store: only its key.
    let stored = Task::received(common::client_id(), at(5), TTL.new_task_expiry(at(5)));
    let payload = Content::Stored { key: blob::payload_key(&stored.task_id) };
    store.insert(&stored, &payload, payload_expiry(at(5))).await.expect("insert");
    let item = raw_payload_item(&store, &stored.task_id).await;
    assert_eq!(names(&item), ["expires_at", "payload_key", "pk"]);
    assert_eq!(item.get("payload_key"), Some(&s(&format!("payloads/{}", stored.task_id))));
    assert_eq!(item.get("expires_at"), Some(&n(payload_expiry(at(5)))));
    assert_eq!(store.payload(&stored.task_id).await.unwrap(), Some(payload));

    // The payload item is no task: it is in no index, and a task's transitions never touch it.
    let item_before = raw_payload_item(&store, &inline.task_id).await;
    apply(&store, &start(&inline.task_id, 1, 1_000)).await;
    apply(&store, &succeeded(&inline.task_id, 1, json!("ok"), 2_000)).await;
    assert_eq!(raw_payload_item(&store, &inline.task_id).await, item_before);
    let items = all_items(&store).await;
    let of_tasks = items.iter().filter(|item| item.get("pk") != Some(&s(table::STATUS_SHARDS_ITEM))).count();
    assert_eq!(of_tasks, 4, "two items per task (and the table's note of its status index shards)");
}

#[tokio::test]
async fn the_stored_item_has_the_documented_shape() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({"b": 1.50, "a": [1, {"x": null}]})).await;
    let id = task.task_id.as_str();

    let item = raw_item(&store, &task.task_id).await;

    assert_eq!(item.get("pk"), Some(&s(&format!("TASK#{id}"))));
    assert_eq!(item.get("task_id"), Some(&s(id)));
    assert_eq!(item.get("client_id"), Some(&s("acme-corp_1.eu")));
    assert_eq!(item.get("status"), Some(&s("RECEIVED")));
    // The TTL attribute must be a Number in epoch *seconds*, or DynamoDB never expires the item.
    let expected_expiry = T0 / 1000 + 3_600;
    assert_eq!(item.get("expires_at"), Some(&n(expected_expiry)));
    let AttributeValue::N(expiry) = &item["expires_at"] else { unreachable!() };
    let expiry: i64 = expiry.parse().unwrap();
    assert!((1_000_000_000..10_000_000_000).contains(&expiry), "expires_at {expiry} is not epoch seconds");
    // due_at is the status index's sort key: a Number, in milliseconds. A new task is due at once.
    assert_eq!(item.get("due_at"), Some(&n(T0)));
    assert_eq!(item.get("updated_at"), Some(&n(T0)));
    assert_eq!(item.get("created_at"), Some(&n(T0)));
    assert_eq!(item.get("attempts"), Some(&n(0)));
    assert_eq!(item.get("series_start"), Some(&n(0)));
    // The status index key while the task is active: its status and its shard (of 64 by default).
    let shard = table::shard_of(id, table::DEFAULT_STATUS_SHARDS);
    assert_eq!(item.get("status_key"), Some(&s(&format!("RECEIVED#{shard}"))));
    // The client index keys: the client and its shard of 32; 15 digits of ms and the task id.
    assert_eq!(item.get("client_key"), Some(&s(&format!("acme-corp_1.eu#{}", table::shard_of(id, 32)))));
    assert_eq!(item.get("created_key"), Some(&s(&format!("00{T0}#{id}"))));
    // Tokens are a map by attempt number: empty before the first attempt.
    assert_eq!(item.get("tokens"), Some(&AttributeValue::M(HashMap::new())));
    // History is a list of maps; the first entry is the task's arrival.
    assert_eq!(item.get("history"), Some(&AttributeValue::L(vec![history_map("RECEIVED", T0, 0, None)])));
    assert!(!item.contains_key("payload"), "the payload is an item of its own");
    assert!(!item.contains_key("result"), "no result before DONE");
    assert!(!item.contains_key("error"), "no error before FAILED");
    assert!(!item.contains_key("history_omitted"), "nothing omitted yet");
    assert!(!item.contains_key("replays"), "never replayed");
    assert_eq!(
        names(&item),
        [
            "attempts",
            "client_id",
            "client_key",
            "created_at",
            "created_key",
            "due_at",
            "expires_at",
            "history",
            "pk",
            "series_start",
            "status",
            "status_key",
            "task_id",
            "tokens",
            "updated_at"
        ]
    );
    // The payload is the other item.
    assert_eq!(
        raw_payload_item(&store, &task.task_id).await.get("payload"),
        Some(&s(r#"{"a":[1,{"x":null}],"b":1.5}"#))
    );
}

#[tokio::test]
async fn a_started_item_stores_the_token_digest_the_deadline_and_the_step() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;

    let item = raw_item(&store, &task.task_id).await;

    assert_eq!(item.get("status"), Some(&s("IN_PROGRESS")));
    let shard = table::shard_of(task.task_id.as_str(), table::DEFAULT_STATUS_SHARDS);
    assert_eq!(item.get("status_key"), Some(&s(&format!("IN_PROGRESS#{shard}"))), "the same shard, the new status");
    assert_eq!(item.get("attempts"), Some(&n(1)));
    assert_eq!(item.get("updated_at"), Some(&n(T0 + 1_000)));
    assert_eq!(item.get("due_at"), Some(&n(T0 + 1_000 + TIMEOUT_MS)), "the callback deadline, in ms");
    assert_eq!(item.get("tokens"), Some(&tokens_map([1])));
    assert_eq!(
        item.get("history"),
        Some(&AttributeValue::L(vec![
            history_map("RECEIVED", T0, 0, None),
            history_map("IN_PROGRESS", T0 + 1_000, 1, None)
        ]))
    );
    assert_eq!(item.get("expires_at"), Some(&n((T0 + 1_000) / 1000 + 3_600)), "a start renews the task TTL from then");
    assert_eq!(item.get("series_start"), Some(&n(0)));
}

#[tokio::test]
async fn a_finished_item_stores_its_result_and_retention_expiry_and_leaves_the_status_index() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    apply(&store, &succeeded(&task.task_id, 1, json!({"ok": [1, 2]}), 5_000)).await;

    let item = raw_item(&store, &task.task_id).await;
    assert_eq!(item.get("status"), Some(&s("DONE")));
    assert!(!item.contains_key("status_key"), "a finished task leaves the status index: {item:?}");
    assert_eq!(item.get("result"), Some(&s(r#"{"ok":[1,2]}"#)));
    assert!(!item.contains_key("result_key"));
    assert_eq!(item.get("expires_at"), Some(&n((T0 + 5_000) / 1000 + 86_400)));
    assert_eq!(item.get("updated_at"), Some(&n(T0 + 5_000)));
    assert_eq!(item.get("due_at"), Some(&n(T0 + 5_000)), "a finished task is due when it finished");
    assert_eq!(item.get("attempts"), Some(&n(1)));
    assert_eq!(item.get("tokens"), Some(&tokens_map([1])));
    assert_eq!(
        item.get("history"),
        Some(&AttributeValue::L(vec![
            history_map("RECEIVED", T0, 0, None),
            history_map("IN_PROGRESS", T0 + 1_000, 1, None),
            history_map("DONE", T0 + 5_000, 1, None),
        ]))
    );
    assert!(!item.contains_key("error"));

    // A result kept in the blob store: the item holds its key.
    let other = in_progress_task(&store).await;
    let key = blob::result_key(&other.task_id, 1, &"ab".repeat(32));
    let outcome = Outcome::Succeeded { result: Content::Stored { key: key.clone() } };
    let done = apply(&store, &Transition::finish(&other.task_id, 1, token_digest(1), outcome, at(5_000), &TTL)).await;
    assert_eq!(done.result, Some(Content::Stored { key: key.clone() }));
    let item = raw_item(&store, &other.task_id).await;
    assert_eq!(item.get("result_key"), Some(&s(&key)));
    assert!(!item.contains_key("result") && !item.contains_key("status_key"), "{item:?}");
    assert_eq!(store.get(&other.task_id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn the_client_index_keys_are_written_once() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    let id = &task.task_id;
    let keys = |item: &HashMap<String, AttributeValue>| {
        (item.get("client_key").cloned(), item.get("created_key").cloned(), item.get("client_id").cloned())
    };
    let first = keys(&raw_item(&store, id).await);
    assert!(first.0.is_some() && first.1.is_some(), "{first:?}");

    // Every kind of transition, and the task's client index entry never moves.
    apply(&store, &start(id, 1, 1_000)).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after a start");
    apply(&store, &heartbeat(id, 1, token_digest(1), 2_000)).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after a heartbeat");
    apply(&store, &Transition::retry(id, 1, "attempt 1: HTTP 503", at(3_000), at(4_000))).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after a retry");
    apply(&store, &start(id, 2, 4_000)).await;
    apply(&store, &failed(id, 2, "boom", 5_000)).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after a finish");
    apply(&store, &Transition::replay(id, 2, at(6_000), &TTL)).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after a replay");
    apply(&store, &start(id, 3, 7_000)).await;
    apply(&store, &succeeded(id, 3, json!(3), 8_000)).await;
    assert_eq!(keys(&raw_item(&store, id).await), first, "after the last finish");
    assert_eq!(
        first,
        (
            Some(s(&table::client_key("acme-corp_1.eu", id.as_str()))),
            Some(s(&table::created_key(T0, id.as_str()))),
            Some(s("acme-corp_1.eu"))
        )
    );
}

#[tokio::test]
async fn starting_applies_once_and_a_repeat_is_rejected_with_the_current_task() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({"job": "x"})).await;
    let first = start(&task.task_id, 1, 2_000);

    let started = apply(&store, &first).await;
    let expected = Task {
        status: TaskStatus::InProgress,
        attempts: 1,
        updated_at: at(2_000),
        due_at: at(2_000 + TIMEOUT_MS),
        callback_tokens: tokens([1]),
        history: vec![entry(TaskStatus::Received, 0, 0, None), entry(TaskStatus::InProgress, 2_000, 1, None)],
        expires_at: at(2_000).as_epoch_seconds() + 3_600,
        ..task.clone()
    };
    assert_eq!(started, expected);

    // The same dispatch again (a repeated message) must not apply.
    assert_eq!(store.apply(&first).await.unwrap(), WriteOutcome::Rejected(Some(expected.clone())));
    // Nor may a later start of the same attempt with another token (a second caller).
    let again = Transition::start(&task.task_id, 1, token_digest(99), (at(9_000), at(9_000 + TIMEOUT_MS)), &TTL);
    assert_eq!(store.apply(&again).await.unwrap(), WriteOutcome::Rejected(Some(expected.clone())));
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(expected));
}

#[tokio::test]
async fn a_start_for_the_wrong_attempt_is_rejected() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    assert_eq!(store.apply(&start(&task.task_id, 2, 1_000)).await.unwrap(), WriteOutcome::Rejected(Some(task.clone())));
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn finishing_a_task_that_never_started_is_rejected() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;

    for transition in [
        succeeded(&task.task_id, 1, json!(1), 3_000),
        failed(&task.task_id, 1, "boom", 3_000),
        succeeded(&task.task_id, 0, json!(1), 3_000),
    ] {
        assert_eq!(
            store.apply(&transition).await.unwrap(),
            WriteOutcome::Rejected(Some(task.clone())),
            "{transition:?}"
        );
    }
    assert_eq!(
        store.apply(&heartbeat(&task.task_id, 1, token_digest(1), 3_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_write_to_a_missing_task_is_rejected_and_creates_nothing() {
    let store = fresh_store().await;
    let missing = TaskId::generate();

    for transition in [
        start(&missing, 1, 0),
        succeeded(&missing, 1, json!(1), 0),
        failed(&missing, 1, "boom", 0),
        Transition::retry(&missing, 1, "timed out", at(0), at(1_000)),
        give_up(&missing, TaskStatus::Received, None, CANCELLED, 0),
        Transition::replay(&missing, 1, at(0), &TTL),
    ] {
        assert_eq!(store.apply(&transition).await.unwrap(), WriteOutcome::Rejected(None), "{transition:?}");
    }
    assert_eq!(store.apply(&heartbeat(&missing, 1, token_digest(1), 0)).await.unwrap(), WriteOutcome::Rejected(None));
    assert_eq!(store.get(&missing).await.unwrap(), None);
    assert_eq!(all_items(&store).await, Vec::new(), "a rejected update must not create an item");
    assert_eq!(store.count(TaskStatus::InProgress, None, None).await.unwrap(), 0);
}

#[tokio::test]
async fn a_callback_applies_only_with_its_attempts_token() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let before = raw_item(&store, &task.task_id).await;
    let id = &task.task_id;
    let finish_with = |attempt: u32, digest: String| {
        Transition::finish(
            id,
            attempt,
            digest,
            Outcome::Succeeded { result: Content::Inline(json!("forged")) },
            at(5_000),
            &TTL,
        )
    };

    for forged in [
        // A token that is nobody's.
        finish_with(1, taskfleet_core::token::digest("not the token")),
        // The right attempt with the token of another attempt.
        finish_with(1, token_digest(2)),
        // The right token for the wrong attempt (there is no second token yet).
        finish_with(2, token_digest(1)),
        finish_with(0, token_digest(1)),
        // A failure report with a wrong token.
        Transition::finish(id, 1, token_digest(7), Outcome::Failed { error: "forged".into() }, at(5_000), &TTL),
    ] {
        assert_eq!(store.apply(&forged).await.unwrap(), WriteOutcome::Rejected(Some(task.clone())), "{forged:?}");
    }
    assert_eq!(raw_item(&store, id).await, before, "a rejected callback changes nothing");

    let done = apply(&store, &succeeded(id, 1, json!({"real": true}), 6_000)).await;
    let expected = Task {
        status: TaskStatus::Done,
        result: Some(Content::Inline(json!({"real": true}))),
        updated_at: at(6_000),
        due_at: at(6_000),
        expires_at: TTL.finished_expiry(at(6_000)),
        history: [task.history.clone(), vec![entry(TaskStatus::Done, 6_000, 1, None)]].concat(),
        ..task.clone()
    };
    assert_eq!(done, expected);
    assert_eq!(store.get(id).await.unwrap(), Some(expected));
}

#[tokio::test]
async fn a_callback_of_an_earlier_attempt_is_rejected_even_with_its_own_token() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let id = &task.task_id;
    apply(&store, &Transition::retry(id, 1, "attempt 1: no callback", at(2_000), at(3_000))).await;
    let second = apply(&store, &start(id, 2, 3_000)).await;
    assert_eq!(second.callback_tokens, tokens(1..=2));
    let before = raw_item(&store, id).await;

    for stale in [
        succeeded(id, 1, json!("late"), 4_000),
        failed(id, 1, "late", 4_000),
        Transition::finish(
            id,
            2,
            token_digest(1),
            Outcome::Succeeded { result: Content::Inline(json!("x")) },
            at(4_000),
            &TTL,
        ),
    ] {
        assert_eq!(store.apply(&stale).await.unwrap(), WriteOutcome::Rejected(Some(second.clone())), "{stale:?}");
    }
    assert_eq!(
        store.apply(&heartbeat(id, 1, token_digest(1), 4_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(second.clone()))
    );
    assert_eq!(raw_item(&store, id).await, before);

    let done = apply(&store, &failed(id, 2, "the service failed", 5_000)).await;
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("the service failed"));
    assert_eq!(done.attempts, 2);
}

#[tokio::test]
async fn a_heartbeat_moves_the_deadline_only_for_the_current_attempt_in_progress() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let id = &task.task_id;
    assert_eq!(task.due_at, at(1_000 + TIMEOUT_MS));

    // The right attempt and token: the deadline moves, nothing else but updated_at.
    let beaten = applied(store.apply(&heartbeat(id, 1, token_digest(1), 600_000)).await.unwrap(), "heartbeat");
    let expected = Task {
        due_at: at(600_000 + TIMEOUT_MS),
        updated_at: at(600_000),
        expires_at: at(600_000).as_epoch_seconds() + 3_600,
        ..task.clone()
    };
    assert_eq!(beaten, expected);
    let item = raw_item(&store, id).await;
    assert_eq!(item.get("due_at"), Some(&n(T0 + 600_000 + TIMEOUT_MS)));
    assert_eq!(item.get("updated_at"), Some(&n(T0 + 600_000)));
    assert_eq!(item.get("status"), Some(&s("IN_PROGRESS")));
    let AttributeValue::L(history) = &item["history"] else { panic!("history is a list: {item:?}") };
    assert_eq!(history.len(), 2, "a heartbeat is not a step of the task's history");

    // A wrong token or attempt changes nothing.
    for wrong in [
        heartbeat(id, 1, taskfleet_core::token::digest("not the token"), 700_000),
        heartbeat(id, 1, token_digest(2), 700_000),
        heartbeat(id, 2, token_digest(1), 700_000),
        heartbeat(id, 2, token_digest(2), 700_000),
        heartbeat(id, 0, token_digest(1), 700_000),
    ] {
        assert_eq!(store.apply(&wrong).await.unwrap(), WriteOutcome::Rejected(Some(expected.clone())), "{wrong:?}");
    }
    assert_eq!(raw_item(&store, id).await, item);

    // Once the attempt is over (put back for a retry), its heartbeat changes nothing.
    let retried = apply(&store, &Transition::retry(id, 1, "attempt 1: no callback", at(800_000), at(860_000))).await;
    assert_eq!(retried.status, TaskStatus::Received);
    assert_eq!(retried.due_at, at(860_000));
    assert_eq!(
        store.apply(&heartbeat(id, 1, token_digest(1), 810_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(retried.clone()))
    );
    assert_eq!(store.get(id).await.unwrap(), Some(retried));

    // Nor once the task finished.
    apply(&store, &start(id, 2, 860_000)).await;
    let done = apply(&store, &succeeded(id, 2, json!(2), 870_000)).await;
    assert_eq!(
        store.apply(&heartbeat(id, 2, token_digest(2), 880_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(done.clone()))
    );
    assert_eq!(store.get(id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn a_timeout_guarded_by_the_deadline_it_saw_loses_to_a_heartbeat() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let id = &task.task_id;
    let deadline = at(1_000 + TIMEOUT_MS);

    // The sweeper finds the attempt overdue...
    let overdue = store.due(TaskStatus::InProgress, deadline, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].due_at, deadline);
    // ...a heartbeat lands before its write...
    let beaten = applied(store.apply(&heartbeat(id, 1, token_digest(1), TIMEOUT_MS)).await.unwrap(), "heartbeat");
    assert_eq!(beaten.due_at, at(2 * TIMEOUT_MS));

    // ...so neither its retry nor its give-up applies.
    let now = TIMEOUT_MS + 2_000;
    let retry = Transition::retry(id, 1, "attempt 1: no callback within 900 s", at(now), at(now + 30_000));
    assert_eq!(
        store.apply(&retry.clone().if_due_unchanged(overdue[0].due_at)).await.unwrap(),
        WriteOutcome::Rejected(Some(beaten.clone()))
    );
    let fail = give_up(id, TaskStatus::InProgress, Some(1), "gave up after 1 attempts", now);
    assert_eq!(
        store.apply(&fail.if_due_unchanged(overdue[0].due_at)).await.unwrap(),
        WriteOutcome::Rejected(Some(beaten.clone()))
    );
    assert_eq!(store.get(id).await.unwrap(), Some(beaten.clone()));
    assert_eq!(store.due(TaskStatus::InProgress, at(now), 10).await.unwrap(), []);

    // With the deadline as it now is, the timeout applies.
    let retried = apply(&store, &retry.if_due_unchanged(beaten.due_at)).await;
    let expected = Task {
        status: TaskStatus::Received,
        updated_at: at(now),
        due_at: at(now + 30_000),
        history: [
            beaten.history.clone(),
            vec![entry(TaskStatus::Received, now, 1, Some("attempt 1: no callback within 900 s"))],
        ]
        .concat(),
        ..beaten.clone()
    };
    assert_eq!(retried, expected);
    assert_eq!(store.get(id).await.unwrap(), Some(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_outcomes_exactly_one_wins() {
    let store = Arc::new(fresh_store().await);
    let mut wins = [0u32; 2];
    for round in 0..20 {
        let task = in_progress_task(&store).await;
        let result = json!({"round": round});
        let done = succeeded(&task.task_id, 1, result.clone(), 5_000);
        let fail = failed(&task.task_id, 1, "external service failed", 5_001);

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
                assert_eq!(winner.result, Some(Content::Inline(result.clone())), "round {round}");
                assert_eq!(winner.error, None, "round {round}");
                assert_eq!(winner.history.last(), Some(&entry(TaskStatus::Done, 5_000, 1, None)), "round {round}");
                assert_eq!(seen, winner, "the loser sees the winner (round {round})");
                assert_eq!(&stored, winner, "round {round}");
            }
            (WriteOutcome::Rejected(Some(seen)), WriteOutcome::Applied(winner)) => {
                wins[1] += 1;
                assert_eq!(winner.status, TaskStatus::Failed, "round {round}");
                assert_eq!(winner.error.as_deref(), Some("external service failed"), "round {round}");
                assert_eq!(winner.result, None, "round {round}");
                assert_eq!(
                    winner.history.last(),
                    Some(&entry(TaskStatus::Failed, 5_001, 1, Some("external service failed"))),
                    "round {round}"
                );
                assert_eq!(seen, winner, "the loser sees the winner (round {round})");
                assert_eq!(&stored, winner, "round {round}");
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        }
        // Exactly one outcome is stored, never both, and it is one step of the history.
        assert!(stored.result.is_some() != stored.error.is_some(), "round {round}: {stored:?}");
        assert_eq!(stored.attempts, 1, "round {round}");
        assert_eq!(stored.history.len(), 3, "round {round}: {stored:?}");
    }
    eprintln!("race winners (DONE, FAILED): {wins:?}");
    assert_eq!(wins[0] + wins[1], 20, "wins (DONE, FAILED): {wins:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_racing_the_sweepers_timeout_has_exactly_one_winner() {
    let store = Arc::new(fresh_store().await);
    for round in 0..10 {
        let task = in_progress_task(&store).await;
        let now = 1_000 + TIMEOUT_MS + 1;
        let callback = succeeded(&task.task_id, 1, json!({"round": round}), now);
        let timeout = Transition::retry(&task.task_id, 1, "attempt 1: no callback", at(now), at(now + 5_000))
            .if_due_unchanged(task.due_at);

        let (a, b) = (store.clone(), store.clone());
        let (callback_outcome, timeout_outcome) = tokio::join!(
            tokio::spawn(async move { a.apply(&callback).await }),
            tokio::spawn(async move { b.apply(&timeout).await }),
        );
        let stored = store.get(&task.task_id).await.unwrap().unwrap();
        match (callback_outcome.unwrap().unwrap(), timeout_outcome.unwrap().unwrap()) {
            (WriteOutcome::Applied(winner), WriteOutcome::Rejected(Some(seen)))
            | (WriteOutcome::Rejected(Some(seen)), WriteOutcome::Applied(winner)) => {
                assert_eq!(seen, winner, "round {round}");
                assert_eq!(stored, winner, "round {round}");
                assert!(matches!(stored.status, TaskStatus::Done | TaskStatus::Received), "round {round}: {stored:?}");
                assert_eq!(stored.history.len(), 3, "round {round}: {stored:?}");
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        }
    }
}

#[tokio::test]
async fn late_and_duplicate_events_never_move_a_finished_task() {
    let store = fresh_store().await;
    for outcome in [
        Outcome::Succeeded { result: Content::Inline(json!({"answer": 42})) },
        Outcome::Failed { error: "it broke".into() },
    ] {
        let task = in_progress_task(&store).await;
        let id = &task.task_id;
        let finish = Transition::finish(id, 1, token_digest(1), outcome.clone(), at(5_000), &TTL);
        let finished = apply(&store, &finish).await;
        assert_eq!(finished.status, outcome.status());

        let late = [
            finish.clone(),
            start(id, 1, 6_000),
            start(id, 2, 6_000),
            succeeded(id, 1, json!({"answer": 42}), 6_000),
            succeeded(id, 1, json!({"answer": "other"}), 6_000),
            failed(id, 1, "late failure", 6_000),
            failed(id, 1, "it broke", 6_000),
            succeeded(id, 2, json!(2), 6_000),
            Transition::retry(id, 1, "attempt 1: no callback", at(6_000), at(7_000)),
            Transition::retry(id, 1, "attempt 1: no callback", at(6_000), at(7_000)).if_due_unchanged(finished.due_at),
            give_up(id, TaskStatus::Received, None, "gave up", 6_000),
            give_up(id, TaskStatus::Received, Some(1), CANCELLED, 6_000),
            give_up(id, TaskStatus::InProgress, None, "gave up", 6_000),
            give_up(id, TaskStatus::InProgress, Some(1), "gave up", 6_000),
            give_up(id, TaskStatus::InProgress, Some(1), CANCELLED, 6_000).if_due_unchanged(finished.due_at),
        ];
        for transition in &late {
            assert_eq!(
                store.apply(transition).await.unwrap(),
                WriteOutcome::Rejected(Some(finished.clone())),
                "{transition:?}"
            );
        }
        assert_eq!(
            store.apply(&heartbeat(id, 1, token_digest(1), 6_000)).await.unwrap(),
            WriteOutcome::Rejected(Some(finished.clone()))
        );
        if finished.status == TaskStatus::Done {
            // Only a FAILED task may be replayed.
            assert_eq!(
                store.apply(&Transition::replay(id, 1, at(6_000), &TTL)).await.unwrap(),
                WriteOutcome::Rejected(Some(finished.clone()))
            );
        }
        assert_eq!(store.get(id).await.unwrap(), Some(finished));
    }
}

#[tokio::test]
async fn a_replay_starts_a_new_series_and_every_transition_is_one_step_of_history() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({"job": "replay me"})).await;
    let id = &task.task_id;

    apply(&store, &start(id, 1, 1_000)).await;
    let failed_task = apply(&store, &failed(id, 1, "boom", 2_000)).await;
    let item = raw_item(&store, id).await;
    assert_eq!(item.get("error"), Some(&s("boom")));
    assert_eq!(item.get("expires_at"), Some(&n((T0 + 2_000) / 1000 + 86_400)));

    // A replay must name the attempts the task has made.
    assert_eq!(
        store.apply(&Transition::replay(id, 0, at(3_000), &TTL)).await.unwrap(),
        WriteOutcome::Rejected(Some(failed_task.clone()))
    );

    let replayed = apply(&store, &Transition::replay(id, 1, at(3_000), &TTL)).await;
    let expected = Task {
        status: TaskStatus::Received,
        error: None,
        attempts: 1,
        series_start: 1,
        updated_at: at(3_000),
        due_at: at(3_000),
        expires_at: TTL.new_task_expiry(at(3_000)),
        history: [failed_task.history.clone(), vec![entry(TaskStatus::Received, 3_000, 1, Some(REPLAYED))]].concat(),
        replays: 1,
        ..failed_task.clone()
    };
    assert_eq!(replayed, expected);
    assert_eq!(replayed.attempt_in_series(), 0);
    let item = raw_item(&store, id).await;
    assert!(!item.contains_key("error"), "a replay removes the error: {item:?}");
    assert!(!item.contains_key("result"));
    assert_eq!(item.get("series_start"), Some(&n(1)));
    assert_eq!(item.get("status"), Some(&s("RECEIVED")));
    let shard = table::shard_of(id.as_str(), table::DEFAULT_STATUS_SHARDS);
    assert_eq!(item.get("status_key"), Some(&s(&format!("RECEIVED#{shard}"))), "a replayed task is active again");
    assert_eq!(item.get("replays"), Some(&n(1)));
    assert_eq!(item.get("due_at"), Some(&n(T0 + 3_000)));
    assert_eq!(item.get("expires_at"), Some(&n((T0 + 3_000) / 1000 + 3_600)));

    // A replayed task is not FAILED any more: replaying it again changes nothing.
    assert_eq!(
        store.apply(&Transition::replay(id, 1, at(3_500), &TTL)).await.unwrap(),
        WriteOutcome::Rejected(Some(expected.clone()))
    );

    // The new series: attempt 2 is refused and retried, attempt 3 gives up.
    let second = apply(&store, &start(id, 2, 4_000)).await;
    assert_eq!(second.attempt_in_series(), 1);
    apply(&store, &Transition::retry(id, 2, "attempt 2: HTTP 503", at(5_000), at(65_000))).await;
    apply(&store, &start(id, 3, 65_000)).await;
    let last = apply(&store, &give_up(id, TaskStatus::InProgress, Some(3), "gave up after 2 attempts", 70_000)).await;

    let expected_history = vec![
        entry(TaskStatus::Received, 0, 0, None),
        entry(TaskStatus::InProgress, 1_000, 1, None),
        entry(TaskStatus::Failed, 2_000, 1, Some("boom")),
        entry(TaskStatus::Received, 3_000, 1, Some(REPLAYED)),
        entry(TaskStatus::InProgress, 4_000, 2, None),
        entry(TaskStatus::Received, 5_000, 2, Some("attempt 2: HTTP 503")),
        entry(TaskStatus::InProgress, 65_000, 3, None),
        entry(TaskStatus::Failed, 70_000, 3, Some("gave up after 2 attempts")),
    ];
    assert_eq!(last.history, expected_history);
    assert_eq!(last.status, TaskStatus::Failed);
    assert_eq!(last.error.as_deref(), Some("gave up after 2 attempts"));
    assert_eq!((last.attempts, last.series_start), (3, 1));
    assert_eq!(last.callback_tokens, tokens(1..=3));
    assert_eq!(store.get(id).await.unwrap(), Some(last));

    let item = raw_item(&store, id).await;
    assert_eq!(
        item.get("history"),
        Some(&AttributeValue::L(vec![
            history_map("RECEIVED", T0, 0, None),
            history_map("IN_PROGRESS", T0 + 1_000, 1, None),
            history_map("FAILED", T0 + 2_000, 1, Some("boom")),
            history_map("RECEIVED", T0 + 3_000, 1, Some(REPLAYED)),
            history_map("IN_PROGRESS", T0 + 4_000, 2, None),
            history_map("RECEIVED", T0 + 5_000, 2, Some("attempt 2: HTTP 503")),
            history_map("IN_PROGRESS", T0 + 65_000, 3, None),
            history_map("FAILED", T0 + 70_000, 3, Some("gave up after 2 attempts")),
        ]))
    );
    assert_eq!(item.get("tokens"), Some(&tokens_map(1..=3)));
    assert_eq!(item.get("replays"), Some(&n(1)), "one replay counted");
}

#[tokio::test]
async fn a_cancelled_task_can_be_replayed_and_loses_its_error() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    let id = &task.task_id;

    // A cancel guarded by the attempts the owner saw: a stale count loses.
    assert_eq!(
        store.apply(&cancel(id, TaskStatus::Received, 1, 1_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    let cancelled = apply(&store, &cancel(id, TaskStatus::Received, 0, 1_000)).await;
    let expected = Task {
        status: TaskStatus::Failed,
        error: Some(CANCELLED.into()),
        cancelled: true,
        updated_at: at(1_000),
        due_at: at(1_000),
        expires_at: TTL.finished_expiry(at(1_000)),
        history: vec![entry(TaskStatus::Received, 0, 0, None), entry(TaskStatus::Failed, 1_000, 0, Some(CANCELLED))],
        ..task.clone()
    };
    assert_eq!(cancelled, expected);
    let item = raw_item(&store, id).await;
    assert_eq!(item.get("error"), Some(&s("cancelled")));
    assert_eq!(item.get("cancelled"), Some(&AttributeValue::Bool(true)), "the cancel is its own attribute");
    assert!(!item.contains_key("status_key"), "a cancelled task leaves the status index: {item:?}");
    assert_eq!(store.get(id).await.unwrap(), Some(expected));

    let replayed = apply(&store, &Transition::replay(id, 0, at(2_000), &TTL)).await;
    assert_eq!(replayed.status, TaskStatus::Received);
    assert_eq!(replayed.error, None);
    assert_eq!((replayed.attempts, replayed.series_start, replayed.replays), (0, 0, 1));
    assert_eq!(replayed.history.len(), 3);
    assert_eq!(replayed.history[2], entry(TaskStatus::Received, 2_000, 0, Some(REPLAYED)));
    assert!(!replayed.cancelled);
    let item = raw_item(&store, id).await;
    assert!(!item.contains_key("error") && !item.contains_key("cancelled"), "{item:?}");
    assert_eq!(item.get("series_start"), Some(&n(0)));
    assert_eq!(store.get(id).await.unwrap(), Some(replayed));
}

#[tokio::test]
async fn a_cancel_while_an_attempt_runs_is_guarded_by_that_attempt_and_marks_the_item() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let id = &task.task_id;
    assert_eq!(
        store.apply(&cancel(id, TaskStatus::InProgress, 2, 2_000)).await.unwrap(),
        WriteOutcome::Rejected(Some(task.clone()))
    );
    let cancelled = apply(&store, &cancel(id, TaskStatus::InProgress, 1, 2_000)).await;
    assert_eq!((cancelled.status, cancelled.cancelled, cancelled.attempts), (TaskStatus::Failed, true, 1));
    assert_eq!(cancelled.history.last(), Some(&entry(TaskStatus::Failed, 2_000, 1, Some(CANCELLED))));
    let item = raw_item(&store, id).await;
    assert_eq!(item.get("cancelled"), Some(&AttributeValue::Bool(true)));
    assert_eq!(store.get(id).await.unwrap(), Some(cancelled));
}

#[tokio::test]
async fn a_failure_the_service_reports_as_cancelled_writes_no_cancel() {
    let store = fresh_store().await;
    let task = in_progress_task(&store).await;
    let failed = apply(&store, &failed(&task.task_id, 1, CANCELLED, 2_000)).await;
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.cancelled),
        (TaskStatus::Failed, Some(CANCELLED), false)
    );
    let item = raw_item(&store, &task.task_id).await;
    assert_eq!(item.get("error"), Some(&s(CANCELLED)));
    assert!(!item.contains_key("cancelled"), "{item:?}");
}

#[tokio::test]
async fn only_the_latest_attempts_tokens_are_kept() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    let id = &task.task_id.clone();
    let last = TOKENS_KEPT + 2;

    // Attempts 1..=last, each started and (but the last) put back for another.
    let mut current = task;
    for attempt in 1..=last {
        let offset = i64::from(attempt) * 10_000;
        current = apply(&store, &start(id, attempt, offset)).await;
        let kept = attempt.saturating_sub(TOKENS_KEPT) + 1..=attempt;
        assert_eq!(current.callback_tokens, tokens(kept.clone()), "after starting attempt {attempt}");
        assert_eq!(raw_item(&store, id).await.get("tokens"), Some(&tokens_map(kept)), "attempt {attempt}");
        if attempt < last {
            let retry = Transition::retry(id, attempt, "HTTP 503", at(offset + 1_000), at(offset + 2_000));
            current = apply(&store, &retry).await;
        }
    }
    let item = raw_item(&store, id).await;
    let AttributeValue::M(stored) = &item["tokens"] else { panic!("tokens is a map: {item:?}") };
    assert_eq!(stored.len(), TOKENS_KEPT as usize);
    assert_eq!(item.get("tokens"), Some(&tokens_map(3..=last)), "attempts 1 and 2 are forgotten");
    assert_eq!(store.get(id).await.unwrap(), Some(current.clone()));

    // Callbacks with a forgotten attempt's token (or any but the latest's) are refused.
    let now = i64::from(last) * 10_000 + 5_000;
    for refused in [
        Transition::finish(id, last, token_digest(1), Outcome::Failed { error: "x".into() }, at(now), &TTL),
        Transition::finish(id, last, token_digest(2), Outcome::Failed { error: "x".into() }, at(now), &TTL),
        Transition::finish(id, last, token_digest(last - 1), Outcome::Failed { error: "x".into() }, at(now), &TTL),
        failed(id, 1, "late", now),
        failed(id, 2, "late", now),
        heartbeat(id, last, token_digest(1), now),
    ] {
        assert_eq!(store.apply(&refused).await.unwrap(), WriteOutcome::Rejected(Some(current.clone())), "{refused:?}");
    }
    assert_eq!(raw_item(&store, id).await, item, "a refused callback changes nothing");

    // The latest attempt's own token applies.
    let done = apply(&store, &succeeded(id, last, json!({"attempt": last}), now)).await;
    assert_eq!((done.status, done.attempts), (TaskStatus::Done, last));
    assert_eq!(done.callback_tokens, tokens(3..=last));
}

#[tokio::test]
async fn the_history_keeps_the_latest_entries_and_counts_the_rest() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    let id = &task.task_id;

    // Every attempt adds two entries (its start, its retry): 1 + 2 × 15 = 31 entries written.
    let mut written = task.history.clone();
    for attempt in 1..=15u32 {
        let offset = i64::from(attempt) * 10_000;
        let reason = format!("attempt {attempt}: HTTP 503");
        for (transition, step) in [
            (start(id, attempt, offset), entry(TaskStatus::InProgress, offset, attempt, None)),
            (
                Transition::retry(id, attempt, &reason, at(offset + 1_000), at(offset + 2_000)),
                entry(TaskStatus::Received, offset + 1_000, attempt, Some(&reason)),
            ),
        ] {
            let after = apply(&store, &transition).await;
            written.push(step);
            let kept = written.len().min(HISTORY_KEPT);
            let omitted = written.len() - kept;
            assert_eq!(after.history, written[omitted..], "after {} entries", written.len());
            assert_eq!(after.history_omitted as usize, omitted);

            // The item itself holds no more than the kept entries (the trim write followed).
            let item = raw_item(&store, id).await;
            let AttributeValue::L(history) = &item["history"] else { panic!("history is a list: {item:?}") };
            assert_eq!(history.len(), kept, "after {} entries", written.len());
            let omitted_attribute = (omitted > 0).then(|| n(omitted));
            assert_eq!(item.get("history_omitted"), omitted_attribute.as_ref());
            assert_eq!(store.get(id).await.unwrap(), Some(after));
        }
    }
    assert_eq!(written.len(), 31);

    // The latest entries, in order, as stored.
    let item = raw_item(&store, id).await;
    let latest: Vec<AttributeValue> = written[11..]
        .iter()
        .map(|entry| history_map(entry.status.as_str(), entry.at.as_millis(), entry.attempt, entry.reason.as_deref()))
        .collect();
    assert_eq!(item.get("history"), Some(&AttributeValue::L(latest)));
    assert_eq!(item.get("history_omitted"), Some(&n(11)));
    let got = store.get(id).await.unwrap().unwrap();
    assert_eq!(got.history.first(), Some(&entry(TaskStatus::InProgress, 60_000, 6, None)));
    assert_eq!(got.history.last(), Some(&entry(TaskStatus::Received, 151_000, 15, Some("attempt 15: HTTP 503"))));
}

#[tokio::test]
async fn a_task_is_replayed_at_most_max_replays_times() {
    let store = fresh_store().await;
    let task = received_task(&store, json!({})).await;
    let id = &task.task_id;

    let mut offset = 1_000;
    for replay in 1..=MAX_REPLAYS {
        apply(&store, &cancel(id, TaskStatus::Received, 0, offset)).await;
        let replayed = apply(&store, &Transition::replay(id, 0, at(offset + 500), &TTL)).await;
        assert_eq!((replayed.status, replayed.replays), (TaskStatus::Received, replay));
        assert_eq!(raw_item(&store, id).await.get("replays"), Some(&n(replay)));
        offset += 1_000;
    }
    let cancelled = apply(&store, &cancel(id, TaskStatus::Received, 0, offset)).await;

    // One more is refused, and changes nothing.
    let item = raw_item(&store, id).await;
    assert_eq!(
        store.apply(&Transition::replay(id, 0, at(offset + 500), &TTL)).await.unwrap(),
        WriteOutcome::Rejected(Some(cancelled.clone()))
    );
    assert_eq!(raw_item(&store, id).await, item);
    assert_eq!(item.get("replays"), Some(&n(MAX_REPLAYS)));
    assert_eq!(store.get(id).await.unwrap(), Some(cancelled));
}

#[test]
fn item_sizes_follow_the_documented_rules() {
    assert_eq!(number_size("0"), 2);
    assert_eq!(number_size("7"), 2);
    assert_eq!(number_size("12"), 2);
    assert_eq!(number_size("123"), 3);
    assert_eq!(number_size("1000000"), 2);
    assert_eq!(number_size("-1.50"), 3);
    assert_eq!(number_size("1764201387123"), 8);
    let item = HashMap::from([
        ("pk".to_owned(), s("TASK#x")),                                                 // 2 + 6
        ("n".to_owned(), n(12_345)),                                                    // 1 + 4
        ("l".to_owned(), AttributeValue::L(vec![s("ab"), n(1)])),                       // 1 + 3 + (1 + 2) + (1 + 2)
        ("m".to_owned(), AttributeValue::M(HashMap::from([("k".to_owned(), s("v"))]))), // 1 + 3 + (1 + 1 + 1)
        ("e".to_owned(), AttributeValue::M(HashMap::new())),                            // 1 + 3
        ("b".to_owned(), AttributeValue::Bool(true)),                                   // 1 + 1
        ("u".to_owned(), s("é")),                                                       // 1 + 2 (UTF-8 bytes)
    ]);
    assert_eq!(item_size(&item), 8 + 5 + 10 + 7 + 4 + 2 + 3);
}

/// The largest a task's state can get: an inline result of the largest inline size a deployment
/// may set, an error of the largest size a callback may report, the kept history with the
/// longest reasons, the kept tokens, the longest client id, and every number as long as it gets.
fn worst_case_task() -> Task {
    let reason = |i: usize| format!("{i:04}{}", "r".repeat(taskfleet_core::validation::MAX_ERROR_BYTES - 4));
    // 15 significant digits: the most a created key holds (year 33,267).
    let ms = 987_654_321_098_765i64;
    let attempts = u32::MAX - 1;
    let mut tokens = BTreeMap::new();
    for attempt in attempts + 1 - TOKENS_KEPT..=attempts {
        tokens.insert(attempt, token_digest(attempt));
    }
    Task {
        task_id: TaskId::generate(),
        client_id: ClientId::parse(&"c".repeat(ClientId::MAX_LEN)).unwrap(),
        status: TaskStatus::InProgress,
        result: None,
        error: Some("e".repeat(taskfleet_core::validation::MAX_ERROR_BYTES)),
        cancelled: true,
        attempts,
        series_start: attempts - 1,
        created_at: Timestamp::from_millis(ms),
        updated_at: Timestamp::from_millis(ms + 1_234_567),
        due_at: Timestamp::from_millis(ms + 7_654_321),
        expires_at: 987_654_987_654,
        callback_tokens: tokens,
        history: (0..HISTORY_KEPT)
            .map(|i| HistoryEntry {
                status: TaskStatus::InProgress,
                at: Timestamp::from_millis(ms + 123_456 + i64::try_from(i).unwrap()),
                attempt: attempts - 1,
                reason: Some(reason(i)),
            })
            .collect(),
        history_omitted: u32::MAX - 123,
        replays: u32::MAX - 12,
        run_at: Some(Timestamp::from_millis(ms + 604_800_000)),
        trace_id: Some(TraceId::generate()),
        webhook_url: Some(format!("https://{}", "h".repeat(MAX_URL_LEN - "https://".len()))),
        webhook: Some(Delivery {
            state: DeliveryState::Delivered,
            attempts: u32::MAX - 3,
            next_at: Some(Timestamp::from_millis(ms + 99_999_999)),
        }),
    }
}

/// A result whose compact JSON is exactly `bytes` long.
fn result_of(bytes: usize) -> Value {
    let value = json!({ "r": "x".repeat(bytes - r#"{"r":""}"#.len()) });
    assert_eq!(value.to_string().len(), bytes);
    value
}

#[tokio::test]
async fn the_largest_task_item_stays_under_dynamodbs_item_limit() {
    let store = fresh_store().await;
    let largest = result_of(blob::MAX_INLINE_MAX_BYTES);
    let worst = worst_case_task();
    let ms = worst.created_at.as_millis();

    // 1. The result as the store's own finish writes it, onto the largest state before it.
    let finishing = Task { task_id: TaskId::generate(), ..worst.clone() };
    store
        .insert(&finishing, &Content::Inline(largest.clone()), payload_expiry(finishing.created_at))
        .await
        .expect("insert the largest payload");
    let outcome = Outcome::Succeeded { result: Content::Inline(largest.clone()) };
    let at = Timestamp::from_millis(ms + 9_000_000);
    let finish =
        Transition::finish(&finishing.task_id, worst.attempts, token_digest(worst.attempts), outcome, at, &TTL);
    let done = apply(&store, &finish).await;
    assert_eq!(done.result, Some(Content::Inline(largest.clone())));
    let finished_item = raw_item(&store, &finishing.task_id).await;
    let finished_size = item_size(&finished_item);
    let payload_size = item_size(&raw_payload_item(&store, &finishing.task_id).await);

    // 2. Everything at once (no sequence of transitions leaves a result and an error together,
    //    nor a result after a history of reasons only: inserted so), then a retry with the
    //    longest reason appends one more entry, which the trim write drops again.
    let task = Task { result: Some(Content::Inline(largest.clone())), ..worst.clone() };
    common::insert(&store, &task).await;
    let reason = "R".repeat(taskfleet_core::validation::MAX_ERROR_BYTES);
    let retry_at = Timestamp::from_millis(ms + 9_876_543);
    let retry =
        Transition::retry(&task.task_id, task.attempts, &reason, Timestamp::from_millis(ms + 8_000_000), retry_at);
    let retried = apply(&store, &retry).await;
    assert_eq!(retried.history.len(), HISTORY_KEPT);
    assert_eq!(retried.history.last().and_then(|entry| entry.reason.as_deref()), Some(reason.as_str()));
    assert_eq!(retried.history_omitted, worst.history_omitted + 1);
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(retried.clone()));

    let item = raw_item(&store, &task.task_id).await;
    let AttributeValue::L(history) = &item["history"] else { panic!("history is a list") };
    assert_eq!(history.len(), HISTORY_KEPT);
    assert!(
        history.iter().all(|entry| matches!(entry, AttributeValue::M(e) if matches!(e.get("reason"), Some(AttributeValue::S(r)) if r.len() == 1_024))),
        "every kept entry has a 1,024-byte reason"
    );
    let AttributeValue::M(tokens) = &item["tokens"] else { panic!("tokens is a map") };
    assert_eq!(tokens.len(), TOKENS_KEPT as usize);
    assert_eq!(item.get("result"), Some(&s(&largest.to_string())));
    assert!(item.contains_key("error") && item.contains_key("status_key"), "{:?}", names(&item));
    let worst_size = item_size(&item);

    // Between the retry's write and the trim, the item held one more entry (the one dropped).
    let dropped = history_map(
        "IN_PROGRESS",
        worst.history[0].at.as_millis(),
        worst.history[0].attempt,
        worst.history[0].reason.as_deref(),
    );
    let mut transient = item.clone();
    let AttributeValue::L(history) = transient.get_mut("history").unwrap() else { unreachable!() };
    history.insert(0, dropped.clone());
    transient.insert("history_omitted".into(), n(worst.history_omitted));
    let transient_size = item_size(&transient);
    assert_eq!(transient_size, worst_size + 1 + value_size(&dropped));

    println!(
        "worst-case state item: {worst_size} bytes ({transient_size} before its history is trimmed; \
         finished through the store: {finished_size}); largest payload item: {payload_size} bytes; \
         DynamoDB's limit: {}",
        common::MAX_ITEM_BYTES
    );
    for size in [worst_size, transient_size, finished_size, payload_size] {
        assert!(size < common::MAX_ITEM_BYTES, "{size} bytes do not fit in a DynamoDB item");
    }
    // The size is what the result makes it: anything else is small.
    assert!(worst_size > blob::MAX_INLINE_MAX_BYTES && worst_size < blob::MAX_INLINE_MAX_BYTES + 32 * 1024);
    assert!(raw_item_at(&store, table::payload_item_key(task.task_id.as_str())).await.is_some());
}
