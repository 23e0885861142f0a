//! The indexes of the tasks table against the AWS emulator (moto server) through the real SDK:
//! counts, earliest due time and due listings over the status index (`status`, `due_at`), and
//! the client index (`client_id`, `created_at`) with what it projects.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{T0, applied, at, fresh_store, n, names, s, task_in, token_digest};
use serde_json::json;
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::lifecycle::{Heartbeat, Transition};
use taskfleet_core::ports::{DueTask, IdempotencyRecord, TaskStore};
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, Timestamp};

/// Inserts a task in `status` due at `T0 + offset` with the given attempt counters.
async fn insert_due(store: &DynamoStore, status: TaskStatus, offset: i64, attempts: u32, series_start: u32) -> Task {
    let mut task = task_in(status, T0 + offset, json!({"o": offset}));
    task.attempts = attempts;
    task.series_start = series_start;
    store.insert(&task).await.expect("insert");
    task
}

fn due_entry(task: &Task) -> DueTask {
    DueTask {
        task_id: task.task_id.clone(),
        attempts: task.attempts,
        series_start: task.series_start,
        due_at: task.due_at,
    }
}

/// Claims an idempotency key in the table, so the indexes are read with such items present.
async fn claim_a_key(store: &DynamoStore) {
    let record = IdempotencyRecord {
        client_id: common::client_id(),
        key_digest: taskfleet_core::token::digest("key"),
        request_digest: taskfleet_core::token::digest("{}"),
        task_id: TaskId::generate(),
        created_at: at(0),
        expires_at: at(0).as_epoch_seconds() + 3_600,
    };
    assert_eq!(store.claim(&record).await.unwrap(), None);
}

#[tokio::test]
async fn counts_and_earliest_due_come_from_the_status_index() {
    let store = fresh_store().await;
    // Nothing stored yet.
    for status in TaskStatus::ALL {
        assert_eq!(store.count(status, None, None).await.unwrap(), 0, "{status}");
        assert_eq!(store.earliest_due(status).await.unwrap(), None, "{status}");
    }
    claim_a_key(&store).await;

    let mut tasks = HashMap::new();
    for (status, offset) in [
        (TaskStatus::Received, 30_000),
        (TaskStatus::Received, 10_000), // the earliest RECEIVED
        (TaskStatus::Received, 20_000),
        (TaskStatus::InProgress, 5_000),
        (TaskStatus::InProgress, 40_000),
        (TaskStatus::Done, 1_000),
        (TaskStatus::Done, 50_000),
        (TaskStatus::Done, 60_000),
        (TaskStatus::Done, 70_000),
        (TaskStatus::Failed, 2_000),
        (TaskStatus::Failed, 80_000),
    ] {
        let task = insert_due(&store, status, offset, 0, 0).await;
        tasks.insert((status, offset), task);
    }

    let count = |status, since: Option<i64>, until: Option<i64>| {
        let store = store.clone();
        async move {
            let at = |offset: Option<i64>| offset.map(|offset| Timestamp::from_millis(T0 + offset));
            store.count(status, at(since), at(until)).await.unwrap()
        }
    };
    assert_eq!(count(TaskStatus::Received, None, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, None, None).await, 2);
    assert_eq!(count(TaskStatus::Done, None, None).await, 4);
    assert_eq!(count(TaskStatus::Failed, None, None).await, 2);

    // `since` is inclusive and filters on due_at.
    assert_eq!(count(TaskStatus::Done, Some(50_000), None).await, 3);
    assert_eq!(count(TaskStatus::Done, Some(50_001), None).await, 2);
    assert_eq!(count(TaskStatus::Done, Some(70_001), None).await, 0);
    assert_eq!(count(TaskStatus::Failed, Some(3_000), None).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(0), None).await, 3);
    // So is `until`.
    assert_eq!(count(TaskStatus::InProgress, None, Some(5_000)).await, 1);
    assert_eq!(count(TaskStatus::InProgress, None, Some(4_999)).await, 0);
    assert_eq!(count(TaskStatus::InProgress, None, Some(40_000)).await, 2);
    assert_eq!(count(TaskStatus::Done, None, Some(60_000)).await, 3);
    // And both together.
    assert_eq!(count(TaskStatus::Done, Some(50_000), Some(60_000)).await, 2);
    assert_eq!(count(TaskStatus::Done, Some(50_001), Some(69_999)).await, 1);
    assert_eq!(count(TaskStatus::Done, Some(60_000), Some(60_000)).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(10_001), Some(19_999)).await, 0);

    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(10_000)));
    assert_eq!(store.earliest_due(TaskStatus::InProgress).await.unwrap(), Some(at(5_000)));
    assert_eq!(store.earliest_due(TaskStatus::Done).await.unwrap(), Some(at(1_000)));
    assert_eq!(store.earliest_due(TaskStatus::Failed).await.unwrap(), Some(at(2_000)));

    // A start moves a task between the index's partitions, due at its callback deadline.
    let earliest = &tasks[&(TaskStatus::Received, 10_000)].task_id;
    let start = Transition::start(earliest, 1, token_digest(1), at(85_000), at(90_000));
    applied(store.apply(&start).await.unwrap(), "start");
    assert_eq!(count(TaskStatus::Received, None, None).await, 2);
    assert_eq!(count(TaskStatus::InProgress, None, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, Some(90_000), None).await, 1);
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(20_000)));
    assert_eq!(store.earliest_due(TaskStatus::InProgress).await.unwrap(), Some(at(5_000)));

    // A heartbeat moves its entry along the index.
    let beat = Heartbeat {
        task_id: earliest.clone(),
        attempt: 1,
        token_digest: token_digest(1),
        deadline: at(95_000),
        at: at(86_000),
    };
    applied(store.heartbeat(&beat).await.unwrap(), "heartbeat");
    assert_eq!(count(TaskStatus::InProgress, Some(90_000), Some(94_999)).await, 0);
    assert_eq!(count(TaskStatus::InProgress, Some(95_000), Some(95_000)).await, 1);
    assert_eq!(
        store.due(TaskStatus::InProgress, at(100_000), 10).await.unwrap(),
        [
            due_entry(&tasks[&(TaskStatus::InProgress, 5_000)]),
            due_entry(&tasks[&(TaskStatus::InProgress, 40_000)]),
            DueTask { task_id: earliest.clone(), attempts: 1, series_start: 0, due_at: at(95_000) },
        ]
    );
}

#[tokio::test]
async fn due_lists_the_earliest_first_up_to_until_and_limit() {
    let store = fresh_store().await;
    claim_a_key(&store).await;
    // Other statuses due earlier than anything RECEIVED must not show up.
    let in_progress = insert_due(&store, TaskStatus::InProgress, 1_000, 4, 2).await;
    insert_due(&store, TaskStatus::Done, 2_000, 1, 0).await;
    insert_due(&store, TaskStatus::Failed, 3_000, 1, 0).await;
    let mut received = Vec::new();
    for (offset, attempts, series_start) in
        [(50_000, 5, 4), (10_000, 0, 0), (40_000, 3, 3), (20_000, 1, 0), (30_000, 2, 1), (60_000, 0, 0), (70_000, 7, 5)]
    {
        received.push(insert_due(&store, TaskStatus::Received, offset, attempts, series_start).await);
    }
    received.sort_by_key(|task| task.due_at);
    let expected: Vec<DueTask> = received.iter().map(due_entry).collect();
    assert_eq!(expected[0].due_at, at(10_000));
    assert_eq!((expected[2].attempts, expected[2].series_start), (2, 1));

    let due = |status, until: i64, limit| {
        let store = store.clone();
        async move { store.due(status, at(until), limit).await.unwrap() }
    };
    assert_eq!(due(TaskStatus::Received, 100_000, 100).await, expected);
    // `until` is inclusive.
    assert_eq!(due(TaskStatus::Received, 40_000, 100).await, expected[..4]);
    assert_eq!(due(TaskStatus::Received, 39_999, 100).await, expected[..3]);
    assert_eq!(due(TaskStatus::Received, 9_999, 100).await, []);
    // `limit` keeps the earliest.
    assert_eq!(due(TaskStatus::Received, 100_000, 2).await, expected[..2]);
    assert_eq!(due(TaskStatus::Received, 40_000, 3).await, expected[..3]);
    assert_eq!(due(TaskStatus::Received, 100_000, 7).await, expected);
    assert_eq!(due(TaskStatus::Received, 100_000, 1).await, expected[..1]);
    assert_eq!(due(TaskStatus::Received, 100_000, 0).await, []);
    // Each status is its own list.
    assert_eq!(due(TaskStatus::InProgress, 100_000, 10).await, [due_entry(&in_progress)]);
    assert_eq!(
        due(TaskStatus::InProgress, 100_000, 10).await[0],
        DueTask { task_id: in_progress.task_id.clone(), attempts: 4, series_start: 2, due_at: at(1_000) }
    );
    assert_eq!(due(TaskStatus::InProgress, 999, 10).await, []);
}

/// Items big enough that the emulator splits a query of them into pages (it counts the whole
/// item against the 1 MB page size, even on an index): three fit in a page.
fn padded(offset: i64) -> serde_json::Value {
    json!({"o": offset, "pad": "x".repeat(300_000)})
}

#[tokio::test]
async fn due_and_count_read_across_pages() {
    let store = fresh_store().await;
    let mut received = Vec::new();
    for i in 0..8i64 {
        // Inserted latest first, so the index's order is not the insertion order.
        let offset = (8 - i) * 1_000;
        let mut task = task_in(TaskStatus::Received, T0 + offset, padded(offset));
        task.attempts = u32::try_from(i).unwrap();
        task.series_start = u32::try_from(i / 2).unwrap();
        store.insert(&task).await.expect("insert");
        received.push(task);
    }
    received.sort_by_key(|task| task.due_at);
    let expected: Vec<DueTask> = received.iter().map(due_entry).collect();

    // The premise: one query of the index does not answer everything at once.
    let first_page = store
        .client()
        .query()
        .table_name(store.table())
        .index_name(table::STATUS_INDEX)
        .key_condition_expression("#s = :s")
        .expression_attribute_names("#s", table::STATUS)
        .expression_attribute_values(":s", s("RECEIVED"))
        .send()
        .await
        .expect("raw Query");
    let first_page_len = first_page.items().len();
    assert!(first_page.last_evaluated_key.is_some() && first_page_len < 8, "one page held {first_page_len} items");

    assert_eq!(store.due(TaskStatus::Received, at(100_000), 100).await.unwrap(), expected);
    assert_eq!(store.due(TaskStatus::Received, at(100_000), 5).await.unwrap(), expected[..5]);
    assert_eq!(store.due(TaskStatus::Received, at(7_000), 100).await.unwrap(), expected[..7]);
    assert_eq!(store.due(TaskStatus::Received, at(6_000), 4).await.unwrap(), expected[..4]);
    assert_eq!(store.due(TaskStatus::Received, at(100_000), first_page_len).await.unwrap(), expected[..first_page_len]);

    assert_eq!(store.count(TaskStatus::Received, None, None).await.unwrap(), 8);
    assert_eq!(store.count(TaskStatus::Received, Some(at(2_000)), Some(at(7_000))).await.unwrap(), 6);
    assert_eq!(store.count(TaskStatus::Received, None, Some(at(7_999))).await.unwrap(), 7);
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(1_000)));
}

#[tokio::test]
async fn the_client_index_lists_a_clients_tasks_newest_first_with_the_listed_attributes() {
    let store = fresh_store().await;
    claim_a_key(&store).await;
    let other_client = ClientId::parse("other").unwrap();
    let mut mine = Vec::new();
    for offset in [20_000, 10_000, 30_000] {
        let task = Task::received(common::client_id(), json!({"o": offset}), at(offset), 4_000_000_000);
        store.insert(&task).await.unwrap();
        mine.push(task);
    }
    store.insert(&Task::received(other_client, json!({}), at(15_000), 4_000_000_000)).await.unwrap();
    let started = Transition::start(&mine[0].task_id, 1, token_digest(1), at(40_000), at(50_000));
    applied(store.apply(&started).await.unwrap(), "start");

    let page = store
        .client()
        .query()
        .table_name(store.table())
        .index_name(table::CLIENT_INDEX)
        .key_condition_expression("#c = :c")
        .expression_attribute_names("#c", table::CLIENT_ID)
        .expression_attribute_values(":c", s(common::client_id().as_str()))
        .scan_index_forward(false)
        .send()
        .await
        .expect("Query by_client");
    let items = page.items();
    let listed: Vec<Option<&AttributeValue>> = items.iter().map(|item| item.get("created_at")).collect();
    assert_eq!(listed, [Some(&n(T0 + 30_000)), Some(&n(T0 + 20_000)), Some(&n(T0 + 10_000))]);
    for item in items {
        assert_eq!(
            names(item),
            ["attempts", "client_id", "created_at", "expires_at", "pk", "status", "task_id", "updated_at"],
            "no payload, result or history in the client index"
        );
    }
    let started_item = &items[1];
    assert_eq!(started_item.get("task_id"), Some(&s(mine[0].task_id.as_str())));
    assert_eq!(started_item.get("status"), Some(&s("IN_PROGRESS")));
    assert_eq!(started_item.get("attempts"), Some(&n(1)));
    assert_eq!(started_item.get("updated_at"), Some(&n(T0 + 40_000)));
    assert_eq!(started_item.get("expires_at"), Some(&n(4_000_000_000i64)));
}
