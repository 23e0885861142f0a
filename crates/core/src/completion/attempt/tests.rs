use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use super::*;
use crate::blob::Content;
use crate::completion::delivery::DeliveryState;
use crate::completion::rotation::rotate;
use crate::lifecycle::Outcome as Reported;
use crate::memory::MemoryStore;
use crate::signing::{Signed, SigningSecrets};
use crate::task::{ClientId, TaskStatus};

const HOOK: &str = "https://hooks.example.com/done";
const DAY: Duration = Duration::from_secs(86_400);

/// A receiver that answers as told and keeps what it got.
struct Receiver {
    answer: Outcome,
    got: Mutex<Vec<(String, Signed, Vec<u8>)>>,
}

impl Receiver {
    fn answering(answer: Outcome) -> Self {
        Self { answer, got: Mutex::new(Vec::new()) }
    }
}

impl WebhookSender for Receiver {
    async fn send(&self, url: &str, signed: &Signed, body: Vec<u8>) -> Outcome {
        self.got.lock().unwrap().push((url.to_owned(), signed.clone(), body));
        self.answer.clone()
    }
}

fn master() -> MasterKey {
    MasterKey::parse(&format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([5u8; 32]))).unwrap()
}

fn ttl() -> TtlPolicy {
    TtlPolicy::new(3_600, 86_400)
}

fn alpha() -> ClientId {
    ClientId::parse("alpha").unwrap()
}

/// A task of alpha's with a webhook, DONE now, stored in `store`.
async fn done(store: &MemoryStore) -> Task {
    let now = Timestamp::now();
    let task = Task::received(alpha(), now, ttl().new_task_expiry(now)).notifying(Some(HOOK.into()));
    store.insert(&task, &Content::Inline(json!({"n": 1})), i64::MAX).await.unwrap();
    let start = Transition::start(&task.task_id, 1, "d".into(), (now, now.plus(DAY)), &ttl());
    store.apply(&start).await.unwrap();
    let ok = Reported::Succeeded { result: Content::Inline(json!({"ok": true})) };
    match store.apply(&Transition::finish(&task.task_id, 1, "d".into(), ok, now, &ttl())).await.unwrap() {
        WriteOutcome::Applied(task) => task,
        other => panic!("{other:?}"),
    }
}

async fn attempt(
    store: &MemoryStore,
    receiver: &Receiver,
    task: &Task,
    number: u32,
    schedule: &DeliverySchedule,
) -> Attempted {
    let (task, delivery) =
        due_attempt(store, &task.task_id, number, Timestamp::now()).await.unwrap().expect("the attempt is due");
    let view = json!({"task_id": task.task_id.as_str(), "status": task.status.as_str()});
    let settings = Settings { master: &master(), schedule, ttl: &ttl() };
    send_and_record(store, store, receiver, (&task, &delivery), view, settings).await.unwrap()
}

#[tokio::test]
async fn a_due_attempt_is_signed_with_the_clients_secret_sent_once_and_recorded_delivered() {
    let store = MemoryStore::new();
    let secret = rotate(&store, &master(), &alpha(), Timestamp::now(), DAY).await.unwrap().secret;
    let task = done(&store).await;
    let receiver = Receiver::answering(Outcome::Delivered);
    assert_eq!(attempt(&store, &receiver, &task, 1, &DeliverySchedule::default()).await, Attempted::Delivered);

    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (url, signed, body) = &got[0];
    assert_eq!(url, HOOK);
    assert_eq!(signed.id, envelope::message_id(&task.task_id));
    SigningSecrets::parse(&secret).unwrap().verify(signed, body, Timestamp::now()).expect("it verifies");
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["type"], "task.succeeded");
    assert_eq!(body["data"], json!({"task_id": task.task_id.as_str(), "status": "DONE"}));

    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.webhook.map(|d| (d.state, d.attempts)), Some((DeliveryState::Delivered, 1)));
    assert_eq!(stored.history.last().and_then(|e| e.reason.as_deref()), Some("webhook delivered (attempt 1)"));
    assert_eq!(due_attempt(&store, &task.task_id, 2, Timestamp::now()).await.unwrap(), None, "nothing is due");
}

#[tokio::test]
async fn a_failed_attempt_is_recorded_with_its_reason_and_the_next_due_after_the_schedules_wait() {
    let store = MemoryStore::new();
    rotate(&store, &master(), &alpha(), Timestamp::now(), DAY).await.unwrap();
    let task = done(&store).await;
    let schedule = DeliverySchedule::parse("60s").unwrap();
    let before = Timestamp::now();
    let answer = attempt(&store, &Receiver::answering(Outcome::Failed("HTTP 500".into())), &task, 1, &schedule).await;
    let Attempted::Retrying { reason, next_at } = answer else { panic!("{answer:?}") };
    assert_eq!(reason, "HTTP 500");
    assert!(
        next_at >= before.plus(Duration::from_secs(60)) && next_at <= Timestamp::now().plus(Duration::from_secs(60))
    );
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.delivery().and_then(|d| d.next_attempt()), Some((2, next_at)));
    assert!(
        stored.history.last().and_then(|e| e.reason.clone()).unwrap().starts_with("webhook attempt 1 failed: HTTP 500")
    );
    assert_eq!(due_attempt(&store, &task.task_id, 1, Timestamp::now()).await.unwrap(), None, "attempt 1 is done");

    let last =
        attempt(&store, &Receiver::answering(Outcome::Failed("timed out after 5 s".into())), &task, 2, &schedule).await;
    assert_eq!(last, Attempted::GaveUp { reason: "timed out after 5 s".into() });
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.webhook.map(|d| (d.state, d.attempts)), Some((DeliveryState::Failed, 2)));
    assert_eq!(stored.status, TaskStatus::Done, "the task itself is untouched");
}

#[tokio::test]
async fn during_a_rotations_grace_period_a_delivery_verifies_with_either_secret() {
    let store = MemoryStore::new();
    let old = rotate(&store, &master(), &alpha(), Timestamp::now(), DAY).await.unwrap().secret;
    let new = rotate(&store, &master(), &alpha(), Timestamp::now(), DAY).await.unwrap().secret;
    let task = done(&store).await;
    let receiver = Receiver::answering(Outcome::Delivered);
    attempt(&store, &receiver, &task, 1, &DeliverySchedule::default()).await;
    let (_, signed, body) = receiver.got.lock().unwrap()[0].clone();
    assert_eq!(signed.signature.split(' ').count(), 2);
    for secret in [old, new] {
        SigningSecrets::parse(&secret).unwrap().verify(&signed, &body, Timestamp::now()).expect("verifies");
    }
}

#[tokio::test]
async fn without_a_secret_nothing_is_sent_and_the_attempt_fails() {
    let store = MemoryStore::new();
    let task = done(&store).await;
    let receiver = Receiver::answering(Outcome::Delivered);
    let answer = attempt(&store, &receiver, &task, 1, &DeliverySchedule::parse("5s").unwrap()).await;
    assert!(
        matches!(answer, Attempted::Retrying { ref reason, .. } if reason.contains("no webhook secret")),
        "{answer:?}"
    );
    assert!(receiver.got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_timer_for_another_attempt_or_a_task_without_a_webhook_finds_nothing_due() {
    let store = MemoryStore::new();
    let task = done(&store).await;
    let now = Timestamp::now();
    assert!(due_attempt(&store, &task.task_id, 1, now).await.unwrap().is_some());
    assert_eq!(due_attempt(&store, &task.task_id, 2, now).await.unwrap(), None);
    assert_eq!(due_attempt(&store, &TaskId::generate(), 1, now).await.unwrap(), None, "a missing task");
    let plain = Task::received(alpha(), now, ttl().new_task_expiry(now));
    store.insert(&plain, &Content::Inline(json!({})), i64::MAX).await.unwrap();
    assert_eq!(due_attempt(&store, &plain.task_id, 1, now).await.unwrap(), None, "no webhook, not ended");
}
