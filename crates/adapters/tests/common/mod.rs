//! Shared setup for the adapter tests: everything runs against the AWS emulator named by
//! `AWS_ENDPOINT_URL`, through the real SDK, with resources no other test uses.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::ports::WriteOutcome;
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, Timestamp, TtlPolicy};

/// A fixed, realistic instant (2025-11-26T23:56:27.123Z), so every expected value is exact.
pub const T0: i64 = 1_764_201_387_123;

/// Tasks live an hour unfinished and a day after they finished.
pub const TTL: TtlPolicy = TtlPolicy { task_ttl_seconds: 3_600, result_retention_seconds: 86_400 };

/// `T0 + offset_ms`.
pub fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

/// A store over a freshly created tasks table of its own. The emulator (scripts/emulator.py)
/// applies DynamoDB requests one at a time, as atomically as DynamoDB applies each write.
pub async fn fresh_store() -> DynamoStore {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("tasks");
    table::create(&client, &name).await.unwrap_or_else(|e| panic!("cannot create table {name}: {e:?}"));
    DynamoStore::new(client, name)
}

pub fn client_id() -> ClientId {
    ClientId::parse("acme-corp_1.eu").unwrap()
}

/// The stored digest of attempt `attempt`'s callback token (deterministic, so tests can name it).
pub fn token_digest(attempt: u32) -> String {
    taskfleet_core::token::digest(&format!("callback-token-of-attempt-{attempt}"))
}

/// A task in `status`, due (and last updated) at `due_at` (ms), created a minute earlier.
pub fn task_in(status: TaskStatus, due_at: i64, payload: Value) -> Task {
    let due = Timestamp::from_millis(due_at);
    let mut task =
        Task::received(client_id(), payload, Timestamp::from_millis(due_at - 60_000), due.as_epoch_seconds() + 3_600);
    task.status = status;
    task.updated_at = due;
    task.due_at = due;
    task
}

/// The task after a write that must have applied.
pub fn applied(outcome: WriteOutcome, what: &str) -> Task {
    match outcome {
        WriteOutcome::Applied(task) => task,
        other => panic!("{what} was not applied: {other:?}"),
    }
}

/// The item stored under `pk`, exactly as DynamoDB holds it.
pub async fn raw_item_at(store: &DynamoStore, pk: String) -> Option<HashMap<String, AttributeValue>> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key(table::PK, AttributeValue::S(pk))
        .consistent_read(true)
        .send()
        .await
        .expect("raw GetItem")
        .item
}

/// The item of task `task_id`, exactly as DynamoDB holds it.
pub async fn raw_item(store: &DynamoStore, task_id: &TaskId) -> HashMap<String, AttributeValue> {
    raw_item_at(store, table::task_key(task_id.as_str())).await.expect("the item is stored")
}

/// Every item of the table (a raw Scan, all pages).
pub async fn all_items(store: &DynamoStore) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("raw Scan");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// The attribute names of an item, sorted.
pub fn names(item: &HashMap<String, AttributeValue>) -> Vec<&str> {
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

pub fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

pub fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// A stored history entry: `{status, at, attempt[, reason]}`.
pub fn history_map(status: &str, at_ms: i64, attempt: u32, reason: Option<&str>) -> AttributeValue {
    let mut entry = HashMap::from([
        ("status".to_owned(), s(status)),
        ("at".to_owned(), n(at_ms)),
        ("attempt".to_owned(), n(attempt)),
    ]);
    if let Some(reason) = reason {
        entry.insert("reason".to_owned(), s(reason));
    }
    AttributeValue::M(entry)
}
