//! The task store when AWS misbehaves: requests go through `taskfleet_testkit::faults`'s proxy
//! in front of the emulator, through the real SDK (and its retries).

mod common;

use taskfleet_adapters::DynamoStore;
use taskfleet_core::blob::Content;
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{Task, TaskStatus};
use taskfleet_testkit::faults::{Fault, FaultyProxy, Rates, Scripted};

/// A store over a fresh table whose requests go through a proxy that misbehaves as scripted.
async fn store_behind_proxy() -> (DynamoStore, FaultyProxy) {
    let (_, table) = common::fresh_table().await;
    let proxy = FaultyProxy::start(&taskfleet_testkit::endpoint(), Rates::default()).await.unwrap();
    let sdk = taskfleet_adapters::config::aws_from(taskfleet_testkit::loader_at(&proxy.url())).await;
    (DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table), proxy)
}

fn new_task() -> Task {
    let created = taskfleet_core::Timestamp::now();
    Task::received(common::client_id(), created, created.plus_seconds(3_600).as_epoch_seconds())
}

#[tokio::test]
async fn an_insert_whose_answer_was_lost_and_whose_retry_finds_it_landed_succeeds() {
    let (store, proxy) = store_behind_proxy().await;
    proxy.script(Scripted {
        target: "DynamoDB_20120810.PutItem".into(),
        body_contains: "\"TASK#".into(),
        fault: Fault::DropAnswer,
    });
    let task = new_task();
    let payload = Content::Inline(serde_json::json!({"n": 1}));
    store.insert(&task, &payload, task.expires_at).await.expect("its own write landing is not a conflict");
    assert_eq!(proxy.counts.dropped.load(std::sync::atomic::Ordering::SeqCst), 1, "the first answer was dropped");
    let stored = store.get(&task.task_id).await.unwrap().expect("stored once");
    assert_eq!((stored.status, stored.created_at), (TaskStatus::Received, task.created_at));
}

#[tokio::test]
async fn an_insert_over_another_task_with_the_same_id_is_still_a_conflict() {
    let (store, proxy) = store_behind_proxy().await;
    let task = new_task();
    let payload = Content::Inline(serde_json::json!({"n": 1}));
    store.insert(&task, &payload, task.expires_at).await.unwrap();
    let mut other =
        Task::received(taskfleet_core::ClientId::parse("someone-else").unwrap(), task.created_at, task.expires_at);
    other.task_id = task.task_id.clone();
    let answer = store.insert(&other, &payload, task.expires_at).await;
    assert_eq!(answer, Err(taskfleet_core::StoreError::AlreadyExists));
    drop(proxy);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_by_the_sdk_and_slow_answers_awaited() {
    let (store, proxy) = store_behind_proxy().await;
    for fault in [Fault::Throttle, Fault::Fail, Fault::Slow] {
        proxy.script(Scripted { target: "DynamoDB_20120810.GetItem".into(), body_contains: "TASK#".into(), fault });
    }
    let task = new_task();
    store.insert(&task, &Content::Inline(serde_json::json!(1)), task.expires_at).await.unwrap();
    let read = store.get(&task.task_id).await.expect("the SDK retried through a throttle and a 500");
    assert!(read.is_some());
    let counts = &proxy.counts;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!((counts.throttled.load(SeqCst), counts.failed.load(SeqCst)), (1, 1));
}
