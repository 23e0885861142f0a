use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::dispatch::Step;
use crate::lifecycle::CANCELLED;
use crate::memory::{Call, Intercepted, Interceptor, MemoryStore};
use crate::memory_blobs::MemoryBlobs;
use crate::ports::{DueTask, TaskStore};
use crate::retry::RetryPolicy;

mod chaos;
mod notifying;
mod scheduled;

const BASE: &str = "https://fleet.example/";

fn client(name: &str) -> ClientId {
    ClientId::parse(name).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000)
}

/// Blobs with a tiny inline limit where a test wants large values in the blob store.
fn blobs_above(inline_max: usize) -> Blobs<MemoryBlobs> {
    Blobs::new(MemoryBlobs::new(), inline_max)
}

fn blobs() -> Blobs<MemoryBlobs> {
    blobs_above(blob::DEFAULT_INLINE_MAX_BYTES)
}

fn inline(value: Value) -> Content {
    Content::Inline(value)
}

fn policies() -> Policies {
    Policies {
        ttl: TtlPolicy::new(3_600, 600),
        retry: RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(10), max_delay: Duration::from_secs(60) },
        callback_timeout: Duration::from_secs(100),
        dispatch_grace: Duration::from_secs(30),
    }
}

/// An external service that records what it was sent and answers as told.
#[derive(Default)]
struct Service {
    refuse_with: Option<ExternalError>,
    jobs: Mutex<Vec<(String, u32, String)>>,
    payloads: Mutex<Vec<Value>>,
}

impl Service {
    fn refusing(error: ExternalError) -> Self {
        Self { refuse_with: Some(error), ..Self::default() }
    }

    fn jobs(&self) -> Vec<(String, u32, String)> {
        self.jobs.lock().unwrap().clone()
    }

    fn payloads(&self) -> Vec<Value> {
        self.payloads.lock().unwrap().clone()
    }

    /// The token the last job for `task_id` carried in its callback URL.
    fn token(&self, task_id: &TaskId) -> String {
        let jobs = self.jobs();
        let (_, _, url) = jobs.iter().rev().find(|(id, _, _)| id == task_id.as_str()).unwrap();
        url.split("token=").nth(1).unwrap().to_owned()
    }
}

impl ExternalService for Service {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        self.jobs.lock().unwrap().push((job.task_id.to_owned(), job.attempt, job.callback_url.to_owned()));
        self.payloads.lock().unwrap().push(job.payload.clone());
        self.refuse_with.clone().map_or(Ok(()), Err)
    }
}

/// The deadline timer of the attempt running now, as the dispatcher scheduled it.
async fn deadline_timer(store: &MemoryStore, task_id: &TaskId) -> Timer {
    let task = store.get(task_id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::InProgress, "a deadline timer belongs to a running attempt");
    Timer { task_id: task_id.clone(), attempt: task.attempts, step: Step::Deadline, due_at: task.due_at }
}

/// A sweep with all the time it needs.
async fn sweep_at(store: &MemoryStore, now: Timestamp, limit: usize) -> SweepReport {
    let plenty = tokio::time::Instant::now() + Duration::from_secs(60);
    sweep(store, now, &policies(), limit, plenty).await.unwrap()
}

async fn submitted(store: &MemoryStore) -> Task {
    let Submitted::Created(task) =
        submit(store, &blobs(), &client("alpha"), json!({"n": 1}), None, at(1_000), &policies().ttl).await.unwrap()
    else {
        panic!("expected a new task")
    };
    task
}

async fn started(store: &MemoryStore, service: &Service) -> Task {
    let task = submitted(store).await;
    let outcome =
        hand_over(store, &blobs(), service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    assert!(matches!(outcome, HandOver::Accepted { .. }), "{outcome:?}");
    store.get(&task.task_id).await.unwrap().unwrap()
}

#[tokio::test]
async fn submitting_stores_a_received_task_with_the_task_ttl() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    assert_eq!((task.status, task.attempts, task.expires_at), (TaskStatus::Received, 0, 1_000 + 3_600));
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn the_same_idempotency_key_and_payload_answer_the_same_task() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let first = submit(&store, &blobs(), &client("alpha"), json!({"a": 1, "b": 2}), Some("k-1"), at(1_000), &ttl)
        .await
        .unwrap();
    let Submitted::Created(task) = first else { panic!("{first:?}") };
    let again = submit(&store, &blobs(), &client("alpha"), json!({"b": 2, "a": 1}), Some("k-1"), at(1_005), &ttl)
        .await
        .unwrap();
    assert_eq!(again, Submitted::Existing(task.clone()), "key order does not make another payload");
    let other_client =
        submit(&store, &blobs(), &client("beta"), json!({"a": 1, "b": 2}), Some("k-1"), at(1_006), &ttl).await;
    assert!(matches!(other_client, Ok(Submitted::Created(t)) if t.task_id != task.task_id), "keys are per client");
    let reused = submit(&store, &blobs(), &client("alpha"), json!({"a": 2}), Some("k-1"), at(1_007), &ttl).await;
    assert!(matches!(reused, Err(SubmitError::KeyReused)));
}

#[tokio::test]
async fn a_claimed_key_whose_task_never_landed_gets_exactly_that_task() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let lost = TaskId::generate();
    store
        .claim(&IdempotencyRecord {
            client_id: client("alpha"),
            key_digest: token::digest("k"),
            request_digest: token::digest(&json!({"x": 1}).to_string()),
            task_id: lost.clone(),
            created_at: at(900),
            expires_at: 99_999,
        })
        .await
        .unwrap();
    let answer = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(1_000), &ttl).await.unwrap();
    let Submitted::Existing(task) = answer else { panic!("{answer:?}") };
    assert_eq!((task.task_id, task.created_at), (lost, at(900)));
}

fn claimed_at(created_at: Timestamp, payload: &Value, ttl: &TtlPolicy) -> IdempotencyRecord {
    IdempotencyRecord {
        client_id: client("alpha"),
        key_digest: token::digest("k"),
        request_digest: token::digest(&payload.to_string()),
        task_id: TaskId::generate(),
        created_at,
        expires_at: ttl.payload_expiry(created_at),
    }
}

#[tokio::test]
async fn a_claimed_key_whose_task_may_have_been_deleted_is_gone_not_rebuilt() {
    // Task TTL 3600 s, retention 600 s: a task created at 900 may have finished at once and
    // been deleted from 1500 on, or expired unfinished at 4500.
    let ttl = policies().ttl;
    for now in [1_500, 4_500, 5_000] {
        let store = MemoryStore::new();
        let lost = claimed_at(at(900), &json!({"x": 1}), &ttl);
        store.claim(&lost).await.unwrap();
        let answer = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(now), &ttl).await;
        assert!(matches!(answer, Err(SubmitError::TaskGone)), "at {now}: {answer:?}");
        assert_eq!(store.get(&lost.task_id).await.unwrap(), None, "at {now}: nothing rebuilt");
    }
}

#[tokio::test]
async fn an_expired_task_found_through_its_key_is_gone() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let first = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(1_000), &ttl).await;
    let Ok(Submitted::Created(task)) = first else { panic!("{first:?}") };
    assert_eq!(task.expires_at, 4_600);
    let again = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(4_600), &ttl).await;
    assert!(matches!(again, Err(SubmitError::TaskGone)), "{again:?}");
}

#[tokio::test]
async fn an_expired_key_is_free_again() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let first = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(1_000), &ttl).await;
    let Ok(Submitted::Created(old)) = first else { panic!("{first:?}") };
    // The key's record expires task TTL + retention after the submission: 1000 + 3600 + 600.
    for (now, payload) in [(5_200, json!({"x": 1})), (5_201, json!({"x": 2}))] {
        let store = MemoryStore::new();
        store.claim(&claimed_at(at(1_000), &json!({"x": 1}), &ttl)).await.unwrap();
        let again = submit(&store, &blobs(), &client("alpha"), payload, Some("k"), at(now), &ttl).await;
        let Ok(Submitted::Created(new)) = again else { panic!("at {now}: {again:?}") };
        assert_ne!(new.task_id, old.task_id);
        assert_eq!(new.expires_at, now + 3_600);
        let repeat = submit(&store, &blobs(), &client("alpha"), json!(null), Some("k"), at(now + 1), &ttl).await;
        assert!(matches!(repeat, Err(SubmitError::KeyReused)), "the new record holds: {repeat:?}");
    }
}

/// Right after a submission claims a key, a concurrent repeat of it stores the task the claim
/// described (the repeat's rebuild landing before the first insert).
struct RepeatLandsFirst {
    ttl: TtlPolicy,
}

impl Interceptor for RepeatLandsFirst {
    fn after_claim(&self, store: &MemoryStore, record: &IdempotencyRecord, earlier: Option<&IdempotencyRecord>) {
        if earlier.is_none() {
            let repeat = Task::received_as(
                record.task_id.clone(),
                record.client_id.clone(),
                record.created_at,
                self.ttl.new_task_expiry(record.created_at),
            );
            store.insert_now(&repeat, &inline(json!({"x": 1}))).expect("the repeat stores its task");
        }
    }
}

#[tokio::test]
async fn the_submission_that_claimed_a_key_answers_its_task_when_a_repeat_stored_it_first() {
    let ttl = policies().ttl;
    let store = Intercepted { inner: MemoryStore::new(), interceptor: RepeatLandsFirst { ttl } };
    let answer = submit(&store, &blobs(), &client("alpha"), json!({"x": 1}), Some("k"), at(1_000), &ttl).await;
    let Ok(Submitted::Created(task)) = answer else { panic!("{answer:?}") };
    assert_eq!(store.inner.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_client_sees_only_its_own_unexpired_tasks() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let found = task_for_client(&store, &client("alpha"), &task.task_id, at(1_001)).await.unwrap();
    assert_eq!(found.map(|t| t.task_id), Some(task.task_id.clone()));
    assert_eq!(task_for_client(&store, &client("beta"), &task.task_id, at(1_001)).await.unwrap(), None);
    assert_eq!(task_for_client(&store, &client("alpha"), &task.task_id, at(4_600)).await.unwrap(), None);
}

#[tokio::test]
async fn handing_over_starts_the_attempt_and_calls_the_service_once() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    assert_eq!((task.status, task.attempts, task.due_at), (TaskStatus::InProgress, 1, at(1_101)));
    let repeat =
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_002), 0.5), &policies()).await.unwrap();
    assert_eq!(repeat, HandOver::Skipped);
    let jobs = service.jobs();
    assert_eq!(jobs.len(), 1);
    let prefix = format!("https://fleet.example/callbacks/{}?attempt=1&token=", task.task_id);
    assert!(jobs[0].2.starts_with(&prefix), "{}", jobs[0].2);
    let digest = token::digest(&service.token(&task.task_id));
    assert_eq!(task.callback_tokens, [(1, digest)].into(), "only the digest is stored");
}

#[tokio::test]
async fn handing_over_a_missing_task_does_nothing() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let outcome =
        hand_over(&store, &blobs(), &service, (&TaskId::generate(), 1), BASE, (at(0), 0.5), &policies()).await.unwrap();
    assert_eq!(outcome, HandOver::Missing);
    assert!(service.jobs().is_empty());
}

/// An expired task that storage has not deleted yet is handed over like a missing one: nothing
/// is written and the service is not called.
#[tokio::test]
async fn handing_over_an_expired_task_finds_it_missing() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = submitted(&store).await;
    assert_eq!(task.expires_at, 4_600);
    let outcome =
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(4_600), 0.5), &policies()).await.unwrap();
    assert_eq!(outcome, HandOver::Missing);
    assert!(service.jobs().is_empty());
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_retryable_refusal_puts_the_task_back_after_a_backoff() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None });
    let outcome =
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    let HandOver::Retrying { retry_at, .. } = outcome else { panic!("{outcome:?}") };
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts, stored.due_at), (TaskStatus::Received, 1, retry_at));
    let wait = retry_at.millis_since(at(1_001));
    assert!((4_000..=10_000).contains(&wait), "first backoff is 5-10 s, got {wait} ms");
    assert_eq!(stored.history.last().unwrap().reason.as_deref(), Some("attempt 1: the external service answered 503"));
}

/// The backoff's random share is drawn from the jitter passed in, so a test pins the exact
/// retry time: the first backoff is 10 s (`policies()`), half fixed and half jitter (a draw out
/// of [0, 1) is clamped, so never more than the whole 10 s).
#[tokio::test]
async fn a_pinned_jitter_gives_the_exact_retry_time() {
    for (jitter, wait_ms) in [(0.0, 5_000), (0.5, 7_500), (0.999, 9_995), (-1.0, 5_000), (7.0, 10_000)] {
        let store = MemoryStore::new();
        let task = submitted(&store).await;
        let service = Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None });
        let outcome = hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), jitter), &policies())
            .await
            .unwrap();
        let HandOver::Retrying { retry_at, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(retry_at, at(1_001).plus(Duration::from_millis(wait_ms)), "jitter {jitter}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 429, retry_after_seconds: Some(45) });
    let outcome =
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    let HandOver::Retrying { retry_at, .. } = outcome else { panic!("{outcome:?}") };
    assert!(retry_at.millis_since(at(1_001)) >= 45_000);
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_task_at_once() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 422, retry_after_seconds: None });
    let outcome =
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    assert!(matches!(outcome, HandOver::Failed { .. }), "{outcome:?}");
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.error.as_deref(), Some("attempt 1: the external service answered 422"));
    assert_eq!(stored.expires_at, 1_001 + 600, "a failed task is kept for the result retention from its failure");
}

#[tokio::test]
async fn the_last_attempt_of_a_series_fails_with_the_last_error() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Timeout { timeout_ms: 10 });
    for attempt in 1..=3 {
        let outcome =
            hand_over(&store, &blobs(), &service, (&task.task_id, attempt), BASE, (at(1_000), 0.5), &policies())
                .await
                .unwrap();
        assert_eq!(matches!(outcome, HandOver::Failed { .. }), attempt == 3, "attempt {attempt}: {outcome:?}");
    }
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (TaskStatus::Failed, 3));
    assert_eq!(
        stored.error.as_deref(),
        Some("gave up after 3 attempts; last: the external service did not answer within 10 ms")
    );
    assert_eq!(service.jobs().len(), 3);
}

#[tokio::test]
async fn a_callback_finishes_the_attempt_once() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    let ok = Outcome::Succeeded { result: inline(json!({"answer": 42})) };
    let first =
        record_outcome(&store, &blobs(), &task.task_id, (1, &token), ok.clone(), at(1_010), &ttl).await.unwrap();
    let CallbackResult::Recorded(done) = first else { panic!("{first:?}") };
    assert_eq!(
        (done.status, done.result.clone(), done.expires_at),
        (TaskStatus::Done, Some(inline(json!({"answer": 42}))), 1_610)
    );

    let again = record_outcome(&store, &blobs(), &task.task_id, (1, &token), ok, at(1_020), &ttl).await.unwrap();
    assert!(matches!(again, CallbackResult::Repeated(t) if t.updated_at == at(1_010)));
    let other = Outcome::Failed { error: "late".into() };
    let conflict = record_outcome(&store, &blobs(), &task.task_id, (1, &token), other, at(1_030), &ttl).await.unwrap();
    assert!(matches!(conflict, CallbackResult::Conflict(t) if t.status == TaskStatus::Done));
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), done);
}

#[tokio::test]
async fn a_forged_or_misdirected_callback_changes_nothing() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    let ok = || Outcome::Succeeded { result: inline(json!(1)) };
    let forged = CallbackToken::generate().unwrap();
    for (attempt, token) in [(1, forged.expose()), (1, "short"), (2, token.as_str()), (0, token.as_str())] {
        let answer =
            record_outcome(&store, &blobs(), &task.task_id, (attempt, token), ok(), at(1_010), &ttl).await.unwrap();
        assert_eq!(answer, CallbackResult::Unauthorized, "attempt {attempt}");
    }
    let missing =
        record_outcome(&store, &blobs(), &TaskId::generate(), (1, &token), ok(), at(1_010), &ttl).await.unwrap();
    assert_eq!(missing, CallbackResult::Missing);
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), task);
}

#[tokio::test]
async fn a_callback_for_a_timed_out_attempt_is_stale_and_ignored() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let old_token = service.token(&task.task_id);
    let timer = deadline_timer(&store, &task.task_id).await;
    let timed_out = deadline(&store, &timer, at(1_102), &policies()).await.unwrap();
    assert_eq!(timed_out.map(|t| (t.status, t.due_at)), Some((TaskStatus::Received, at(1_102))), "retried at once");
    let late = Outcome::Succeeded { result: inline(json!("late")) };
    let answer = record_outcome(&store, &blobs(), &task.task_id, (1, &old_token), late, at(1_103), &policies().ttl)
        .await
        .unwrap();
    assert_eq!(answer, CallbackResult::Stale);
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.result), (TaskStatus::Received, None));
}

#[tokio::test]
async fn a_late_callback_for_attempt_one_does_not_finish_the_task_while_attempt_two_runs() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let first_token = service.token(&task.task_id);
    let timer = deadline_timer(&store, &task.task_id).await;
    assert!(deadline(&store, &timer, at(1_102), &policies()).await.unwrap().is_some());
    let second = hand_over(&store, &blobs(), &service, (&task.task_id, 2), BASE, (at(1_200), 0.5), &policies()).await;
    assert!(matches!(second, Ok(HandOver::Accepted { .. })), "{second:?}");
    let running = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((running.status, running.attempts), (TaskStatus::InProgress, 2));
    let kept = token_of(&running, 1).map(String::as_str);
    assert_eq!(kept, Some(token::digest(&first_token).as_str()), "attempt 1's token is still valid");

    let ttl = policies().ttl;
    for late in [Outcome::Succeeded { result: inline(json!("late")) }, Outcome::Failed { error: "late".into() }] {
        let answer =
            record_outcome(&store, &blobs(), &task.task_id, (1, &first_token), late, at(1_210), &ttl).await.unwrap();
        assert_eq!(answer, CallbackResult::Stale);
    }
    let beat = heartbeat(&store, &task.task_id, (1, &first_token), at(1_210), &policies()).await.unwrap();
    assert_eq!(beat, CallbackResult::Stale);
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), running, "attempt 2 runs on, untouched");

    let second_token = service.token(&task.task_id);
    let ok = Outcome::Succeeded { result: inline(json!("second")) };
    let answer = record_outcome(&store, &blobs(), &task.task_id, (2, &second_token), ok, at(1_220), &ttl).await;
    assert!(matches!(answer, Ok(CallbackResult::Recorded(ref t)) if t.status == TaskStatus::Done), "{answer:?}");
}

#[tokio::test]
async fn a_heartbeat_moves_the_deadline_so_the_old_timer_and_the_sweeper_leave_the_attempt_alone() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let old_timer = deadline_timer(&store, &task.task_id).await;
    let beat = heartbeat(&store, &task.task_id, (1, &token), at(1_090), &policies()).await.unwrap();
    assert!(matches!(beat, CallbackResult::Recorded(ref t) if t.due_at == at(1_190)), "{beat:?}");
    assert_eq!(deadline(&store, &old_timer, at(1_150), &policies()).await.unwrap(), None);
    let report = sweep_at(&store, at(1_150), 100).await;
    assert!(report.timed_out_retried.is_empty() && report.timed_out_failed.is_empty());
    let new_timer = deadline_timer(&store, &task.task_id).await;
    assert_eq!(deadline(&store, &new_timer, at(1_189), &policies()).await.unwrap(), None, "not due yet");
    assert!(deadline(&store, &new_timer, at(1_190), &policies()).await.unwrap().is_some(), "due at the new deadline");
    let (forged, policies) = (CallbackToken::generate().unwrap(), policies());
    let answer = heartbeat(&store, &task.task_id, (1, forged.expose()), at(1_100), &policies).await.unwrap();
    assert_eq!(answer, CallbackResult::Unauthorized);
}

#[tokio::test]
async fn an_attempt_that_times_out_with_no_attempts_left_fails_the_task() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = submitted(&store).await;
    let mut now = 1_001;
    let mut gave_up_at = 0;
    for attempt in 1..=3 {
        hand_over(&store, &blobs(), &service, (&task.task_id, attempt), BASE, (at(now), 0.5), &policies())
            .await
            .unwrap();
        now += 101;
        let timer = deadline_timer(&store, &task.task_id).await;
        let task = deadline(&store, &timer, at(now), &policies()).await.unwrap().unwrap();
        assert_eq!(task.status == TaskStatus::Failed, attempt == 3, "attempt {attempt}");
        gave_up_at = now;
        now += 100;
    }
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!((stored.due_at, stored.expires_at), (at(gave_up_at), gave_up_at + 600), "kept for the retention");
    assert_eq!(stored.error.as_deref(), Some("gave up after 3 attempts; last: no callback within 100 s"));
}

#[tokio::test]
async fn the_sweeper_makes_a_task_whose_start_was_lost_due_again_once_per_grace() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    assert_eq!(sweep_at(&store, at(1_020), 100).await.redispatched, 0, "within the grace: its timer has it");
    assert_eq!(sweep_at(&store, at(1_031), 100).await.redispatched, 1);
    let leased = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((leased.status, leased.attempts, leased.due_at), (TaskStatus::Received, 0, at(1_031)));
    assert_eq!(leased.history, task.history, "a re-dispatch is not an event of the task");
    assert_eq!(sweep_at(&store, at(1_050), 100).await.redispatched, 0, "the lease holds for the grace");
    assert_eq!(sweep_at(&store, at(1_062), 100).await.redispatched, 1, "still not started: again");
}

#[tokio::test]
async fn the_sweeper_times_out_an_attempt_whose_timer_was_lost() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    assert!(sweep_at(&store, at(1_102), 100).await.timed_out_retried.is_empty(), "its timer has it");
    let report = sweep_at(&store, at(1_132), 100).await;
    assert_eq!(report.timed_out_retried, [task.task_id]);
}

#[tokio::test]
async fn the_sweeper_fails_tasks_that_expired_while_active_so_they_leave_the_index() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let waiting = submitted(&store).await;
    let running = started(&store, &service).await;
    let after_ttl = at(1_001 + 3_600 + 60);
    let report = sweep_at(&store, after_ttl, 100).await;
    let mut expired: Vec<_> = report.expired.iter().map(|t| (t.task_id.clone(), t.status, t.error.clone())).collect();
    expired.sort();
    let mut expected = vec![
        (waiting.task_id.clone(), TaskStatus::Failed, Some("expired".to_owned())),
        (running.task_id.clone(), TaskStatus::Failed, Some("expired".to_owned())),
    ];
    expected.sort();
    assert_eq!(expired, expected);
    assert!(store.due(TaskStatus::Received, after_ttl, 10).await.unwrap().is_empty());
    assert!(store.due(TaskStatus::InProgress, after_ttl, 10).await.unwrap().is_empty());
    assert!(report.timed_out_retried.is_empty() && report.redispatched == 0);
}

#[tokio::test]
async fn the_sweeper_skips_a_task_it_cannot_move_and_goes_on() {
    let store = MemoryStore::new();
    let first = submitted(&store).await;
    let second = submitted(&store).await;
    store.fail_writes(0, 1);
    let report = sweep_at(&store, at(1_031), 100).await;
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.redispatched, 1, "the other task was moved");
    assert!([&first.task_id, &second.task_id].contains(&&report.skipped[0].0));
}

#[tokio::test]
async fn the_sweeper_stops_at_its_time_budget() {
    let store = MemoryStore::new();
    submitted(&store).await;
    let report = sweep(&store, at(1_031), &policies(), 100, tokio::time::Instant::now()).await.unwrap();
    assert!(report.out_of_time);
    assert_eq!(report.redispatched, 0);
}

#[tokio::test]
async fn the_owner_cancels_an_unfinished_task_once_and_late_callbacks_change_nothing() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    assert_eq!(cancel(&store, &client("beta"), &task.task_id, at(1_005), &ttl).await.unwrap(), OwnerAction::Missing);
    let cancelled = cancel(&store, &client("alpha"), &task.task_id, at(1_005), &ttl).await.unwrap();
    let OwnerAction::Applied(cancelled) = cancelled else { panic!("{cancelled:?}") };
    assert_eq!(
        (cancelled.status, cancelled.error.as_deref(), cancelled.cancelled),
        (TaskStatus::Failed, Some(CANCELLED), true)
    );
    assert_eq!(cancelled.expires_at, 1_005 + 600, "a cancelled task is kept for the result retention");
    let again = cancel(&store, &client("alpha"), &task.task_id, at(1_006), &ttl).await.unwrap();
    assert_eq!(again, OwnerAction::Unchanged(cancelled.clone()));
    let late = Outcome::Succeeded { result: inline(json!(1)) };
    let late = record_outcome(&store, &blobs(), &task.task_id, (1, &token), late, at(1_007), &ttl).await.unwrap();
    assert_eq!(late, CallbackResult::Stale);
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), cancelled);
}

#[tokio::test]
async fn after_the_owners_cancel_every_callback_for_the_attempt_is_stale() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    let cancelled = cancel(&store, &client("alpha"), &task.task_id, at(1_005), &ttl).await.unwrap();
    let OwnerAction::Applied(cancelled) = cancelled else { panic!("{cancelled:?}") };
    for late in [
        Outcome::Failed { error: CANCELLED.into() },
        Outcome::Failed { error: "no capacity".into() },
        Outcome::Succeeded { result: inline(json!(1)) },
    ] {
        let answer = record_outcome(&store, &blobs(), &task.task_id, (1, &token), late.clone(), at(1_006), &ttl).await;
        assert_eq!(answer.unwrap(), CallbackResult::Stale, "{late:?}");
    }
    let beat = heartbeat(&store, &task.task_id, (1, &token), at(1_006), &policies()).await.unwrap();
    assert_eq!(beat, CallbackResult::Stale);
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), cancelled);
}

#[tokio::test]
async fn a_failure_the_service_reports_as_cancelled_is_no_cancel() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    let reported = || Outcome::Failed { error: CANCELLED.into() };
    let answer = record_outcome(&store, &blobs(), &task.task_id, (1, &token), reported(), at(1_010), &ttl).await;
    let Ok(CallbackResult::Recorded(failed)) = answer else { panic!("{answer:?}") };
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.cancelled),
        (TaskStatus::Failed, Some(CANCELLED), false)
    );

    // The owner's cancel finds a task that finished otherwise: refused, not "already cancelled".
    let owner = cancel(&store, &client("alpha"), &task.task_id, at(1_011), &ttl).await.unwrap();
    assert_eq!(owner, OwnerAction::Refused(failed.clone()));
    // The service's own attempt: the same report is a repeat, another one a conflict.
    let again = record_outcome(&store, &blobs(), &task.task_id, (1, &token), reported(), at(1_012), &ttl).await;
    assert_eq!(again.unwrap(), CallbackResult::Repeated(failed.clone()));
    for other in [Outcome::Failed { error: "no capacity".into() }, Outcome::Succeeded { result: inline(json!(1)) }] {
        let answer = record_outcome(&store, &blobs(), &task.task_id, (1, &token), other.clone(), at(1_013), &ttl).await;
        assert_eq!(answer.unwrap(), CallbackResult::Conflict(failed.clone()), "{other:?}");
    }
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap(), failed);
}

#[tokio::test]
async fn a_finished_task_cannot_be_cancelled() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    record_outcome(
        &store,
        &blobs(),
        &task.task_id,
        (1, &token),
        Outcome::Succeeded { result: inline(json!(1)) },
        at(1_010),
        &ttl,
    )
    .await
    .unwrap();
    let answer = cancel(&store, &client("alpha"), &task.task_id, at(1_011), &ttl).await.unwrap();
    assert!(matches!(answer, OwnerAction::Refused(t) if t.status == TaskStatus::Done));
}

#[tokio::test]
async fn replaying_a_failed_task_starts_a_fresh_series() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let refusing = Service::refusing(ExternalError::Rejected { status: 400, retry_after_seconds: None });
    hand_over(&store, &blobs(), &refusing, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    let ttl = policies().ttl;
    assert_eq!(replay(&store, &client("beta"), &task.task_id, at(1_010), &ttl).await.unwrap(), OwnerAction::Missing);
    let replayed = replay(&store, &client("alpha"), &task.task_id, at(1_010), &ttl).await.unwrap();
    let OwnerAction::Applied(replayed) = replayed else { panic!("{replayed:?}") };
    assert_eq!((replayed.status, replayed.series_start, replayed.error.as_ref()), (TaskStatus::Received, 1, None));
    let refused = replay(&store, &client("alpha"), &task.task_id, at(1_011), &ttl).await.unwrap();
    assert!(matches!(refused, OwnerAction::Refused(t) if t.status == TaskStatus::Received));

    let service = Service::default();
    let outcome =
        hand_over(&store, &blobs(), &service, (&task.task_id, 2), BASE, (at(1_012), 0.5), &policies()).await.unwrap();
    assert!(matches!(outcome, HandOver::Accepted { task } if task.attempt_in_series() == 1));
}

#[tokio::test]
async fn gauges_count_active_tasks_overdue_attempts_and_backlog_age() {
    let (store, service) = (MemoryStore::new(), Service::default());
    let ttl = policies().ttl;
    let alpha = client("a");
    let kept = blobs();
    let new = |seconds| submit(&store, &kept, &alpha, json!({}), None, at(seconds), &ttl);
    let Submitted::Created(_waiting) = new(100).await.unwrap() else { panic!() };
    new(150).await.unwrap();
    let Submitted::Created(overdue) = new(100).await.unwrap() else { panic!() };
    hand_over(&store, &blobs(), &service, (&overdue.task_id, 1), BASE, (at(10), 0.5), &policies()).await.unwrap();
    let Submitted::Created(running) = new(100).await.unwrap() else { panic!() };
    hand_over(&store, &blobs(), &service, (&running.task_id, 1), BASE, (at(190), 0.5), &policies()).await.unwrap();
    for (seconds, status) in [(102, "old"), (190, "new")] {
        let Submitted::Created(task) = new(100).await.unwrap() else { panic!() };
        hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(101), 0.5), &policies()).await.unwrap();
        let token = service.token(&task.task_id);
        let done = Outcome::Succeeded { result: inline(json!(status)) };
        record_outcome(&store, &blobs(), &task.task_id, (1, &token), done, at(seconds), &ttl).await.unwrap();
    }

    let gauges = gauges(&store, at(200)).await.unwrap();
    let value = |name: &str, status: Option<TaskStatus>| {
        gauges.iter().find(|g| g.name == name && g.status == status).map(|g| g.value)
    };
    assert_eq!(value(metrics::TASKS_ACTIVE, Some(TaskStatus::Received)), Some(2.0));
    assert_eq!(value(metrics::TASKS_ACTIVE, Some(TaskStatus::InProgress)), Some(2.0));
    assert_eq!(value(metrics::TASKS_OVERDUE, None), Some(1.0), "the attempt started at 10 s was due at 110 s");
    assert_eq!(value(metrics::OLDEST_RECEIVED_AGE, None), Some(100.0));
    assert_eq!(gauges.len(), 4);
}

#[tokio::test]
async fn with_nothing_waiting_every_gauge_is_zero() {
    let gauges = gauges(&MemoryStore::new(), at(200)).await.unwrap();
    let listed: Vec<(&str, Option<&str>, f64, Unit)> =
        gauges.iter().map(|g| (g.name, g.status.map(TaskStatus::as_str), g.value, g.unit)).collect();
    assert_eq!(
        listed,
        [
            ("TasksActive", Some("RECEIVED"), 0.0, Unit::Count),
            ("TasksActive", Some("IN_PROGRESS"), 0.0, Unit::Count),
            ("TasksOverdue", None, 0.0, Unit::Count),
            ("OldestReceivedAgeSeconds", None, 0.0, Unit::Seconds),
        ]
    );
}

#[tokio::test]
async fn due_lists_the_earliest_first_and_respects_the_limit() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    for seconds in [30, 10, 20] {
        submit(&store, &blobs(), &client("a"), json!({}), None, at(seconds), &ttl).await.unwrap();
    }
    let due: Vec<DueTask> = store.due(TaskStatus::Received, at(25), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.due_at).collect::<Vec<_>>(), [at(10), at(20)]);
    assert_eq!(store.due(TaskStatus::Received, at(99), 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_listing_shows_only_the_clients_own_tasks_newest_first_page_by_page() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let mut mine = Vec::new();
    for seconds in [10, 30, 20, 40] {
        let Submitted::Created(task) =
            submit(&store, &blobs(), &client("alpha"), json!({}), None, at(seconds), &ttl).await.unwrap()
        else {
            panic!()
        };
        mine.push((seconds, task.task_id));
    }
    submit(&store, &blobs(), &client("beta"), json!({}), None, at(35), &ttl).await.unwrap();
    mine.sort_by_key(|(seconds, _)| -seconds);
    let expected: Vec<TaskId> = mine.into_iter().map(|(_, id)| id).collect();

    let first = list_tasks(&store, &client("alpha"), None, 3, None, at(50)).await.unwrap();
    assert_eq!(first.tasks.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>(), expected[..3]);
    let second = list_tasks(&store, &client("alpha"), None, 3, first.next, at(50)).await.unwrap();
    assert_eq!(second.tasks.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>(), expected[3..]);
    assert_eq!(second.next, None);
    let done = list_tasks(&store, &client("alpha"), Some(TaskStatus::Done), 10, None, at(50)).await.unwrap();
    assert!(done.tasks.is_empty() && done.next.is_none());
    let later = list_tasks(&store, &client("alpha"), None, 10, None, at(10_000)).await.unwrap();
    assert!(later.tasks.is_empty(), "expired tasks are not listed");
}

#[tokio::test]
async fn a_large_payload_is_kept_in_the_blob_store_and_handed_over_whole() {
    let (store, service, blobs) = (MemoryStore::new(), Service::default(), blobs_above(16));
    let payload = json!({"data": "x".repeat(64)});
    let answer = submit(&store, &blobs, &client("alpha"), payload.clone(), None, at(1_000), &policies().ttl).await;
    let Ok(Submitted::Created(task)) = answer else { panic!("{answer:?}") };
    let key = blob::payload_key(&task.task_id);
    assert_eq!(store.payload(&task.task_id).await.unwrap(), Some(Content::Stored { key: key.clone() }));
    assert_eq!(blobs.store.keys(), [key]);
    hand_over(&store, &blobs, &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    assert_eq!(service.payloads(), [payload]);
}

#[tokio::test]
async fn a_small_payload_stays_inline() {
    let (store, blobs) = (MemoryStore::new(), blobs_above(1_024));
    let answer = submit(&store, &blobs, &client("alpha"), json!({"n": 1}), None, at(1_000), &policies().ttl).await;
    let Ok(Submitted::Created(task)) = answer else { panic!("{answer:?}") };
    assert_eq!(store.payload(&task.task_id).await.unwrap(), Some(inline(json!({"n": 1}))));
    assert!(blobs.store.keys().is_empty());
}

#[tokio::test]
async fn a_task_whose_payload_is_gone_fails_instead_of_calling_the_service() {
    let (store, service, blobs) = (MemoryStore::new(), Service::default(), blobs_above(16));
    let (alpha, ttl) = (client("alpha"), policies().ttl);
    let answer = submit(&store, &blobs, &alpha, json!({"data": "x".repeat(64)}), None, at(1_000), &ttl);
    let Ok(Submitted::Created(task)) = answer.await else { panic!() };
    let empty = blobs_above(16);
    let outcome =
        hand_over(&store, &empty, &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    assert!(
        matches!(outcome, HandOver::PayloadGone { task: Some(ref t) } if t.status == TaskStatus::Failed),
        "{outcome:?}"
    );
    assert!(service.jobs().is_empty());
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.error.as_deref(), Some(PAYLOAD_GONE));
}

#[tokio::test]
async fn a_large_result_is_kept_in_the_blob_store_once_and_a_repeat_is_recognised() {
    let (store, service, blobs) = (MemoryStore::new(), Service::default(), blobs_above(16));
    let task = started(&store, &service).await;
    let token = service.token(&task.task_id);
    let ttl = policies().ttl;
    let large = json!({"answer": "y".repeat(64)});
    let ok = || Outcome::Succeeded { result: inline(large.clone()) };
    let first = record_outcome(&store, &blobs, &task.task_id, (1, &token), ok(), at(1_010), &ttl).await.unwrap();
    let CallbackResult::Recorded(done) = first else { panic!("{first:?}") };
    let Some(Content::Stored { key }) = done.result.clone() else { panic!("{:?}", done.result) };
    assert!(key.starts_with(&format!("results/{}/1/", task.task_id)), "{key}");
    assert_eq!(blobs.load(&Content::Stored { key: key.clone() }).await.unwrap(), Some(large.clone()));
    let again = record_outcome(&store, &blobs, &task.task_id, (1, &token), ok(), at(1_020), &ttl).await.unwrap();
    assert!(matches!(again, CallbackResult::Repeated(_)), "{again:?}");
    let other = Outcome::Succeeded { result: inline(json!({"answer": "z".repeat(64)})) };
    let conflict = record_outcome(&store, &blobs, &task.task_id, (1, &token), other, at(1_030), &ttl).await.unwrap();
    assert!(matches!(conflict, CallbackResult::Conflict(_)), "{conflict:?}");
    assert_eq!(blobs.store.keys(), [key], "neither the repeat nor the conflicting report wrote a blob");
}

#[tokio::test]
async fn a_forged_large_result_writes_nothing_to_the_blob_store() {
    let (store, service, blobs) = (MemoryStore::new(), Service::default(), blobs_above(16));
    let task = started(&store, &service).await;
    let forged = CallbackToken::generate().unwrap();
    let large = Outcome::Succeeded { result: inline(json!({"answer": "y".repeat(64)})) };
    let ttl = policies().ttl;
    let answer = record_outcome(&store, &blobs, &task.task_id, (1, forged.expose()), large, at(1_010), &ttl);
    assert_eq!(answer.await.unwrap(), CallbackResult::Unauthorized);
    assert!(blobs.store.keys().is_empty());
}

#[tokio::test]
async fn replays_are_bounded() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let ttl = policies().ttl;
    for n in 0..=crate::lifecycle::MAX_REPLAYS {
        cancel(&store, &client("alpha"), &task.task_id, at(1_001), &ttl).await.unwrap();
        let answer = replay(&store, &client("alpha"), &task.task_id, at(1_002), &ttl).await.unwrap();
        assert_eq!(matches!(answer, OwnerAction::Applied(_)), n < crate::lifecycle::MAX_REPLAYS, "replay {}", n + 1);
    }
}

#[tokio::test]
async fn a_follow_up_write_that_fails_after_the_start_is_tried_again() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None });
    // The start applies; the next two writes (tries of the retry) fail as throttled.
    store.fail_writes(1, 2);
    let outcome = hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await;
    assert!(matches!(outcome, Ok(HandOver::Retrying { .. })), "{outcome:?}");
    let stored = store.get(&task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (TaskStatus::Received, 1), "put back for attempt 2");

    // A permanent refusal fails the task the same way.
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 400, retry_after_seconds: None });
    store.fail_writes(1, 2);
    let outcome = hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await;
    assert!(matches!(outcome, Ok(HandOver::Failed { task: Some(_), .. })), "{outcome:?}");
}

#[tokio::test]
async fn a_follow_up_write_that_keeps_failing_is_an_error_and_the_sweeper_recovers_the_attempt() {
    let store = MemoryStore::new();
    let task = submitted(&store).await;
    let service = Service::refusing(ExternalError::Rejected { status: 503, retry_after_seconds: None });
    store.fail_writes(1, FOLLOW_UP_TRIES as usize);
    let outcome = hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await;
    assert!(matches!(outcome, Err(HandOverError::Store(StoreError::Unavailable(_)))), "{outcome:?}");
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap().status, TaskStatus::InProgress);
    // The redelivered message finds the attempt started and does nothing …
    let again = hand_over(&store, &blobs(), &service, (&task.task_id, 1), BASE, (at(1_002), 0.5), &policies()).await;
    assert!(matches!(again, Ok(HandOver::Skipped)), "{again:?}");
    assert_eq!(service.jobs().len(), 1, "the service is called once per attempt");
    // … and its deadline timer puts it back when the callback is due.
    let timer = deadline_timer(&store, &task.task_id).await;
    let retried = deadline(&store, &timer, at(1_001 + 100), &policies()).await.unwrap();
    assert_eq!(retried.map(|t| t.status), Some(TaskStatus::Received));
}
