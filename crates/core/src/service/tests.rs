use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::memory::MemoryStore;

const BASE: &str = "https://fleet.example/";

fn client(name: &str) -> ClientId {
    ClientId::parse(name).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000)
}

/// An external service that records what it was sent and answers as told.
#[derive(Default)]
struct Service {
    refuse_with: Option<ExternalError>,
    jobs: Mutex<Vec<(String, u32, String)>>,
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        self.jobs.lock().unwrap().push((job.task_id.to_owned(), job.attempt, job.callback_url.to_owned()));
        self.refuse_with.clone().map_or(Ok(()), Err)
    }
}

async fn submitted(store: &MemoryStore) -> Task {
    submit(store, &client("alpha"), json!({"n": 1}), at(1_000), &TtlPolicy::new(60, 600)).await.unwrap()
}

#[tokio::test]
async fn submitting_stores_a_received_task_with_the_task_ttl() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!(task.attempts, 0);
    assert_eq!(task.expires_at, 1_060);
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_client_sees_only_its_own_unexpired_tasks() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let found = task_for_client(&store, &client("alpha"), &task.task_id, at(1_001)).await.unwrap();
    assert_eq!(found.map(|t| t.task_id), Some(task.task_id.clone()));
    assert_eq!(task_for_client(&store, &client("beta"), &task.task_id, at(1_001)).await.unwrap(), None);
    assert_eq!(task_for_client(&store, &client("alpha"), &task.task_id, at(1_060)).await.unwrap(), None);
    assert_eq!(task_for_client(&store, &client("alpha"), &TaskId::generate(), at(1_001)).await.unwrap(), None);
}

#[tokio::test]
async fn handing_over_starts_the_attempt_and_sends_the_job_once() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::default();
    let ttl = TtlPolicy::new(60, 600);
    let first = hand_over(&store, &service, &task.task_id, 1, BASE, at(1_001), &ttl).await.unwrap();
    assert_eq!(first, HandOver::Accepted { attempt: 1 });
    let repeat = hand_over(&store, &service, &task.task_id, 1, BASE, at(1_002), &ttl).await.unwrap();
    assert_eq!(repeat, HandOver::Skipped);

    let jobs = service.jobs.lock().unwrap().clone();
    let url = format!("https://fleet.example/callbacks/{}", task.task_id);
    assert_eq!(jobs, [(task.task_id.to_string(), 1, url)]);
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (TaskStatus::InProgress, 1));
}

#[tokio::test]
async fn handing_over_a_missing_task_does_nothing() {
    let (store, service, ttl) = (MemoryStore::new(), Service::default(), TtlPolicy::default());
    let outcome = hand_over(&store, &service, &TaskId::generate(), 1, BASE, at(0), &ttl).await.unwrap();
    assert_eq!(outcome, HandOver::Missing);
    assert!(service.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refusal_fails_the_task_with_the_reason() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service {
        refuse_with: Some(ExternalError::Rejected { status: 503, retry_after_seconds: None }),
        ..Service::default()
    };
    let ttl = TtlPolicy::new(60, 600);
    let outcome = hand_over(&store, &service, &task.task_id, 1, BASE, at(1_001), &ttl).await.unwrap();
    assert!(matches!(outcome, HandOver::Refused { error: ExternalError::Rejected { status: 503, .. } }));
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.error.as_deref(), Some("external service refused attempt 1: the external service answered 503"));
    assert!(stored.expires_at >= 1_001 + 600, "a failed task keeps the result retention");
}

#[tokio::test]
async fn a_callback_finishes_the_task_once() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let ttl = TtlPolicy::new(60, 600);
    hand_over(&store, &Service::default(), &task.task_id, 1, BASE, at(1_001), &ttl).await.unwrap();

    let ok = Outcome::Succeeded { result: json!({"answer": 42}) };
    let first = record_outcome(&store, &task.task_id, ok.clone(), at(1_010), &ttl).await.unwrap();
    let CallbackResult::Recorded(done) = first else { panic!("expected Recorded, got {first:?}") };
    assert_eq!(done.status, TaskStatus::Done);
    assert_eq!(done.result, Some(json!({"answer": 42})));
    assert_eq!(done.expires_at, 1_610);

    let again = record_outcome(&store, &task.task_id, ok, at(1_020), &ttl).await.unwrap();
    assert!(matches!(again, CallbackResult::Repeated(t) if t.updated_at == at(1_010)));

    let different = Outcome::Succeeded { result: json!({"answer": 0}) };
    let conflict = record_outcome(&store, &task.task_id, different, at(1_030), &ttl).await.unwrap();
    assert!(matches!(conflict, CallbackResult::Conflict(t) if t.result == Some(json!({"answer": 42}))));

    let late_failure = Outcome::Failed { error: "late".into() };
    let conflict = record_outcome(&store, &task.task_id, late_failure, at(1_040), &ttl).await.unwrap();
    assert!(matches!(conflict, CallbackResult::Conflict(t) if t.status == TaskStatus::Done));
}

#[tokio::test]
async fn a_callback_before_the_task_started_is_a_conflict() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let outcome = Outcome::Failed { error: "x".into() };
    let result = record_outcome(&store, &task.task_id, outcome, at(1_001), &TtlPolicy::default()).await.unwrap();
    assert!(matches!(result, CallbackResult::Conflict(t) if t.status == TaskStatus::Received));
}

#[tokio::test]
async fn a_callback_for_an_unknown_task_is_missing() {
    let (store, ttl) = (MemoryStore::new(), TtlPolicy::default());
    let outcome = Outcome::Failed { error: "x".into() };
    let result = record_outcome(&store, &TaskId::generate(), outcome, at(0), &ttl).await.unwrap();
    assert_eq!(result, CallbackResult::Missing);
}

#[tokio::test]
async fn gauges_count_active_tasks_recent_finishes_and_backlog_age() {
    let store = MemoryStore::new();
    let ttl = TtlPolicy::new(3_600, 3_600);
    let waiting = submit(&store, &client("a"), json!({}), at(100), &ttl).await.unwrap();
    submit(&store, &client("a"), json!({}), at(150), &ttl).await.unwrap();
    let started = submit(&store, &client("a"), json!({}), at(100), &ttl).await.unwrap();
    hand_over(&store, &Service::default(), &started.task_id, 1, BASE, at(110), &ttl).await.unwrap();
    let old_done = submit(&store, &client("a"), json!({}), at(100), &ttl).await.unwrap();
    hand_over(&store, &Service::default(), &old_done.task_id, 1, BASE, at(101), &ttl).await.unwrap();
    record_outcome(&store, &old_done.task_id, Outcome::Succeeded { result: json!(1) }, at(102), &ttl).await.unwrap();
    let new_done = submit(&store, &client("a"), json!({}), at(100), &ttl).await.unwrap();
    hand_over(&store, &Service::default(), &new_done.task_id, 1, BASE, at(101), &ttl).await.unwrap();
    record_outcome(&store, &new_done.task_id, Outcome::Succeeded { result: json!(1) }, at(190), &ttl).await.unwrap();

    let gauges = gauges(&store, at(200), 60).await.unwrap();
    let value = |name: &str, status: Option<TaskStatus>| {
        gauges.iter().find(|g| g.name == name && g.status == status).map(|g| g.value)
    };
    assert_eq!(value(metrics::TASKS_ACTIVE, Some(TaskStatus::Received)), Some(2.0));
    assert_eq!(value(metrics::TASKS_ACTIVE, Some(TaskStatus::InProgress)), Some(1.0));
    assert_eq!(value(metrics::TASKS_FINISHED, Some(TaskStatus::Done)), Some(1.0), "only the finish inside the window");
    assert_eq!(value(metrics::TASKS_FINISHED, Some(TaskStatus::Failed)), Some(0.0));
    assert_eq!(value(metrics::OLDEST_RECEIVED_AGE, None), Some(100.0), "{waiting:?} waits since 100 s");
    assert_eq!(gauges.len(), 5);
}

#[tokio::test]
async fn with_nothing_waiting_the_backlog_age_is_zero() {
    let gauges = gauges(&MemoryStore::new(), at(200), 60).await.unwrap();
    assert!(gauges.iter().all(|g| g.value == 0.0));
}
