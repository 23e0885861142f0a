//! Use cases: what each function does, written against the ports. Handlers parse an event,
//! call one of these, and turn the answer into a response.

use serde_json::Value;
use thiserror::Error;

use crate::blob::{self, BlobStore, Blobs, Content};
use crate::dispatch::Timer;
use crate::error::{ExternalError, StoreError};
use crate::lifecycle::{MAX_REPLAYS, Outcome, Transition, token_of};
use crate::metrics::{self, Gauge, Unit};
use crate::policy::Policies;
use crate::ports::{DueTask, ExternalService, IdempotencyRecord, Job, ListPage, ListPosition, TaskStore, WriteOutcome};
use crate::random::Jitter;
use crate::retry::is_retryable;
use crate::task::{ClientId, Task, TaskId, TaskStatus};
use crate::time::{Clock, Timestamp};
use crate::token::{self, CallbackToken, TokenError};
use crate::trace::TraceId;
use crate::ttl::TtlPolicy;

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new task.
    Created(Task),
    /// The idempotency key was used before with the same payload: that task.
    Existing(Task),
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("this Idempotency-Key was already used with a different payload")]
    KeyReused,
    /// The key's record is alive but the task it created is gone (expired, or deleted after
    /// it expired) or may be: it is never rebuilt, so its job never runs twice.
    #[error("the task this Idempotency-Key created has expired; use a new key")]
    TaskGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a new task with its payload (in the blob store first if it is large).
async fn store_new(
    store: &impl TaskStore,
    blobs: &Blobs<impl BlobStore>,
    task: &Task,
    payload: Value,
    ttl: &TtlPolicy,
) -> Result<(), StoreError> {
    let payload = blobs.keep(payload, |_| blob::payload_key(&task.task_id)).await?;
    store.insert(task, &payload, ttl.payload_expiry(task.starts_at())).await
}

/// What a client submits: the payload, when the task should start, the trace it belongs to and
/// where its completion webhook goes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub payload: Value,
    /// `run_at` as the client asked it (checked against [`crate::validation::MAX_RUN_AT_AHEAD`]
    /// by the caller): a time not later than the submission, or none, means at once.
    pub run_at: Option<Timestamp>,
    pub trace_id: Option<TraceId>,
    /// The completion webhook's URL, as the destination rules accepted it (checked by the
    /// caller: [`crate::validation`], and its host resolved).
    pub webhook_url: Option<String>,
}

impl NewTask {
    /// A task due at once, outside any trace, with no completion webhook.
    pub fn now(payload: Value) -> Self {
        Self { payload, run_at: None, trace_id: None, webhook_url: None }
    }

    /// What an idempotency key is bound to: the payload, the `run_at` asked for (as asked, so a
    /// repeat whose `run_at` has passed meanwhile is still the same request) and the
    /// `webhook_url`, each only when present (so requests without the later ones keep the
    /// digests they always had). Not the trace: a retry may come from another span.
    fn request_digest(&self) -> String {
        let mut request = self.payload.to_string();
        if let Some(run_at) = self.run_at {
            request.push_str(&format!("\u{0}run_at={}", run_at.as_millis()));
        }
        if let Some(url) = &self.webhook_url {
            request.push_str(&format!("\u{0}webhook_url={url}"));
        }
        token::digest(&request)
    }

    /// The task this submission describes, with id `task_id`, created at `created_at`.
    fn task(&self, task_id: TaskId, client: &ClientId, created_at: Timestamp, ttl: &TtlPolicy) -> Task {
        let mut task = Task::received_as(task_id, client.clone(), created_at, 0)
            .scheduled(self.run_at)
            .traced(self.trace_id.clone())
            .notifying(self.webhook_url.clone());
        task.expires_at = ttl.new_task_expiry(task.starts_at());
        task
    }
}

/// Ingest: stores a new RECEIVED task for `client`, due at once ([`submit_task`] with a payload
/// alone).
pub async fn submit(
    store: &impl TaskStore,
    blobs: &Blobs<impl BlobStore>,
    client: &ClientId,
    payload: Value,
    idempotency_key: Option<&str>,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<Submitted, SubmitError> {
    submit_task(store, blobs, client, NewTask::now(payload), idempotency_key, now, ttl).await
}

/// Ingest: stores a new RECEIVED task for `client`, due at its `run_at` if that is later than
/// `now` (it waits RECEIVED until then), else at once. Its expiries count from when it may
/// start ([`Task::starts_at`]): it lives a task TTL from then, its payload and its idempotency
/// key's record a task TTL and a retention. With an idempotency key, the same key, payload,
/// `run_at` and `webhook_url` answer the task the first submission created (also when both
/// arrive at once), and the same key with another payload, `run_at` or `webhook_url` is refused.
///
/// The rule for a key whose task is gone: a key's record lives until
/// [`TtlPolicy::payload_expiry`] of its task's start; once that passed the key is free again
/// (the record is replaced, conditionally, so racing submits still agree on one task). While the
/// record lives, its task is answered if it is stored and unexpired; an expired task answers
/// [`SubmitError::TaskGone`]. A task not stored at all is rebuilt (exactly as the first
/// submission described it; its trace is this request's) only while it cannot have been stored
/// and deleted since: before the earliest any task of it could expire — a task TTL after its
/// start, or a retention after its creation (cancelled at once). Later it answers
/// [`SubmitError::TaskGone`]: a task is never rebuilt with its expiry passed, and a job never
/// runs twice.
pub async fn submit_task(
    store: &impl TaskStore,
    blobs: &Blobs<impl BlobStore>,
    client: &ClientId,
    new: NewTask,
    idempotency_key: Option<&str>,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<Submitted, SubmitError> {
    let task = new.task(TaskId::generate(), client, now, ttl);
    let Some(key) = idempotency_key else {
        store_new(store, blobs, &task, new.payload, ttl).await?;
        return Ok(Submitted::Created(task));
    };
    let record = IdempotencyRecord {
        client_id: client.clone(),
        key_digest: token::digest(key),
        request_digest: new.request_digest(),
        task_id: task.task_id.clone(),
        created_at: now,
        // As long as the task can live: unfinished for the task TTL, then kept for the retention.
        expires_at: ttl.payload_expiry(task.starts_at()),
    };
    let earlier = match store.claim(&record).await? {
        None => record,
        Some(earlier) if earlier.request_digest != record.request_digest => return Err(SubmitError::KeyReused),
        Some(earlier) => earlier,
    };
    let created_here = earlier.task_id == task.task_id;
    if !created_here && let Some(existing) = store.get(&earlier.task_id).await? {
        return if existing.is_expired(now) { Err(SubmitError::TaskGone) } else { Ok(Submitted::Existing(existing)) };
    }
    // The task is not stored: this submission's own, or one whose first submission claimed the
    // key and did not store it (yet, or ever). Store exactly the task the claim described, unless
    // it may have been stored, finished and deleted since.
    let rebuilt = new.task(earlier.task_id.clone(), client, earlier.created_at, ttl);
    let earliest_deletion = rebuilt
        .starts_at()
        .plus_seconds(ttl.task_ttl_seconds)
        .min(earlier.created_at.plus_seconds(ttl.result_retention_seconds))
        .as_epoch_seconds();
    if !created_here && now.as_epoch_seconds() >= earliest_deletion {
        return Err(SubmitError::TaskGone);
    }
    let answer = |task| if created_here { Submitted::Created(task) } else { Submitted::Existing(task) };
    match store_new(store, blobs, &rebuilt, new.payload, ttl).await {
        Ok(()) => Ok(answer(rebuilt)),
        // Another submission with this key stored the very same task first: answer it as it is.
        Err(StoreError::AlreadyExists) => Ok(answer(store.get(&earlier.task_id).await?.unwrap_or(rebuilt))),
        Err(e) => Err(e.into()),
    }
}

/// Status: the task if it exists, belongs to `client` and has not expired. Another client's task
/// and an expired task look exactly like a missing one.
pub async fn task_for_client(
    store: &impl TaskStore,
    client: &ClientId,
    task_id: &TaskId,
    now: Timestamp,
) -> Result<Option<Task>, StoreError> {
    Ok(store.get(task_id).await?.filter(|task| &task.client_id == client && !task.is_expired(now)))
}

/// The first pause of a waiting status read ([`task_when_finished`]) between two reads; each
/// pause is half again as long as the one before, up to [`WAIT_LONGEST_PAUSE`].
pub const WAIT_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest pause between two reads of a waiting status read: how late it may see the end.
pub const WAIT_LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Status with `?wait=`: the task as [`task_for_client`] reads it (strongly consistent), read
/// again after pauses growing from [`WAIT_FIRST_PAUSE`] to [`WAIT_LONGEST_PAUSE`] until it is
/// DONE or FAILED or `wait` has passed, whichever comes first; then as it is. A missing task
/// answers at once. Reads: 5 in the first 0.8 s, then two a second (a 20 s wait: 44 at most).
pub async fn task_when_finished(
    store: &impl TaskStore,
    client: &ClientId,
    task_id: &TaskId,
    wait: std::time::Duration,
) -> Result<Option<Task>, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = WAIT_FIRST_PAUSE;
    loop {
        let task = task_for_client(store, client, task_id, Timestamp::now()).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match task {
            Some(task) if !task.status.is_terminal() && !left.is_zero() => {}
            answer => return Ok(answer),
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 3 / 2).min(WAIT_LONGEST_PAUSE);
    }
}

/// List (owner): one page of the client's own tasks, newest first. Pages are filled from up to
/// a few store pages, so a status filter rarely answers an empty page that has a next one.
pub async fn list_tasks(
    store: &impl TaskStore,
    client: &ClientId,
    status: Option<TaskStatus>,
    limit: usize,
    after: Option<ListPosition>,
    now: Timestamp,
) -> Result<ListPage, StoreError> {
    const STORE_PAGES: usize = 5;
    let mut page = ListPage { tasks: Vec::new(), next: after };
    for _ in 0..STORE_PAGES {
        let more = store.list(client, status, limit - page.tasks.len(), page.next.as_ref(), now).await?;
        page.tasks.extend(more.tasks);
        page.next = more.next;
        if page.next.is_none() || page.tasks.len() >= limit {
            break;
        }
    }
    Ok(page)
}

/// What became of one dispatch message.
#[derive(Debug, Clone, PartialEq)]
pub enum HandOver {
    /// The external service accepted the attempt.
    Accepted { task: Task },
    /// The attempt was already started (a repeated message), or the task moved on: nothing done.
    Skipped,
    /// The task does not exist, or has expired (storage deletes expired items late): nothing to
    /// do.
    Missing,
    /// The service refused; the task waits for another attempt from `retry_at`.
    Retrying { error: ExternalError, retry_at: Timestamp },
    /// The service refused for good, or the attempts are used up: the task is FAILED.
    Failed { error: ExternalError, task: Option<Task> },
    /// The task's payload is no longer stored (it outlived its blob): the task is FAILED.
    PayloadGone { task: Option<Task> },
}

#[derive(Debug, Error)]
pub enum HandOverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// How often the caller tries a write that follows a started attempt (putting it back for a
/// retry, or failing it) when storage is unavailable, and how long it waits before the second
/// try (doubling): 3 tries within 0.6 s, far below the caller's Lambda timeout. Only if all fail
/// is the attempt left IN_PROGRESS, for the sweeper to recover at its callback deadline (a
/// redelivered message cannot: the attempt has started, so it is skipped).
pub const FOLLOW_UP_TRIES: u32 = 3;
pub const FOLLOW_UP_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Applies a write that follows a started attempt, trying again while storage is unavailable.
/// Safe to repeat: a try that applied although its answer was lost makes the next one rejected.
async fn apply_follow_up(store: &impl TaskStore, transition: &Transition) -> Result<WriteOutcome, StoreError> {
    let mut delay = FOLLOW_UP_BACKOFF;
    for _ in 1..FOLLOW_UP_TRIES {
        match store.apply(transition).await {
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            answer => return answer,
        }
    }
    store.apply(transition).await
}

/// The reason a task fails with when its payload is no longer stored.
pub const PAYLOAD_GONE: &str = "the task's payload is no longer stored";

/// Caller: starts attempt `attempt` of `task_id` (a conditional write, so a repeated message is
/// a no-op and the service is called at most once per attempt) and hands the job, with the
/// task's payload, to the external service. A refusal worth retrying puts the task back for a
/// later attempt while the series has attempts left; any other refusal, or the last, fails the
/// task with the reason. The time is read from `clock`; the random share of that retry's backoff
/// ([`crate::retry::RetryPolicy::delay`]) is drawn from `jitter`.
pub async fn hand_over(
    store: &impl TaskStore,
    blobs: &Blobs<impl BlobStore>,
    service: &impl ExternalService,
    (task_id, attempt): (&TaskId, u32),
    callback_base: &str,
    (clock, jitter): (impl Clock, impl Jitter),
    policies: &Policies,
) -> Result<HandOver, HandOverError> {
    let now = clock.now();
    let token = CallbackToken::generate()?;
    let deadline = now.plus(policies.callback_timeout);
    let start = Transition::start(task_id, attempt, token.digest(), (now, deadline), &policies.ttl);
    let task = match store.apply(&start).await? {
        WriteOutcome::Applied(task) => task,
        WriteOutcome::Rejected(None) => return Ok(HandOver::Missing),
        // The start requires an unexpired task: an expired one is as good as gone.
        WriteOutcome::Rejected(Some(current)) if current.is_expired(now) => return Ok(HandOver::Missing),
        WriteOutcome::Rejected(Some(_)) => return Ok(HandOver::Skipped),
    };
    let payload = match store.payload(task_id).await? {
        Some(stored) => blobs.load(&stored).await?,
        None => None,
    };
    let Some(payload) = payload else {
        let give_up =
            Transition::give_up(task_id, TaskStatus::InProgress, Some(attempt), PAYLOAD_GONE, now, &policies.ttl)
                .unwrap_or_else(|_| unreachable!("IN_PROGRESS → FAILED is a legal transition"));
        let task = match apply_follow_up(store, &give_up).await? {
            WriteOutcome::Applied(task) => Some(task),
            WriteOutcome::Rejected(_) => None,
        };
        return Ok(HandOver::PayloadGone { task });
    };
    let callback_url = callback_url(callback_base, task_id, attempt, &token);
    // The caller's lines about the task carry its trace from here on; the job gets a new span
    // of that trace for this attempt.
    crate::trace::note(&task);
    let traceparent = task.trace_id.as_ref().map(TraceId::child);
    let job = Job {
        task_id: task_id.as_str(),
        payload: &payload,
        callback_url: &callback_url,
        attempt,
        traceparent: traceparent.as_deref(),
    };
    let Err(error) = service.submit(&job).await else {
        return Ok(HandOver::Accepted { task });
    };
    // What follows a refusal counts from when the answer came, not from when the job left.
    let now = clock.now();
    let in_series = task.attempt_in_series();
    if is_retryable(&error) && policies.retry.allows_another(in_series) {
        let retry_after = match &error {
            ExternalError::Rejected { retry_after_seconds: Some(seconds), .. } => {
                Some(std::time::Duration::from_secs(*seconds))
            }
            _ => None,
        };
        let retry_at = now.plus(policies.retry.delay(in_series, retry_after, jitter.unit()));
        let reason = format!("attempt {attempt}: {error}");
        return Ok(match apply_follow_up(store, &Transition::retry(task_id, attempt, reason, now, retry_at)).await? {
            WriteOutcome::Applied(_) => HandOver::Retrying { error, retry_at },
            // The task moved on meanwhile (e.g. its owner cancelled it): nothing to retry.
            WriteOutcome::Rejected(_) => HandOver::Skipped,
        });
    }
    let reason = if is_retryable(&error) {
        format!("gave up after {in_series} attempts; last: {error}")
    } else {
        format!("attempt {attempt}: {error}")
    };
    let give_up = Transition::give_up(task_id, TaskStatus::InProgress, Some(attempt), reason, now, &policies.ttl)
        .unwrap_or_else(|_| unreachable!("IN_PROGRESS → FAILED is a legal transition"));
    let task = match apply_follow_up(store, &give_up).await? {
        WriteOutcome::Applied(task) => Some(task),
        WriteOutcome::Rejected(_) => None,
    };
    Ok(HandOver::Failed { error, task })
}

/// The URL the external service calls back for one attempt of `task_id`.
pub fn callback_url(base: &str, task_id: &TaskId, attempt: u32, token: &CallbackToken) -> String {
    format!("{}/callbacks/{task_id}?attempt={attempt}&token={}", base.trim_end_matches('/'), token.expose())
}

/// What a callback (or heartbeat) did.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackResult {
    /// Applied: the task as it is now.
    Recorded(Task),
    /// The same outcome was recorded before for this attempt: nothing changed.
    Repeated(Task),
    /// The attempt already ended otherwise (e.g. finished with another outcome): nothing changed.
    Conflict(Task),
    /// The attempt is no longer the task's current one (it timed out or was retried, or the task
    /// was cancelled or replayed): ignored.
    Stale,
    /// The token is not this attempt's: nothing is revealed and nothing changed.
    Unauthorized,
    /// No such task (or it expired). Callers must answer it exactly like [`Self::Unauthorized`]:
    /// whoever lacks the attempt's credentials must not learn whether the task exists.
    Missing,
}

/// Judges a rejected callback or heartbeat for `attempt` with token digest `digest`.
fn rejected(
    current: Option<Task>,
    attempt: u32,
    digest: &str,
    now: Timestamp,
    outcome: Option<&Outcome>,
) -> CallbackResult {
    let Some(current) = current.filter(|task| !task.is_expired(now)) else {
        return CallbackResult::Missing;
    };
    if token_of(&current, attempt).map(String::as_str) != Some(digest) {
        return CallbackResult::Unauthorized;
    }
    // An attempt its owner cancelled did not end by the service's report: whatever the service
    // says of it is late.
    let finished_this_attempt = current.attempts == attempt && current.status.is_terminal() && !current.cancelled;
    match outcome {
        Some(outcome) if finished_this_attempt && already_recorded(&current, outcome) => {
            CallbackResult::Repeated(current)
        }
        _ if finished_this_attempt => CallbackResult::Conflict(current),
        _ => CallbackResult::Stale,
    }
}

/// Webhook: records how attempt `attempt` ended, once, if `token` is that attempt's token. A
/// large result goes to the blob store, but only once the task shows the callback would be
/// recorded: an unauthenticated or late caller writes nothing anywhere.
pub async fn record_outcome(
    store: &impl TaskStore,
    blobs: &Blobs<impl BlobStore>,
    task_id: &TaskId,
    (attempt, token): (u32, &str),
    outcome: Outcome,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<CallbackResult, StoreError> {
    if !token::is_well_formed(token) {
        return Ok(CallbackResult::Unauthorized);
    }
    let digest = token::digest(token);
    let (outcome, upload) = match outcome {
        Outcome::Succeeded { result: Content::Inline(value) } => {
            let (result, upload) = blobs.reference(value, |digest| blob::result_key(task_id, attempt, digest));
            (Outcome::Succeeded { result }, upload)
        }
        other => (other, None),
    };
    let transition = Transition::finish(task_id, attempt, digest.clone(), outcome.clone(), now, ttl);
    if let Some((key, bytes)) = upload {
        let current = store.get(task_id).await?;
        if !current.as_ref().is_some_and(|task| transition.matches(task)) {
            return Ok(rejected(current, attempt, &digest, now, Some(&outcome)));
        }
        blobs.store.put(&key, bytes).await?;
    }
    Ok(match store.apply(&transition).await? {
        WriteOutcome::Applied(task) => CallbackResult::Recorded(task),
        WriteOutcome::Rejected(current) => rejected(current, attempt, &digest, now, Some(&outcome)),
    })
}

/// Webhook: the service is still working on attempt `attempt`; its callback is now due
/// `callback_timeout` from now.
pub async fn heartbeat(
    store: &impl TaskStore,
    task_id: &TaskId,
    (attempt, token): (u32, &str),
    now: Timestamp,
    policies: &Policies,
) -> Result<CallbackResult, StoreError> {
    if !token::is_well_formed(token) {
        return Ok(CallbackResult::Unauthorized);
    }
    let digest = token::digest(token);
    let deadline = now.plus(policies.callback_timeout);
    let beat = Transition::heartbeat(task_id, attempt, digest.clone(), (now, deadline), &policies.ttl);
    Ok(match store.apply(&beat).await? {
        WriteOutcome::Applied(task) => CallbackResult::Recorded(task),
        WriteOutcome::Rejected(current) => rejected(current, attempt, &digest, now, None),
    })
}

fn already_recorded(task: &Task, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Succeeded { result } => task.status == TaskStatus::Done && task.result.as_ref() == Some(result),
        Outcome::Failed { error } => task.status == TaskStatus::Failed && task.error.as_deref() == Some(error),
    }
}

/// What an owner's request to cancel or replay did.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerAction {
    /// Done: the task as it is now.
    Applied(Task),
    /// Already so (a repeated cancel): the task, unchanged.
    Unchanged(Task),
    /// Not possible in the task's state (cancel a finished task, replay one that has not failed).
    Refused(Task),
    /// No such task for this client (or it expired).
    Missing,
}

/// How often an owner action re-reads after losing a race before giving up the race.
const OWNER_RACES: usize = 3;

/// Cancel (owner): RECEIVED or IN_PROGRESS → FAILED, `cancelled` (error "cancelled"). A callback
/// that arrives later finds the attempt stale and changes nothing. Cancelling a cancelled task is
/// unchanged; a task that finished otherwise — also by a service reporting "cancelled" — is
/// refused.
pub async fn cancel(
    store: &impl TaskStore,
    client: &ClientId,
    task_id: &TaskId,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<OwnerAction, StoreError> {
    for _ in 0..OWNER_RACES {
        let Some(task) = task_for_client(store, client, task_id, now).await? else {
            return Ok(OwnerAction::Missing);
        };
        match task.status {
            TaskStatus::Failed if task.cancelled => return Ok(OwnerAction::Unchanged(task)),
            TaskStatus::Done | TaskStatus::Failed => return Ok(OwnerAction::Refused(task)),
            from @ (TaskStatus::Received | TaskStatus::InProgress) => {
                let cancel = Transition::cancel(task_id, from, task.attempts, now, ttl)
                    .unwrap_or_else(|_| unreachable!("RECEIVED/IN_PROGRESS → FAILED is a legal transition"));
                if let WriteOutcome::Applied(task) = store.apply(&cancel).await? {
                    return Ok(OwnerAction::Applied(task));
                }
            }
        }
    }
    task_for_client(store, client, task_id, now).await.map(|t| t.map_or(OwnerAction::Missing, OwnerAction::Refused))
}

/// Replay (owner): FAILED → RECEIVED with a fresh attempt series.
pub async fn replay(
    store: &impl TaskStore,
    client: &ClientId,
    task_id: &TaskId,
    now: Timestamp,
    ttl: &TtlPolicy,
) -> Result<OwnerAction, StoreError> {
    let Some(task) = task_for_client(store, client, task_id, now).await? else {
        return Ok(OwnerAction::Missing);
    };
    if task.status != TaskStatus::Failed || task.replays >= MAX_REPLAYS {
        return Ok(OwnerAction::Refused(task));
    }
    Ok(match store.apply(&Transition::replay(task_id, task.attempts, now, ttl)).await? {
        WriteOutcome::Applied(task) => OwnerAction::Applied(task),
        WriteOutcome::Rejected(current) => current.map_or(OwnerAction::Missing, OwnerAction::Refused),
    })
}

/// An attempt whose callback did not come by its deadline (`overdue.due_at`): put back for
/// another attempt — at once, since it has waited its whole callback timeout — or FAILED when
/// its series has none left. Guarded by the deadline, so a heartbeat that moved it wins, and by
/// the attempt, so a superseded attempt changes nothing. Answers the task if the write applied.
pub async fn time_out(
    store: &impl TaskStore,
    overdue: &DueTask,
    now: Timestamp,
    policies: &Policies,
) -> Result<Option<Task>, StoreError> {
    Ok(match store.apply(&time_out_transition(overdue, now, policies)).await? {
        WriteOutcome::Applied(task) => Some(task),
        WriteOutcome::Rejected(_) => None,
    })
}

fn time_out_transition(overdue: &DueTask, now: Timestamp, policies: &Policies) -> Transition {
    let attempt = overdue.attempts;
    let in_series = attempt.saturating_sub(overdue.series_start);
    let timeout = policies.callback_timeout.as_secs();
    let transition = if policies.retry.allows_another(in_series) {
        Transition::retry(
            &overdue.task_id,
            attempt,
            format!("attempt {attempt}: no callback within {timeout} s"),
            now,
            now,
        )
    } else {
        let reason = format!("gave up after {in_series} attempts; last: no callback within {timeout} s");
        Transition::give_up(&overdue.task_id, TaskStatus::InProgress, Some(attempt), reason, now, &policies.ttl)
            .unwrap_or_else(|_| unreachable!("IN_PROGRESS → FAILED is a legal transition"))
    };
    transition.if_due_unchanged(overdue.due_at)
}

/// The task of a deadline timer, if its attempt still runs with the timer's deadline.
pub async fn running(store: &impl TaskStore, timer: &Timer) -> Result<Option<Task>, StoreError> {
    Ok(store.get(&timer.task_id).await?.filter(|task| {
        task.status == TaskStatus::InProgress && task.attempts == timer.attempt && task.due_at == timer.due_at
    }))
}

/// A deadline timer fired: times the attempt out if it is still running with that deadline and
/// the deadline has passed. One read first (cheaper than a write whose condition fails): most
/// attempts have ended by their deadline.
pub async fn deadline(
    store: &impl TaskStore,
    timer: &Timer,
    now: Timestamp,
    policies: &Policies,
) -> Result<Option<Task>, StoreError> {
    let Some(task) = running(store, timer).await?.filter(|task| task.due_at <= now) else { return Ok(None) };
    let overdue = DueTask {
        task_id: task.task_id.clone(),
        attempts: task.attempts,
        series_start: task.series_start,
        due_at: task.due_at,
    };
    time_out(store, &overdue, now, policies).await
}

/// What one sweeper run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    /// Attempts whose callback did not come and whose timer was lost, put back for another.
    pub timed_out_retried: Vec<TaskId>,
    /// Attempts whose callback did not come and whose timer was lost, with no attempts left.
    pub timed_out_failed: Vec<Task>,
    /// Tasks whose TTL passed while they were active: now FAILED (`"expired"`).
    pub expired: Vec<Task>,
    /// RECEIVED tasks whose start message was lost, made due again (the dispatcher sends it).
    pub redispatched: usize,
    /// Tasks that could not be moved this run, and why (the next run tries again).
    pub skipped: Vec<(TaskId, StoreError)>,
    /// Whether the run stopped at its time budget before it had looked at everything.
    pub out_of_time: bool,
}

/// Sweeper, the safety net for lost messages: every active task has a timer on the jobs queue,
/// so one still due longer than the dispatch grace after its time lost its message. An attempt
/// whose deadline passed is timed out ([`time_out`]); a RECEIVED task is made due again now —
/// its lease: the next sweep leaves it alone for the grace — so that the dispatcher sends its
/// start again; a task whose TTL passed while active is FAILED (`"expired"`), so it leaves the
/// status index and the gauges. Reads only the status index's due entries, at most `limit` of
/// each status per run; a task it cannot move is skipped; it stops at `stop_at`.
pub async fn sweep(
    store: &impl TaskStore,
    now: Timestamp,
    policies: &Policies,
    limit: usize,
    stop_at: tokio::time::Instant,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let lost_before = now.minus(policies.dispatch_grace);
    for status in [TaskStatus::InProgress, TaskStatus::Received] {
        for due in store.due(status, lost_before, limit).await? {
            if tokio::time::Instant::now() >= stop_at {
                report.out_of_time = true;
                return Ok(report);
            }
            if let Err(error) = sweep_one(store, &due, status, now, policies, &mut report).await {
                report.skipped.push((due.task_id, error));
            }
        }
    }
    Ok(report)
}

/// Moves one task the sweeper found due past the grace. A task that expired meanwhile refuses
/// the write (every transition requires an unexpired task) and answers as it is: then it is
/// expired instead.
async fn sweep_one(
    store: &impl TaskStore,
    due: &DueTask,
    status: TaskStatus,
    now: Timestamp,
    policies: &Policies,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let transition = match status {
        TaskStatus::InProgress => time_out_transition(due, now, policies),
        _ => Transition::redispatch(&due.task_id, due.attempts, due.due_at, now),
    };
    match store.apply(&transition).await? {
        WriteOutcome::Applied(_) if status == TaskStatus::Received => report.redispatched += 1,
        WriteOutcome::Applied(task) if task.status == TaskStatus::Received => {
            report.timed_out_retried.push(task.task_id)
        }
        WriteOutcome::Applied(task) => report.timed_out_failed.push(task),
        WriteOutcome::Rejected(Some(current)) if current.is_expired(now) && current.status == status => {
            let expire = Transition::expire(&current.task_id, status, current.attempts, now)
                .unwrap_or_else(|_| unreachable!("RECEIVED/IN_PROGRESS → FAILED is a legal transition"));
            if let WriteOutcome::Applied(task) = store.apply(&expire.if_due_unchanged(current.due_at)).await? {
                report.expired.push(task);
            }
        }
        WriteOutcome::Rejected(_) => {}
    }
    Ok(())
}

/// Metrics cron: the fleet's gauges. Reads only the status index, which holds only active
/// tasks, so its cost does not grow with the number of stored tasks. (Finished tasks are
/// counted by the per-event metrics each function emits as a task finishes.)
pub async fn gauges(store: &impl TaskStore, now: Timestamp) -> Result<Vec<Gauge>, StoreError> {
    let mut gauges = Vec::with_capacity(4);
    for status in [TaskStatus::Received, TaskStatus::InProgress] {
        let count = store.count(status, None, None).await?;
        gauges.push(Gauge {
            name: metrics::TASKS_ACTIVE,
            status: Some(status),
            value: count as f64,
            unit: Unit::Count,
        });
    }
    let overdue = store.count(TaskStatus::InProgress, None, Some(now)).await?;
    gauges.push(Gauge { name: metrics::TASKS_OVERDUE, status: None, value: overdue as f64, unit: Unit::Count });
    let oldest = store.earliest_due(TaskStatus::Received).await?;
    let age_seconds = oldest.map_or(0.0, |due| now.millis_since(due) as f64 / 1000.0);
    gauges.push(Gauge { name: metrics::OLDEST_RECEIVED_AGE, status: None, value: age_seconds, unit: Unit::Seconds });
    Ok(gauges)
}

#[cfg(test)]
mod tests;
