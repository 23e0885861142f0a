//! Shared setup for the adapter tests: everything runs against the AWS emulator named by
//! `AWS_ENDPOINT_URL`, through the real SDK, with resources no other test uses.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use taskfleet_adapters::DynamoStore;
use taskfleet_adapters::table::{self, Layout};
use taskfleet_core::blob::Content;
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, Timestamp, TtlPolicy};

/// A fixed, realistic instant (2025-11-26T23:56:27.123Z), so every expected value is exact.
pub const T0: i64 = 1_764_201_387_123;

/// Tasks live an hour unfinished and a day after they finished.
pub const TTL: TtlPolicy = TtlPolicy { task_ttl_seconds: 3_600, result_retention_seconds: 86_400 };

/// DynamoDB's item size limit: 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// `T0 + offset_ms`.
pub fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

/// A new tasks table of its own (a unique name), created as `table::create` creates it; its
/// name and a client for it. The emulator (scripts/emulator.py) applies DynamoDB requests one at
/// a time, as atomically as DynamoDB applies each write.
pub async fn fresh_table() -> (aws_sdk_dynamodb::Client, String) {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("tasks");
    table::create(&client, &name).await.unwrap_or_else(|e| panic!("cannot create table {name}: {e:?}"));
    (client, name)
}

/// A store with the default layout over a fresh table of its own.
pub async fn fresh_store() -> DynamoStore {
    let (client, name) = fresh_table().await;
    DynamoStore::new(client, name)
}

/// A store with `layout` over a fresh table of its own.
pub async fn fresh_store_with(layout: Layout) -> DynamoStore {
    let (client, name) = fresh_table().await;
    DynamoStore::with_layout(client, name, layout)
}

/// Another store (as another function, or the same one after a redeploy would build it) over
/// `store`'s table, with `status_shards` status index shards.
pub fn store_over(store: &DynamoStore, status_shards: u32) -> DynamoStore {
    DynamoStore::with_layout(store.client().clone(), store.table(), Layout { status_shards })
}

pub fn client_id() -> ClientId {
    ClientId::parse("acme-corp_1.eu").unwrap()
}

/// The stored digest of attempt `attempt`'s callback token (deterministic, so tests can name it).
pub fn token_digest(attempt: u32) -> String {
    taskfleet_core::token::digest(&format!("callback-token-of-attempt-{attempt}"))
}

/// A fresh random task id whose first eight hex digits are `lead`: its status index shard is
/// `lead % shards` and its client index shard `lead % 16`, so tests place tasks in shards
/// deterministically.
pub fn task_id_with_lead(lead: u32) -> TaskId {
    let random = TaskId::generate();
    TaskId::parse(&format!("{lead:08x}{}", &random.as_str()[8..])).expect("a canonical task id")
}

/// A task in `status`, due (and last updated) at `due_at` (ms), created a minute earlier.
pub fn task_in(status: TaskStatus, due_at: i64) -> Task {
    task_in_as(TaskId::generate(), status, due_at)
}

/// [`task_in`] with a given id.
pub fn task_in_as(task_id: TaskId, status: TaskStatus, due_at: i64) -> Task {
    let due = Timestamp::from_millis(due_at);
    let mut task = Task::received_as(
        task_id,
        client_id(),
        Timestamp::from_millis(due_at - 60_000),
        due.as_epoch_seconds() + 3_600,
    );
    task.status = status;
    task.updated_at = due;
    task.due_at = due;
    task
}

/// When the payload of a task created at `created_at` expires (as the service computes it).
pub fn payload_expiry(created_at: Timestamp) -> i64 {
    TTL.payload_expiry(created_at)
}

/// Inserts `task` with `payload` inline, kept as long as the service would keep it.
pub async fn insert_with(store: &DynamoStore, task: &Task, payload: Value) {
    store.insert(task, &Content::Inline(payload), payload_expiry(task.created_at)).await.expect("insert");
}

/// Inserts `task` with a small inline payload.
pub async fn insert(store: &DynamoStore, task: &Task) {
    insert_with(store, task, json!({"task": task.task_id.as_str()})).await;
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

/// The state item of task `task_id`, exactly as DynamoDB holds it.
pub async fn raw_item(store: &DynamoStore, task_id: &TaskId) -> HashMap<String, AttributeValue> {
    raw_item_at(store, table::task_key(task_id.as_str())).await.expect("the item is stored")
}

/// The payload item of task `task_id`, exactly as DynamoDB holds it.
pub async fn raw_payload_item(store: &DynamoStore, task_id: &TaskId) -> HashMap<String, AttributeValue> {
    raw_item_at(store, table::payload_item_key(task_id.as_str())).await.expect("the payload item is stored")
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

/// Every entry the status index holds under `status_key`, earliest due first (a raw Query of
/// the index, all pages).
pub async fn status_index_entries(store: &DynamoStore, status_key: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .query()
            .table_name(store.table())
            .index_name(table::STATUS_INDEX)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", table::STATUS_KEY)
            .expression_attribute_values(":k", s(status_key))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("raw Query of the status index");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// The task ids the status index holds, over every shard of both active statuses among
/// `shards` shards, by status key value.
pub async fn status_index_task_ids(store: &DynamoStore, shards: u32) -> HashMap<String, Vec<TaskId>> {
    let mut found = HashMap::new();
    for status in [TaskStatus::Received, TaskStatus::InProgress] {
        for shard in 0..shards {
            let key = table::status_shard_key(status, shard);
            let ids: Vec<TaskId> = status_index_entries(store, &key)
                .await
                .iter()
                .map(|item| match item.get(table::PK) {
                    Some(AttributeValue::S(pk)) => {
                        TaskId::parse(table::task_id_of(pk).expect("a task item")).expect("a task id")
                    }
                    other => panic!("an index entry without a pk: {other:?}"),
                })
                .collect();
            if !ids.is_empty() {
                found.insert(key, ids);
            }
        }
    }
    found
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

/// The stored `tokens` map: attempt number → digest.
pub fn tokens_map(attempts: impl IntoIterator<Item = u32>) -> AttributeValue {
    AttributeValue::M(attempts.into_iter().map(|attempt| (attempt.to_string(), s(&token_digest(attempt)))).collect())
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

/// The size DynamoDB bills and limits an item by, per AWS's documented rules ("Item sizes and
/// formats", DynamoDB Developer Guide): the sum over its attributes of the UTF-8 length of the
/// name plus the size of the value.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

/// The size of one attribute value:
/// - String: its UTF-8 length; Binary: its length in bytes;
/// - Number: 1 byte per two significant digits (leading and trailing zeros trimmed), plus 1, plus
///   1 if negative;
/// - Boolean, Null: 1 byte;
/// - List, Map: 3 bytes of overhead, plus for each element 1 byte and its size (for a map, the
///   element's size includes the UTF-8 length of its key);
/// - Sets: the sum of their elements' sizes.
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(list) => 3 + list.iter().map(|element| 1 + value_size(element)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map.iter().map(|(key, element)| 1 + key.len() + value_size(element)).sum::<usize>()
        }
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|blob| blob.as_ref().len()).sum(),
        other => panic!("no size rule for {other:?}"),
    }
}

/// The size of a Number: 1 byte per two significant digits (rounded up), plus 1, plus 1 if
/// negative.
pub fn number_size(number: &str) -> usize {
    let negative = number.starts_with('-');
    let mantissa = number.trim_start_matches(['-', '+']).split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1 + usize::from(negative)
}
