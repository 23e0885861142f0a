//! Completion webhook deliveries in DynamoStore against the AWS emulator (moto server) through
//! the real SDK: a task's `webhook_url` is stored with it, each delivery attempt is one
//! conditional write guarded by the attempt it records (a repeat or a late one is rejected), a
//! retry due after the retention keeps the task, and a replay forgets the delivery.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use common::{TTL, applied, at, fresh_store, raw_item, s, token_digest};
use serde_json::json;
use taskfleet_adapters::DynamoStore;
use taskfleet_core::blob::Content;
use taskfleet_core::completion::delivery::{Delivery, DeliveryState, Outcome as Sent};
use taskfleet_core::completion::schedule::DeliverySchedule;
use taskfleet_core::lifecycle::{Outcome, Transition};
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{Task, TaskStatus};

const HOOK: &str = "https://hooks.example.com/done";

/// A task with a completion webhook, done at `at(2_000)` after one attempt.
async fn done_task(store: &DynamoStore) -> Task {
    let task = Task::received(common::client_id(), at(0), TTL.new_task_expiry(at(0))).notifying(Some(HOOK.into()));
    common::insert_with(store, &task, json!({"n": 1})).await;
    let start = Transition::start(&task.task_id, 1, token_digest(1), (at(1_000), at(900_000)), &TTL);
    applied(store.apply(&start).await.unwrap(), "start");
    let ok = Outcome::Succeeded { result: Content::Inline(json!({"ok": true})) };
    let finish = Transition::finish(&task.task_id, 1, token_digest(1), ok, at(2_000), &TTL);
    applied(store.apply(&finish).await.unwrap(), "finish")
}

/// The transition recording attempt `attempt` of `task`'s delivery, ended with `outcome` at `at(offset)`.
fn attempt(task: &Task, attempt: u32, outcome: &Sent, offset_ms: i64, schedule: &DeliverySchedule) -> Transition {
    let pending = task.delivery().expect("a delivery");
    let next = pending.after(attempt, outcome, at(offset_ms), schedule).expect("the attempt it waits for");
    Transition::deliver(task, next, format!("webhook attempt {attempt}"), at(offset_ms), &TTL)
}

#[tokio::test]
async fn an_ended_task_keeps_its_webhook_url_and_is_pending_its_first_attempt() {
    let store = fresh_store().await;
    let task = done_task(&store).await;
    let read = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(read.webhook_url.as_deref(), Some(HOOK));
    assert_eq!(read.delivery(), Some(Delivery::begin(at(2_000))));
    let item = raw_item(&store, &task.task_id).await;
    assert_eq!(item.get("webhook_url"), Some(&s(HOOK)));
    assert!(!item.contains_key("webhook_state"), "nothing is written for a delivery before its first attempt");
}

#[tokio::test]
async fn each_attempt_is_recorded_once_and_a_repeat_is_rejected() {
    let store = fresh_store().await;
    let schedule = DeliverySchedule::parse("5s").unwrap();
    let task = done_task(&store).await;
    let first = attempt(&task, 1, &Sent::Failed("HTTP 500".into()), 2_100, &schedule);
    let task = applied(store.apply(&first).await.unwrap(), "attempt 1");
    assert_eq!(task.webhook, Some(Delivery { state: DeliveryState::Pending, attempts: 1, next_at: Some(at(7_100)) }));
    assert_eq!(task.history.last().and_then(|e| e.reason.as_deref()), Some("webhook attempt 1"));
    assert!(matches!(store.apply(&first).await.unwrap(), WriteOutcome::Rejected(Some(_))), "a repeat");

    let second = attempt(&task, 2, &Sent::Delivered, 7_200, &schedule);
    let task = applied(store.apply(&second).await.unwrap(), "attempt 2");
    assert_eq!(task.webhook, Some(Delivery { state: DeliveryState::Delivered, attempts: 2, next_at: None }));
    let item = raw_item(&store, &task.task_id).await;
    assert!(!item.contains_key("webhook_next_at"), "a delivered webhook has no next attempt");
    assert_eq!(task.status, TaskStatus::Done);
    assert!(matches!(store.apply(&second).await.unwrap(), WriteOutcome::Rejected(Some(_))), "delivered is final");
}

#[tokio::test]
async fn a_retry_due_after_the_retention_keeps_the_task_until_a_retention_after_it() {
    let store = fresh_store().await;
    let far = DeliverySchedule::parse("400000s").unwrap();
    let task = done_task(&store).await;
    let task =
        applied(store.apply(&attempt(&task, 1, &Sent::Failed("timeout".into()), 3_000, &far)).await.unwrap(), "1");
    assert_eq!(task.expires_at, TTL.finished_expiry(at(3_000 + 400_000_000)));
}

#[tokio::test]
async fn a_replay_forgets_the_delivery_and_a_late_attempt_of_it_is_rejected() {
    let store = fresh_store().await;
    let schedule = DeliverySchedule::parse("5s").unwrap();
    let task = Task::received(common::client_id(), at(0), TTL.new_task_expiry(at(0))).notifying(Some(HOOK.into()));
    common::insert_with(&store, &task, json!({})).await;
    let cancel = Transition::cancel(&task.task_id, TaskStatus::Received, 0, at(500), &TTL).unwrap();
    let failed = applied(store.apply(&cancel).await.unwrap(), "cancel");
    let late = attempt(&failed, 1, &Sent::Failed("HTTP 502".into()), 600, &schedule);
    let failed = applied(store.apply(&late).await.unwrap(), "attempt 1");
    let replayed = applied(store.apply(&Transition::replay(&task.task_id, 0, at(700), &TTL)).await.unwrap(), "replay");
    assert_eq!((replayed.webhook.clone(), replayed.delivery()), (None, None));
    let item = raw_item(&store, &task.task_id).await;
    assert!(!item.keys().any(|k| k.starts_with("webhook_") && k != "webhook_url"), "{item:?}");
    let stale = attempt(&failed, 2, &Sent::Delivered, 800, &schedule);
    assert!(matches!(store.apply(&stale).await.unwrap(), WriteOutcome::Rejected(Some(_))));
}
