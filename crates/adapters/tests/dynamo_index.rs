//! The indexes of the tasks table against the AWS emulator (moto server) through the real SDK:
//! the sparse, sharded status index (`status_key` = `{STATUS}#{shard}`, `due_at`) that holds
//! only active tasks — counts, earliest due time and due listings merged over its shards, and the
//! shard count readers remember in the table — and the keys-only client index (`client_key` =
//! `{client}#{shard of 32}`, `created_key`) that lists a client's tasks newest first.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use common::{
    T0, applied, at, fresh_store, fresh_store_with, fresh_table, insert, n, names, raw_item, raw_item_at, s,
    status_index_entries, status_index_task_ids, store_over, task_id_with_lead, task_in, task_in_as, token_digest,
};
use serde_json::json;
use taskfleet_adapters::DynamoStore;
use taskfleet_adapters::table::{self, Layout};
use taskfleet_core::blob::Content;
use taskfleet_core::lifecycle::{CANCELLED, Outcome, Transition};
use taskfleet_core::ports::{DueTask, IdempotencyRecord, ListPosition, TaskStore, TaskSummary};
use taskfleet_core::{ClientId, Task, TaskId, TaskStatus, Timestamp};

const TTL: taskfleet_core::TtlPolicy = common::TTL;

/// Inserts a task in `status` due at `T0 + offset` with the given attempt counters.
async fn insert_due(store: &DynamoStore, status: TaskStatus, offset: i64, attempts: u32, series_start: u32) -> Task {
    let mut task = task_in(status, T0 + offset);
    task.attempts = attempts;
    task.series_start = series_start;
    insert(store, &task).await;
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

/// Finished statuses are in no index: the store answers them without reading.
async fn assert_nothing_indexed_for_finished_statuses(store: &DynamoStore) {
    for status in [TaskStatus::Done, TaskStatus::Failed] {
        assert_eq!(store.count(status, None, None).await.unwrap(), 0, "{status}");
        assert_eq!(store.count(status, Some(at(-1_000_000)), Some(at(1_000_000))).await.unwrap(), 0, "{status}");
        assert_eq!(store.earliest_due(status).await.unwrap(), None, "{status}");
        assert_eq!(store.due(status, at(1_000_000), 100).await.unwrap(), [], "{status}");
    }
}

/// The number of status index shards the table remembers (the `META#status-index` item).
async fn remembered_shards(store: &DynamoStore) -> Option<AttributeValue> {
    raw_item_at(store, table::STATUS_SHARDS_ITEM.to_owned()).await.and_then(|item| item.get("shards").cloned())
}

#[tokio::test]
async fn counts_and_earliest_due_come_from_the_status_index_of_active_tasks() {
    let store = fresh_store_with(Layout { status_shards: 4 }).await;
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
        // Finished tasks, due earlier than any active one, are in no index.
        (TaskStatus::Done, 1_000),
        (TaskStatus::Done, 50_000),
        (TaskStatus::Failed, 2_000),
        (TaskStatus::Failed, 80_000),
    ] {
        let task = insert_due(&store, status, offset, 0, 0).await;
        tasks.insert((status, offset), task);
    }
    for ((status, _), task) in &tasks {
        let item = raw_item(&store, &task.task_id).await;
        assert_eq!(item.contains_key("status_key"), !status.is_terminal(), "{status}: {item:?}");
    }

    let count = |status, since: Option<i64>, until: Option<i64>| {
        let store = &store;
        async move {
            let at = |offset: Option<i64>| offset.map(|offset| Timestamp::from_millis(T0 + offset));
            store.count(status, at(since), at(until)).await.unwrap()
        }
    };
    assert_eq!(count(TaskStatus::Received, None, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, None, None).await, 2);
    assert_nothing_indexed_for_finished_statuses(&store).await;

    // `since` is inclusive and filters on due_at.
    assert_eq!(count(TaskStatus::Received, Some(0), None).await, 3);
    assert_eq!(count(TaskStatus::Received, Some(20_000), None).await, 2);
    assert_eq!(count(TaskStatus::Received, Some(20_001), None).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(30_001), None).await, 0);
    assert_eq!(count(TaskStatus::InProgress, Some(5_001), None).await, 1);
    // So is `until`.
    assert_eq!(count(TaskStatus::InProgress, None, Some(5_000)).await, 1);
    assert_eq!(count(TaskStatus::InProgress, None, Some(4_999)).await, 0);
    assert_eq!(count(TaskStatus::InProgress, None, Some(40_000)).await, 2);
    assert_eq!(count(TaskStatus::Received, None, Some(20_000)).await, 2);
    // And both together.
    assert_eq!(count(TaskStatus::Received, Some(10_000), Some(20_000)).await, 2);
    assert_eq!(count(TaskStatus::Received, Some(10_001), Some(29_999)).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(20_000), Some(20_000)).await, 1);
    assert_eq!(count(TaskStatus::Received, Some(10_001), Some(19_999)).await, 0);

    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(10_000)));
    assert_eq!(store.earliest_due(TaskStatus::InProgress).await.unwrap(), Some(at(5_000)));

    // A start moves a task between the index's key values, due at its callback deadline.
    let earliest = &tasks[&(TaskStatus::Received, 10_000)].task_id;
    let start = Transition::start(
        earliest,
        1,
        token_digest(1),
        (at(85_000), at(90_000)),
        &taskfleet_core::TtlPolicy::default(),
    );
    applied(store.apply(&start).await.unwrap(), "start");
    assert_eq!(count(TaskStatus::Received, None, None).await, 2);
    assert_eq!(count(TaskStatus::InProgress, None, None).await, 3);
    assert_eq!(count(TaskStatus::InProgress, Some(90_000), None).await, 1);
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(20_000)));
    assert_eq!(store.earliest_due(TaskStatus::InProgress).await.unwrap(), Some(at(5_000)));

    // A heartbeat moves its entry along the index.
    let beat = Transition::heartbeat(
        earliest,
        1,
        token_digest(1),
        (at(86_000), at(95_000)),
        &taskfleet_core::TtlPolicy::default(),
    );
    applied(store.apply(&beat).await.unwrap(), "heartbeat");
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

    // Finishing takes a task out of the index: counted nowhere any more.
    let finish = Transition::finish(
        earliest,
        1,
        token_digest(1),
        Outcome::Succeeded { result: Content::Inline(json!(1)) },
        at(96_000),
        &TTL,
    );
    applied(store.apply(&finish).await.unwrap(), "finish");
    let cancel = Transition::give_up(
        &tasks[&(TaskStatus::Received, 20_000)].task_id,
        TaskStatus::Received,
        Some(0),
        CANCELLED,
        at(97_000),
        &TTL,
    )
    .unwrap();
    applied(store.apply(&cancel).await.unwrap(), "cancel");
    assert_eq!(count(TaskStatus::Received, None, None).await, 1);
    assert_eq!(count(TaskStatus::InProgress, None, None).await, 2);
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(30_000)));
    assert_nothing_indexed_for_finished_statuses(&store).await;
    let indexed: HashSet<TaskId> = status_index_task_ids(&store, 4).await.into_values().flatten().collect();
    let active: HashSet<TaskId> =
        [(TaskStatus::Received, 30_000), (TaskStatus::InProgress, 5_000), (TaskStatus::InProgress, 40_000)]
            .iter()
            .map(|key| tasks[key].task_id.clone())
            .collect();
    assert_eq!(indexed, active, "only the active tasks are in the index");
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
        let store = &store;
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
    // Finished tasks are never due.
    assert_eq!(due(TaskStatus::Done, 100_000, 10).await, []);
    assert_eq!(due(TaskStatus::Failed, 100_000, 10).await, []);
}

#[tokio::test]
async fn due_and_count_read_across_pages() {
    // One shard, so that one key value holds every task.
    let store = fresh_store_with(Layout { status_shards: 1 }).await;
    let mut received = Vec::new();
    for i in 0..8i64 {
        // Inserted latest first, so the index's order is not the insertion order. Items big
        // enough that the emulator splits a query of them into pages (it counts the whole item
        // against the 1 MB page size, even on an index): three fit in a page.
        let offset = (8 - i) * 1_000;
        let mut task = task_in(TaskStatus::Received, T0 + offset);
        task.attempts = u32::try_from(i).unwrap();
        task.series_start = u32::try_from(i / 2).unwrap();
        task.error = Some(format!("{offset}{}", "x".repeat(300_000)));
        insert(&store, &task).await;
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
        .key_condition_expression("#k = :k")
        .expression_attribute_names("#k", table::STATUS_KEY)
        .expression_attribute_values(":k", s("RECEIVED#0"))
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
async fn the_status_index_spreads_over_its_shards_and_is_read_merged() {
    let store = fresh_store_with(Layout { status_shards: 4 }).await;
    // 40 RECEIVED tasks, ten per shard (the shard is the task id's lead modulo 4), due at
    // distinct times in an order unrelated to their shards or their insertion.
    let mut tasks = Vec::new();
    for lead in 0..40u32 {
        let due = i64::from((lead * 17) % 40 + 1) * 1_000;
        let mut task = task_in_as(task_id_with_lead(lead), TaskStatus::Received, T0 + due);
        task.attempts = lead % 3;
        insert(&store, &task).await;
        tasks.push(task);
    }
    let mut keys = BTreeSet::new();
    for (lead, task) in tasks.iter().enumerate() {
        let key = raw_item(&store, &task.task_id).await.get("status_key").cloned();
        assert_eq!(key, Some(s(&format!("RECEIVED#{}", lead % 4))), "{}", task.task_id);
        keys.insert(format!("{key:?}"));
    }
    assert_eq!(keys.len(), 4, "the tasks spread over every shard: {keys:?}");
    for shard in 0..4 {
        assert_eq!(status_index_entries(&store, &format!("RECEIVED#{shard}")).await.len(), 10, "shard {shard}");
    }

    let mut by_due = tasks.clone();
    by_due.sort_by_key(|task| task.due_at);
    let expected: Vec<DueTask> = by_due.iter().map(due_entry).collect();
    assert_eq!(expected[0].due_at, at(1_000));
    assert_eq!(expected[39].due_at, at(40_000));

    // Merged earliest first over the shards; `until` and `limit` hold across them.
    let due = |until: i64, limit: usize| {
        let store = &store;
        async move { store.due(TaskStatus::Received, at(until), limit).await.unwrap() }
    };
    assert_eq!(due(100_000, 100).await, expected);
    assert_eq!(due(100_000, 40).await, expected);
    assert_eq!(due(100_000, 7).await, expected[..7]);
    assert_eq!(due(100_000, 1).await, expected[..1]);
    assert_eq!(due(20_500, 100).await, expected[..20]);
    assert_eq!(due(20_000, 5).await, expected[..5]);
    assert_eq!(due(999, 100).await, []);
    assert_eq!(store.count(TaskStatus::Received, None, None).await.unwrap(), 40);
    assert_eq!(store.count(TaskStatus::Received, Some(at(10_000)), Some(at(19_000))).await.unwrap(), 10);
    assert_eq!(store.count(TaskStatus::Received, None, Some(at(3_000))).await.unwrap(), 3);
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(at(1_000)));
    assert_eq!(store.count(TaskStatus::InProgress, None, None).await.unwrap(), 0);

    // Seven start (keeping their shard), four of those finish, two others are cancelled.
    for (i, task) in tasks.iter().enumerate().take(7) {
        let deadline = at(60_000 + i64::try_from(i).unwrap());
        let start = Transition::start(
            &task.task_id,
            task.attempts + 1,
            token_digest(1),
            (at(50_000), deadline),
            &taskfleet_core::TtlPolicy::default(),
        );
        applied(store.apply(&start).await.unwrap(), "start");
    }
    for (i, task) in tasks.iter().enumerate().take(4) {
        let outcome = if i % 2 == 0 {
            Outcome::Succeeded { result: Content::Inline(json!(i)) }
        } else {
            Outcome::Failed { error: "boom".into() }
        };
        let finish = Transition::finish(&task.task_id, task.attempts + 1, token_digest(1), outcome, at(55_000), &TTL);
        applied(store.apply(&finish).await.unwrap(), "finish");
    }
    for task in &tasks[10..12] {
        let cancel =
            Transition::give_up(&task.task_id, TaskStatus::Received, Some(task.attempts), CANCELLED, at(56_000), &TTL)
                .unwrap();
        applied(store.apply(&cancel).await.unwrap(), "cancel");
    }

    // The finished tasks are gone from every key value of the index (read directly).
    let indexed = status_index_task_ids(&store, 4).await;
    let finished: Vec<&TaskId> = tasks[..4].iter().chain(&tasks[10..12]).map(|task| &task.task_id).collect();
    for id in &finished {
        assert!(indexed.values().all(|ids| !ids.contains(id)), "{id} is still indexed: {indexed:?}");
        assert!(!raw_item(&store, id).await.contains_key("status_key"));
    }
    for (lead, task) in tasks.iter().enumerate().take(7).skip(4) {
        let key = format!("IN_PROGRESS#{}", lead % 4);
        assert_eq!(indexed.get(&key), Some(&vec![task.task_id.clone()]), "{key}: {indexed:?}");
    }
    assert_eq!(indexed.values().map(Vec::len).sum::<usize>(), 40 - 6);

    assert_eq!(store.count(TaskStatus::Received, None, None).await.unwrap(), 40 - 7 - 2);
    assert_eq!(store.count(TaskStatus::InProgress, None, None).await.unwrap(), 3);
    let in_progress: Vec<TaskId> =
        store.due(TaskStatus::InProgress, at(100_000), 10).await.unwrap().into_iter().map(|due| due.task_id).collect();
    assert_eq!(in_progress, tasks[4..7].iter().map(|task| task.task_id.clone()).collect::<Vec<_>>());
    let still_received: Vec<DueTask> = expected
        .iter()
        .filter(|due| !tasks[..7].iter().chain(&tasks[10..12]).any(|task| task.task_id == due.task_id))
        .cloned()
        .collect();
    assert_eq!(store.due(TaskStatus::Received, at(100_000), 100).await.unwrap(), still_received);
    assert_eq!(store.due(TaskStatus::Received, at(100_000), 3).await.unwrap(), still_received[..3]);
    assert_nothing_indexed_for_finished_statuses(&store).await;
}

/// Inserts `count` RECEIVED tasks through `store` with leads from `first_lead`, due at distinct
/// times from `T0 + first_due`.
async fn insert_leads(store: &DynamoStore, first_lead: u32, count: u32, first_due: i64) -> Vec<Task> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let task = task_in_as(task_id_with_lead(first_lead + i), TaskStatus::Received, T0 + first_due + i64::from(i));
        insert(store, &task).await;
        tasks.push(task);
    }
    tasks
}

async fn assert_sees_all(store: &DynamoStore, tasks: &[Task], what: &str) {
    let mut by_due: Vec<&Task> = tasks.iter().collect();
    by_due.sort_by_key(|task| task.due_at);
    let expected: Vec<DueTask> = by_due.into_iter().map(due_entry).collect();
    let total = u64::try_from(tasks.len()).unwrap();
    assert_eq!(store.count(TaskStatus::Received, None, None).await.unwrap(), total, "{what}");
    assert_eq!(store.due(TaskStatus::Received, at(1_000_000), 1_000).await.unwrap(), expected, "{what}");
    assert_eq!(store.earliest_due(TaskStatus::Received).await.unwrap(), Some(expected[0].due_at), "{what}");
}

#[tokio::test]
async fn lowering_the_shard_count_strands_no_task() {
    let (client, name) = fresh_table().await;
    let fleet8 = DynamoStore::with_layout(client, name, Layout { status_shards: 8 });
    // Written by a fleet with 8 shards: three tasks in each, 18 of them beyond shard 1.
    let mut tasks = insert_leads(&fleet8, 0, 24, 1_000).await;
    let beyond = tasks.iter().filter(|task| table::shard_of(task.task_id.as_str(), 8) >= 2).count();
    assert_eq!(beyond, 18);
    // That fleet's sweeper and metrics read every shard, and the table remembers 8.
    assert_sees_all(&fleet8, &tasks, "the fleet with 8").await;
    assert_eq!(remembered_shards(&fleet8).await, Some(n(8)));

    // Redeployed with 2: a new store reads the 8 shards all the same.
    let fleet2 = store_over(&fleet8, 2);
    assert_sees_all(&fleet2, &tasks, "a store with 2 after 8").await;
    // What it writes lands in its 2 shards, and is found as well.
    let newer = insert_leads(&fleet2, 100, 4, 50_000).await;
    for task in &newer {
        let shard = table::shard_of(task.task_id.as_str(), 2);
        assert_eq!(raw_item(&fleet2, &task.task_id).await.get("status_key"), Some(&s(&format!("RECEIVED#{shard}"))));
    }
    tasks.extend(newer);
    assert_sees_all(&fleet2, &tasks, "a store with 2, with its own tasks").await;
    assert_sees_all(&store_over(&fleet8, 1), &tasks, "a store with 1").await;
    assert_eq!(remembered_shards(&fleet2).await, Some(n(8)), "the remembered count never goes down");
}

#[tokio::test]
async fn raising_the_shard_count_reads_the_old_shards_too() {
    let (client, name) = fresh_table().await;
    let fleet2 = DynamoStore::with_layout(client, name, Layout { status_shards: 2 });
    let mut tasks = insert_leads(&fleet2, 0, 10, 1_000).await;
    assert_sees_all(&fleet2, &tasks, "the fleet with 2").await;
    assert_eq!(remembered_shards(&fleet2).await, Some(n(2)));

    let fleet8 = store_over(&fleet2, 8);
    tasks.extend(insert_leads(&fleet8, 10, 14, 20_000).await);
    assert!(tasks.iter().any(|task| table::shard_of(task.task_id.as_str(), 8) >= 2));
    assert_sees_all(&fleet8, &tasks, "a store with 8 after 2").await;
    assert_eq!(remembered_shards(&fleet8).await, Some(n(8)));
    assert_sees_all(&store_over(&fleet2, 2), &tasks, "a new store with 2 after 8").await;
}

/// Writers place tasks by their own setting, but only readers record theirs in the table. So
/// tasks written by functions configured with more shards than any reader ever read with are
/// stranded once the setting goes down (until a reader with the higher count ran at least once).
#[tokio::test]
async fn tasks_written_with_more_shards_than_any_reader_used_are_found() {
    let (client, name) = fresh_table().await;
    let writer8 = DynamoStore::with_layout(client, name, Layout { status_shards: 8 });
    let tasks = insert_leads(&writer8, 0, 24, 1_000).await;
    assert_sees_all(&store_over(&writer8, 2), &tasks, "a store with 2, no reader with 8 before").await;
}

/// A client's tasks, listed page by page through the `next` positions, until there is no next.
async fn list_all(
    store: &DynamoStore,
    client: &ClientId,
    status: Option<TaskStatus>,
    limit: usize,
    now: Timestamp,
) -> Vec<TaskSummary> {
    let mut listed = Vec::new();
    let mut after: Option<ListPosition> = None;
    for _ in 0..100 {
        let page = store.list(client, status, limit, after.as_ref(), now).await.expect("list");
        assert!(page.tasks.len() <= limit, "a page of {} for a limit of {limit}", page.tasks.len());
        listed.extend(page.tasks);
        match page.next {
            None => return listed,
            Some(next) => {
                if let Some(previous) = &after {
                    let key = |p: &ListPosition| table::created_key(p.created_at.as_millis(), p.task_id.as_str());
                    assert!(key(&next) < key(previous), "positions only move back in time");
                }
                after = Some(next);
            }
        }
    }
    panic!("the listing never ends");
}

fn summary(task: &Task) -> TaskSummary {
    TaskSummary {
        task_id: task.task_id.clone(),
        status: task.status,
        attempts: task.attempts,
        created_at: task.created_at,
        updated_at: task.updated_at,
        expires_at: task.expires_at,
    }
}

#[tokio::test]
async fn a_clients_tasks_are_listed_newest_first_across_the_client_shards() {
    let store = fresh_store().await;
    claim_a_key(&store).await;
    let mine = common::client_id();
    let now = at(100_000);
    let alive = 4_000_000_000;

    // 45 tasks: 20 created at distinct times, then five groups of five created in the same
    // millisecond. A third of them in one client shard (lead ≡ 0 mod 16), so that shard alone
    // holds more than a page.
    let mut tasks = Vec::new();
    for i in 0..45u32 {
        let created = if i < 20 { i64::from(i) * 1_000 } else { 20_000 + i64::from((i - 20) / 5) * 1_000 };
        let id = if i % 3 == 0 { task_id_with_lead(16 * i) } else { TaskId::generate() };
        // One (never started) lives exactly one second past `now`.
        let expires_at = if i == 8 { now.as_epoch_seconds() + 1 } else { alive };
        let task = Task::received_as(id, mine.clone(), at(created), expires_at);
        insert(&store, &task).await;
        tasks.push(task);
    }
    let shards: HashSet<String> =
        tasks.iter().map(|task| table::client_key(mine.as_str(), task.task_id.as_str())).collect();
    assert!(shards.len() > 1, "{shards:?}");
    assert!(tasks.iter().filter(|task| table::shard_of(task.task_id.as_str(), 16) == 0).count() >= 15);

    // Expired ones, interleaved in time, are not listed (an expiry at `now` is past).
    for i in 0..5 {
        let task = Task::received(mine.clone(), at(500 + i * 7_000), now.as_epoch_seconds() - i);
        insert(&store, &task).await;
    }
    // Nor are another client's, even one whose name starts like this one's, at the same times.
    let other = ClientId::parse("acme-corp_1").unwrap();
    let mut others = Vec::new();
    for i in 0..10 {
        let task = Task::received(other.clone(), at(i * 2_500), alive);
        insert(&store, &task).await;
        others.push(task);
    }

    // Some start, some of those finish.
    for (i, task) in tasks.iter_mut().enumerate() {
        if i % 3 == 1 {
            let start = Transition::start(
                &task.task_id,
                1,
                token_digest(1),
                (at(60_000), at(90_000)),
                &taskfleet_core::TtlPolicy::default(),
            );
            *task = applied(store.apply(&start).await.unwrap(), "start");
        }
        if i % 6 == 1 {
            let outcome = Outcome::Succeeded { result: Content::Inline(json!(i)) };
            let finish = Transition::finish(&task.task_id, 1, token_digest(1), outcome, at(61_000), &TTL);
            *task = applied(store.apply(&finish).await.unwrap(), "finish");
        }
    }

    let mut expected: Vec<TaskSummary> = tasks.iter().map(summary).collect();
    expected.sort_by(|a, b| (b.created_at, &b.task_id).cmp(&(a.created_at, &a.task_id)));

    // Every task once, newest first, ties in the same millisecond by task id.
    let listed = list_all(&store, &mine, None, 10, now).await;
    assert_eq!(listed.len(), 45);
    assert_eq!(listed.iter().map(|task| &task.task_id).collect::<HashSet<_>>().len(), 45, "each exactly once");
    assert_eq!(listed, expected);
    // The same in one page.
    assert_eq!(list_all(&store, &mine, None, 100, now).await, expected);
    // A page of one from a position goes on right after it.
    let position = ListPosition { created_at: expected[9].created_at, task_id: expected[9].task_id.clone() };
    let page = store.list(&mine, None, 1, Some(&position), now).await.unwrap();
    assert_eq!(page.tasks, expected[10..11]);

    // A status filter applies, in the same order.
    for (status, count) in
        [(TaskStatus::Received, 30), (TaskStatus::InProgress, 7), (TaskStatus::Done, 8), (TaskStatus::Failed, 0)]
    {
        let filtered: Vec<TaskSummary> = expected.iter().filter(|task| task.status == status).cloned().collect();
        assert_eq!(filtered.len(), count, "{status}");
        assert_eq!(list_all(&store, &mine, Some(status), 10, now).await, filtered, "{status}");
    }

    // A second later the one that lived one second past `now` is gone too.
    let later = list_all(&store, &mine, None, 10, now.plus_seconds(1)).await;
    assert_eq!(later.len(), 44);
    assert!(later.iter().all(|task| task.task_id != tasks[8].task_id));

    // The other client sees its own and nothing else.
    let mut theirs: Vec<TaskSummary> = others.iter().map(summary).collect();
    theirs.sort_by(|a, b| (b.created_at, &b.task_id).cmp(&(a.created_at, &a.task_id)));
    assert_eq!(list_all(&store, &other, None, 10, now).await, theirs);
    assert_eq!(list_all(&store, &ClientId::parse("nobody").unwrap(), None, 10, now).await, []);
}

#[tokio::test]
async fn the_client_index_holds_only_the_keys_written_when_the_task_was_created() {
    let store = fresh_store().await;
    claim_a_key(&store).await;
    let task = Task::received(common::client_id(), at(20_000), 4_000_000_000);
    insert(&store, &task).await;
    let started = Transition::start(
        &task.task_id,
        1,
        token_digest(1),
        (at(40_000), at(50_000)),
        &taskfleet_core::TtlPolicy::default(),
    );
    applied(store.apply(&started).await.unwrap(), "start");

    let client_key = table::client_key(common::client_id().as_str(), task.task_id.as_str());
    let page = store
        .client()
        .query()
        .table_name(store.table())
        .index_name(table::CLIENT_INDEX)
        .key_condition_expression("#c = :c")
        .expression_attribute_names("#c", table::CLIENT_KEY)
        .expression_attribute_values(":c", s(&client_key))
        .scan_index_forward(false)
        .send()
        .await
        .expect("Query by_client");
    let [item] = page.items() else { panic!("one entry: {:?}", page.items()) };
    assert_eq!(names(item), ["client_key", "created_key", "pk"], "keys only: no state in the client index");
    assert_eq!(item.get("pk"), Some(&s(&table::task_key(task.task_id.as_str()))));
    assert_eq!(item.get("client_key"), Some(&s(&client_key)));
    assert_eq!(item.get("created_key"), Some(&s(&format!("00{}#{}", T0 + 20_000, task.task_id))));
    // The idempotency record, the payload item and the META item carry no client index keys.
    let indexed = all_items_with(&store, table::CLIENT_KEY).await;
    assert_eq!(indexed, [table::task_key(task.task_id.as_str())]);
}

/// The partition keys of the table's items that carry `attribute`.
async fn all_items_with(store: &DynamoStore, attribute: &str) -> Vec<String> {
    common::all_items(store)
        .await
        .into_iter()
        .filter(|item| item.contains_key(attribute))
        .map(|item| match item.get(table::PK) {
            Some(AttributeValue::S(pk)) => pk.clone(),
            other => panic!("no pk: {other:?}"),
        })
        .collect()
}
