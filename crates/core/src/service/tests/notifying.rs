//! Submissions with a completion webhook: the task keeps the URL, and an idempotency key is
//! bound to it as to the payload and `run_at` (requests without one keep their old digests).

use super::*;

const HOOK: &str = "https://hooks.example.com/done";

fn notifying(payload: Value, url: Option<&str>) -> NewTask {
    NewTask { webhook_url: url.map(str::to_owned), ..NewTask::now(payload) }
}

async fn submit_at(store: &MemoryStore, new: NewTask, key: Option<&str>) -> Result<Submitted, SubmitError> {
    submit_task(store, &blobs(), &client("alpha"), new, key, at(1_000), &policies().ttl).await
}

#[tokio::test]
async fn a_task_submitted_with_a_webhook_url_keeps_it() {
    let store = MemoryStore::new();
    let Ok(Submitted::Created(task)) = submit_at(&store, notifying(json!({}), Some(HOOK)), None).await else {
        panic!("not created")
    };
    assert_eq!(task.webhook_url.as_deref(), Some(HOOK));
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap().webhook_url.as_deref(), Some(HOOK));
    assert_eq!(task.delivery(), None, "nothing to deliver before the task ends");
}

#[test]
fn requests_without_a_webhook_url_keep_the_digests_they_always_had() {
    let payload = json!({"n": 1});
    assert_eq!(NewTask::now(payload.clone()).request_digest(), token::digest(&payload.to_string()));
    let scheduled = NewTask { run_at: Some(at(5)), ..NewTask::now(payload.clone()) };
    assert_eq!(scheduled.request_digest(), token::digest(&format!("{payload}\u{0}run_at=5000")));
    assert_ne!(notifying(payload.clone(), Some(HOOK)).request_digest(), NewTask::now(payload).request_digest());
}

#[tokio::test]
async fn the_same_key_with_the_same_webhook_url_answers_the_same_task() {
    let store = MemoryStore::new();
    let Ok(Submitted::Created(first)) = submit_at(&store, notifying(json!({}), Some(HOOK)), Some("k")).await else {
        panic!("not created")
    };
    let again = submit_at(&store, notifying(json!({}), Some(HOOK)), Some("k")).await;
    assert!(matches!(again, Ok(Submitted::Existing(task)) if task.task_id == first.task_id));
}

#[tokio::test]
async fn the_same_key_with_another_webhook_url_or_none_is_refused() {
    let store = MemoryStore::new();
    submit_at(&store, notifying(json!({}), Some(HOOK)), Some("k")).await.unwrap();
    let other = submit_at(&store, notifying(json!({}), Some("https://hooks.example.com/other")), Some("k")).await;
    assert!(matches!(other, Err(SubmitError::KeyReused)), "{other:?}");
    let none = submit_at(&store, notifying(json!({}), None), Some("k")).await;
    assert!(matches!(none, Err(SubmitError::KeyReused)), "{none:?}");

    submit_at(&store, notifying(json!({}), None), Some("plain")).await.unwrap();
    let added = submit_at(&store, notifying(json!({}), Some(HOOK)), Some("plain")).await;
    assert!(matches!(added, Err(SubmitError::KeyReused)), "{added:?}");
}
