//! Scheduled and traced submissions: a task with a later `run_at` waits RECEIVED, due then, its
//! expiries (task, payload, idempotency key) counted from then; a cancel while it waits leaves
//! nothing for its timer to start; the sweeper leaves it alone until it is due; the trace id is
//! kept with the task and carried by every job sent for it.

use super::*;

/// Remembers the expiries the memory store does not keep itself.
#[derive(Default)]
struct Recording {
    payload_expiries: Mutex<Vec<i64>>,
    claims: Mutex<Vec<IdempotencyRecord>>,
}

impl Interceptor for Recording {
    fn before(&self, call: Call<'_>) -> Result<(), StoreError> {
        match call {
            Call::Insert { payload_expires_at, .. } => self.payload_expiries.lock().unwrap().push(payload_expires_at),
            Call::Claim(record) => self.claims.lock().unwrap().push(record.clone()),
            _ => {}
        }
        Ok(())
    }
}

fn scheduled(payload: Value, run_at: Timestamp) -> NewTask {
    NewTask { payload, run_at: Some(run_at), trace_id: None, webhook_url: None }
}

async fn created(store: &impl TaskStore, new: NewTask, key: Option<&str>, now: Timestamp) -> Task {
    match submit_task(store, &blobs(), &client("alpha"), new, key, now, &policies().ttl).await {
        Ok(Submitted::Created(task)) => task,
        other => panic!("expected a new task: {other:?}"),
    }
}

/// The start timer the dispatcher sets for a RECEIVED task.
fn start_timer(task: &Task) -> Timer {
    Timer { task_id: task.task_id.clone(), attempt: task.attempts + 1, step: Step::Start, due_at: task.due_at }
}

#[tokio::test]
async fn a_task_scheduled_later_waits_received_due_at_its_run_at_and_every_expiry_covers_it() {
    // Task TTL 3600 s, retention 600 s; submitted at 1000, to run at 6000.
    let store = Intercepted::<Recording>::default();
    let task = created(&store, scheduled(json!({"n": 1}), at(6_000)), Some("k"), at(1_000)).await;
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!((task.created_at, task.due_at, task.run_at), (at(1_000), at(6_000), Some(at(6_000))));
    assert_eq!(task.expires_at, 6_000 + 3_600, "a task TTL from its run_at");
    assert_eq!(*store.interceptor.payload_expiries.lock().unwrap(), [6_000 + 3_600 + 600]);
    assert_eq!(store.interceptor.claims.lock().unwrap()[0].expires_at, 6_000 + 3_600 + 600);
    assert_eq!(store.get(&task.task_id).await.unwrap(), Some(task));
}

#[tokio::test]
async fn a_run_at_in_the_past_or_now_means_at_once() {
    let store = MemoryStore::new();
    for run_at in [at(1), at(999), at(1_000)] {
        let task = created(&store, scheduled(json!({}), run_at), None, at(1_000)).await;
        assert_eq!((task.due_at, task.run_at, task.expires_at), (at(1_000), None, 1_000 + 3_600), "{run_at:?}");
    }
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_the_run_at_as_asked() {
    let store = MemoryStore::new();
    let ttl = policies().ttl;
    let alpha = client("alpha");
    let first = created(&store, scheduled(json!({"n": 1}), at(6_000)), Some("k"), at(1_000)).await;
    // The same request later, even after its run_at passed: the same task.
    for now in [1_001, 7_000] {
        let again =
            submit_task(&store, &blobs(), &alpha, scheduled(json!({"n": 1}), at(6_000)), Some("k"), at(now), &ttl)
                .await
                .unwrap();
        assert_eq!(again, Submitted::Existing(store.get(&first.task_id).await.unwrap().unwrap()), "at {now}");
    }
    // Another run_at, or none, with the same payload: another request.
    for other in [scheduled(json!({"n": 1}), at(6_001)), NewTask::now(json!({"n": 1}))] {
        let answer = submit_task(&store, &blobs(), &alpha, other, Some("k"), at(1_002), &ttl).await;
        assert!(matches!(answer, Err(SubmitError::KeyReused)), "{answer:?}");
    }
    // A key first used without run_at keeps its digest: the payload's alone.
    created(&store, NewTask::now(json!({"n": 2})), Some("plain"), at(1_000)).await;
    let repeat = submit(&store, &blobs(), &alpha, json!({"n": 2}), Some("plain"), at(1_001), &ttl).await.unwrap();
    assert!(matches!(repeat, Submitted::Existing(_)));
}

#[tokio::test]
async fn a_claimed_key_of_a_scheduled_task_that_never_landed_is_rebuilt_until_it_could_have_expired() {
    // TTL 3600 s, retention a day: a task created at 900 to run at 10000 cannot have expired
    // before 13600 (unfinished) nor been cancelled and deleted before 900 + 86400.
    let ttl = TtlPolicy::new(3_600, 86_400);
    let new = || scheduled(json!({"x": 1}), at(10_000));
    for (now, rebuilt) in [(5_000, true), (13_599, true), (13_600, false)] {
        let store = MemoryStore::new();
        let lost = IdempotencyRecord {
            client_id: client("alpha"),
            key_digest: token::digest("k"),
            request_digest: new().request_digest(),
            task_id: TaskId::generate(),
            created_at: at(900),
            expires_at: ttl.payload_expiry(at(10_000)),
        };
        store.claim(&lost).await.unwrap();
        let answer = submit_task(&store, &blobs(), &client("alpha"), new(), Some("k"), at(now), &ttl).await;
        if rebuilt {
            let Ok(Submitted::Existing(task)) = answer else { panic!("at {now}: {answer:?}") };
            assert_eq!((task.task_id, task.created_at), (lost.task_id, at(900)));
            assert_eq!((task.due_at, task.run_at, task.expires_at), (at(10_000), Some(at(10_000)), 13_600));
        } else {
            assert!(matches!(answer, Err(SubmitError::TaskGone)), "at {now}: {answer:?}");
        }
    }
}

#[tokio::test]
async fn a_scheduled_task_cancelled_while_it_waits_is_never_started() {
    let store = MemoryStore::new();
    let service = Service::default();
    let task = created(&store, scheduled(json!({}), at(6_000)), None, at(1_000)).await;
    let cancelled = cancel(&store, &client("alpha"), &task.task_id, at(2_000), &policies().ttl).await.unwrap();
    let OwnerAction::Applied(cancelled) = cancelled else { panic!("{cancelled:?}") };
    assert!(cancelled.cancelled && cancelled.status == TaskStatus::Failed);
    // Its start timer fires at its run_at and finds nothing to start.
    let timer = start_timer(&task);
    let outcome =
        hand_over(&store, &blobs(), &service, (&timer.task_id, timer.attempt), BASE, (at(6_000), 0.5), &policies())
            .await;
    // (By then the cancelled task has also outlived its retention: either way, nothing starts.)
    assert!(matches!(outcome, Ok(HandOver::Skipped | HandOver::Missing)), "{outcome:?}");
    assert!(service.jobs().is_empty());
}

#[tokio::test]
async fn the_sweeper_leaves_a_scheduled_task_alone_until_it_is_due_past_the_grace() {
    let store = MemoryStore::new();
    let task = created(&store, scheduled(json!({}), at(6_000)), None, at(1_000)).await;
    // Grace 30 s: before 6030 the task is not late, whatever its age.
    for now in [1_100, 5_000, 6_000, 6_029] {
        assert_eq!(sweep_at(&store, at(now), 10).await.redispatched, 0, "at {now}");
    }
    assert_eq!(sweep_at(&store, at(6_030), 10).await.redispatched, 1);
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap().due_at, at(6_030));
}

/// A service that keeps the `traceparent` of every job.
#[derive(Default)]
struct Traced(Mutex<Vec<Option<String>>>);

impl ExternalService for Traced {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        self.0.lock().unwrap().push(job.traceparent.map(str::to_owned));
        Ok(())
    }
}

#[tokio::test]
async fn every_job_carries_the_tasks_trace_id_in_a_new_span() {
    let store = MemoryStore::new();
    let trace = TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let new = NewTask { payload: json!({}), run_at: None, trace_id: Some(trace.clone()), webhook_url: None };
    let task = created(&store, new, None, at(1_000)).await;
    assert_eq!(task.trace_id.as_ref(), Some(&trace));
    assert_eq!(store.get(&task.task_id).await.unwrap().unwrap().trace_id, Some(trace.clone()));
    let service = Traced::default();
    for attempt in [1, 2] {
        hand_over(
            &store,
            &blobs(),
            &service,
            (&task.task_id, attempt),
            BASE,
            (at(1_000 + i64::from(attempt)), 0.5),
            &policies(),
        )
        .await
        .unwrap();
        if attempt == 1 {
            let retry = Transition::retry(&task.task_id, 1, "503", at(1_001), at(1_001));
            assert!(matches!(store.apply(&retry).await.unwrap(), WriteOutcome::Applied(_)));
        }
    }
    let sent = service.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    let parents: Vec<crate::trace::TraceParent> =
        sent.iter().map(|header| crate::trace::TraceParent::parse(header.as_deref().unwrap()).unwrap()).collect();
    assert!(parents.iter().all(|parent| parent.trace_id == trace));
    assert_ne!(parents[0].parent_id, parents[1].parent_id, "one span per attempt");

    // A task stored before trace ids were kept sends none.
    let old = submitted(&store).await;
    assert_eq!(old.trace_id, None);
    hand_over(&store, &blobs(), &service, (&old.task_id, 1), BASE, (at(1_001), 0.5), &policies()).await.unwrap();
    assert_eq!(service.0.lock().unwrap().last(), Some(&None));
}

#[tokio::test]
async fn an_idempotent_repeat_answers_the_first_submissions_trace() {
    let store = MemoryStore::new();
    let first_trace = TraceId::generate();
    let traced = |trace: &TraceId| NewTask {
        payload: json!({"n": 1}),
        run_at: None,
        trace_id: Some(trace.clone()),
        webhook_url: None,
    };
    let first = created(&store, traced(&first_trace), Some("k"), at(1_000)).await;
    let again = submit_task(
        &store,
        &blobs(),
        &client("alpha"),
        traced(&TraceId::generate()),
        Some("k"),
        at(1_001),
        &policies().ttl,
    )
    .await
    .unwrap();
    let Submitted::Existing(again) = again else { panic!("{again:?}") };
    assert_eq!((again.task_id, again.trace_id), (first.task_id, Some(first_trace)));
}
