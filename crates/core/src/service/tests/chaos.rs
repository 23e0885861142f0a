//! A property test of the lifecycle: random sequences of everything at-least-once delivery and
//! unreliable services can do to a task — dispatches and their duplicates, starts, callbacks
//! (right, repeated, contradicting, stale, forged), heartbeats, timeouts, cancels, replays —
//! always leave it in a legal state, with every step of its history a legal transition, every
//! step belonging to the attempt that was current when it happened, at most one finish per
//! attempt series, and the service called at most once per attempt.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use TaskStatus::{Done, Failed, InProgress, Received};

/// The legal status moves, written out here (as in the README's diagram) rather than asked of
/// `lifecycle::check`: the production rule must not be its own judge.
const LEGAL_MOVES: [(TaskStatus, TaskStatus); 6] = [
    (Received, InProgress), // an attempt starts
    (Received, Failed),     // cancelled before it started
    (InProgress, Done),     // the service reported success
    (InProgress, Failed),   // the service reported failure, the fleet gave up, or the owner cancelled
    (InProgress, Received), // the attempt failed and another is allowed
    (Failed, Received),     // the owner replays
];

/// A service that refuses at random and remembers every job it was sent.
struct FlakyService {
    rng: Mutex<fastrand::Rng>,
    calls: Mutex<HashMap<u32, u32>>,
    tokens: Mutex<HashMap<u32, String>>,
}

impl ExternalService for FlakyService {
    async fn submit(&self, job: &Job<'_>) -> Result<(), ExternalError> {
        *self.calls.lock().unwrap().entry(job.attempt).or_default() += 1;
        let token = job.callback_url.split("token=").nth(1).unwrap_or_default().to_owned();
        self.tokens.lock().unwrap().insert(job.attempt, token);
        let roll = self.rng.lock().unwrap().u8(..10);
        match roll {
            0 => Err(ExternalError::Rejected { status: 503, retry_after_seconds: None }),
            1 => Err(ExternalError::Rejected { status: 400, retry_after_seconds: None }),
            2 => Err(ExternalError::Timeout { timeout_ms: 1 }),
            _ => Ok(()),
        }
    }
}

fn assert_legal(task: &Task, policies: &Policies, calls: &HashMap<u32, u32>, seed: u64) {
    let history = &task.history;
    assert!(history.len() <= crate::lifecycle::HISTORY_KEPT, "seed {seed}: history unbounded");
    if task.history_omitted == 0 {
        assert_eq!(history.first().map(|e| e.status), Some(TaskStatus::Received), "seed {seed}");
    }
    for pair in history.windows(2) {
        let (before, step) = (&pair[0], &pair[1]);
        assert!(LEGAL_MOVES.contains(&(before.status, step.status)), "seed {seed}: illegal step in {history:?}");
        // A start begins the next attempt; every other step — a finish above all — belongs to
        // the attempt that was current when it happened.
        let current = if step.status == InProgress { before.attempt + 1 } else { before.attempt };
        assert_eq!(step.attempt, current, "seed {seed}: {step:?} is not the current attempt's: {history:?}");
    }
    assert_eq!(history.last().map(|e| e.attempt), Some(task.attempts), "seed {seed}: {history:?}");
    assert_eq!(history.last().map(|e| e.status), Some(task.status), "seed {seed}: history ends elsewhere");
    // Each series (split at replays) finishes at most once, at its end.
    let mut finishes_in_series = 0;
    for entry in history.iter().skip(1) {
        match entry.status {
            TaskStatus::Done | TaskStatus::Failed => finishes_in_series += 1,
            TaskStatus::Received if finishes_in_series > 0 => finishes_in_series = 0, // a replay
            _ => assert_eq!(finishes_in_series, 0, "seed {seed}: a finished series went on: {history:?}"),
        }
        assert!(finishes_in_series <= 1, "seed {seed}: finished twice: {history:?}");
    }
    assert!(task.attempt_in_series() <= policies.retry.max_attempts, "seed {seed}: too many attempts");
    assert!(calls.values().all(|&n| n == 1), "seed {seed}: an attempt called the service twice: {calls:?}");
    assert_eq!(task.status == TaskStatus::Done, task.result.is_some(), "seed {seed}: result iff DONE");
    if task.cancelled {
        let cancelled = (task.status, task.error.as_deref());
        assert_eq!(cancelled, (Failed, Some(crate::lifecycle::CANCELLED)), "seed {seed}: a cancel is a failure");
    }
    assert_eq!(
        task.callback_tokens.keys().copied().collect::<Vec<_>>(),
        (task.attempts.saturating_sub(crate::lifecycle::TOKENS_KEPT) + 1..=task.attempts).collect::<Vec<_>>(),
        "seed {seed}: the tokens of the latest attempts"
    );
}

async fn run(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Long enough a TTL that the task outlives the sequence (expiry is tested elsewhere).
    let policies = Policies { ttl: TtlPolicy::new(86_400, 86_400), ..policies() };
    let ttl = policies.ttl;
    let store = MemoryStore::new();
    let service = FlakyService {
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed)),
        calls: Mutex::default(),
        tokens: Mutex::default(),
    };
    let owner = client("alpha");
    let mut now = 1_000i64;
    let Submitted::Created(task) =
        submit(&store, &blobs(), &owner, json!({"seed": seed}), None, at(now), &ttl).await.unwrap()
    else {
        panic!()
    };
    let id = task.task_id.clone();
    let mut finished_results: HashMap<u32, Outcome> = HashMap::new();
    for _ in 0..40 {
        now += i64::from(rng.u8(..120));
        let current = store.get(&id).await.unwrap().unwrap();
        let attempt = if current.attempts == 0 { 1 } else { rng.u32(1..=current.attempts + 1) };
        match rng.u8(..9) {
            // A dispatch for the next attempt, a duplicate, or a stale one.
            0 | 1 => {
                hand_over(&store, &blobs(), &service, (&id, attempt), BASE, (at(now), rng.f64()), &policies)
                    .await
                    .unwrap();
            }
            // A callback with the attempt's real token: success or failure, maybe repeated or
            // contradicting what was recorded before.
            2 | 3 => {
                let token = service.tokens.lock().unwrap().get(&attempt).cloned();
                if let Some(token) = token {
                    let outcome = finished_results.get(&attempt).cloned().filter(|_| rng.bool()).unwrap_or_else(|| {
                        if rng.bool() {
                            Outcome::Succeeded { result: Content::Inline(json!({"attempt": attempt})) }
                        } else {
                            Outcome::Failed { error: format!("failed {attempt}") }
                        }
                    });
                    let answer =
                        record_outcome(&store, &blobs(), &id, (attempt, &token), outcome.clone(), at(now), &ttl)
                            .await
                            .unwrap();
                    if let CallbackResult::Recorded(recorded) = answer {
                        assert_eq!(recorded.attempts, attempt, "seed {seed}: attempt {attempt} finished another");
                        assert!(
                            finished_results.insert(attempt, outcome).is_none(),
                            "seed {seed}: attempt finished twice"
                        );
                    }
                }
            }
            // A forged callback never applies.
            4 => {
                let forged = CallbackToken::generate().unwrap();
                let outcome = Outcome::Succeeded { result: Content::Inline(json!("forged")) };
                let answer = record_outcome(&store, &blobs(), &id, (attempt, forged.expose()), outcome, at(now), &ttl)
                    .await
                    .unwrap();
                assert!(matches!(answer, CallbackResult::Unauthorized), "seed {seed}: {answer:?}");
            }
            5 => {
                let token = service.tokens.lock().unwrap().get(&attempt).cloned();
                if let Some(token) = token {
                    heartbeat(&store, &id, (attempt, &token), at(now), &policies).await.unwrap();
                }
            }
            6 => {
                sweep(&store, at(now), &policies, 10, tokio::time::Instant::now() + Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            7 => {
                cancel(&store, &owner, &id, at(now), &ttl).await.unwrap();
            }
            _ => {
                if let OwnerAction::Applied(_) = replay(&store, &owner, &id, at(now), &ttl).await.unwrap() {
                    finished_results.clear();
                }
            }
        }
        let task = store.get(&id).await.unwrap().unwrap();
        assert_legal(&task, &policies, &service.calls.lock().unwrap(), seed);
    }
}

#[tokio::test]
async fn any_sequence_of_events_leaves_the_task_legal_and_finished_at_most_once_per_series() {
    for seed in 0..400 {
        run(seed).await;
    }
}
