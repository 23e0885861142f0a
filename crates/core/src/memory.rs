//! An in-memory [`TaskStore`]: the same conditional-write rules as the DynamoDB adapter, for unit
//! tests of use cases and handlers. Storage itself is tested against the emulator, not this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::blob::Content;
use crate::completion::client_secret::SecretRecord;
use crate::dispatch::Dispatch;
use crate::error::PublishError;
use crate::error::StoreError;
use crate::lifecycle::Transition;
use crate::ports::{
    DueTask, HoldStore, IdempotencyRecord, ListPage, ListPosition, Publisher, SecretRecords, TaskStore, TaskSummary,
    WriteOutcome,
};
use crate::task::ClientId;
use crate::task::{Task, TaskId, TaskStatus};
use crate::time::Timestamp;

#[derive(Debug, Default)]
pub struct MemoryStore {
    tasks: Mutex<HashMap<TaskId, Task>>,
    payloads: Mutex<HashMap<TaskId, Content>>,
    keys: Mutex<HashMap<(String, String), IdempotencyRecord>>,
    /// Requests made, as DynamoDB would bill them: a write is counted whether it applies or its
    /// condition fails.
    reads: AtomicUsize,
    writes: AtomicUsize,
    /// Fault injection: the writes numbered in this range (from 1) fail as unavailable.
    failing: Mutex<std::ops::Range<usize>>,
    /// The fleet-wide hold on new jobs.
    hold: Mutex<Option<Timestamp>>,
    /// Clients' completion-webhook secret records.
    secret_records: Mutex<HashMap<ClientId, SecretRecord>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Item reads so far (`get`, `payload`).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Write requests so far (`insert`, `apply`, `claim`), failed conditional writes included.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes the next `count` write requests after the next `skip` fail with
    /// [`StoreError::Unavailable`] (as a throttled or unreachable DynamoDB would).
    pub fn fail_writes(&self, skip: usize, count: usize) {
        let first = self.writes() + skip + 1;
        *self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = first..first + count;
    }

    fn write(&self) -> Result<(), StoreError> {
        let number = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&number) {
            return Err(StoreError::Unavailable(format!("write {number} failed (injected)")));
        }
        Ok(())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Task>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemoryStore {
    /// `insert`, at once (for an [`Interceptor`] that stores a task itself).
    pub fn insert_now(&self, task: &Task, payload: &Content) -> Result<(), StoreError> {
        self.write()?;
        let mut tasks = self.tasks();
        if tasks.contains_key(&task.task_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.payloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(task.task_id.clone(), payload.clone());
        tasks.insert(task.task_id.clone(), task.clone());
        Ok(())
    }
}

impl TaskStore for MemoryStore {
    async fn insert(&self, task: &Task, payload: &Content, _payload_expires_at: i64) -> Result<(), StoreError> {
        self.insert_now(task, payload)
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.read();
        Ok(self.tasks().get(task_id).cloned())
    }

    async fn payload(&self, task_id: &TaskId) -> Result<Option<Content>, StoreError> {
        self.read();
        Ok(self.payloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(task_id).cloned())
    }

    async fn apply(&self, transition: &Transition) -> Result<WriteOutcome, StoreError> {
        self.write()?;
        let mut tasks = self.tasks();
        match tasks.get_mut(&transition.task_id) {
            Some(task) if transition.matches(task) => {
                *task = transition.applied_to(task);
                Ok(WriteOutcome::Applied(task.clone()))
            }
            current => Ok(WriteOutcome::Rejected(current.cloned())),
        }
    }

    async fn claim(&self, record: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.write()?;
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (record.client_id.to_string(), record.key_digest.clone());
        // A record that expired by the time of this claim counts as absent and is replaced.
        if let Some(existing) = keys.get(&key).filter(|e| e.expires_at > record.created_at.as_epoch_seconds()) {
            return Ok(Some(existing.clone()));
        }
        keys.insert(key, record.clone());
        Ok(None)
    }

    async fn count(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let tasks = self.tasks();
        let matching = tasks.values().filter(|t| {
            t.status == status
                && !t.status.is_terminal()
                && since.is_none_or(|since| t.due_at >= since)
                && until.is_none_or(|until| t.due_at <= until)
        });
        Ok(matching.count() as u64)
    }

    async fn earliest_due(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.tasks().values().filter(|t| t.status == status && !t.status.is_terminal()).map(|t| t.due_at).min())
    }

    async fn list(
        &self,
        client: &ClientId,
        status: Option<TaskStatus>,
        limit: usize,
        after: Option<&ListPosition>,
        now: Timestamp,
    ) -> Result<ListPage, StoreError> {
        let mut mine: Vec<TaskSummary> = self
            .tasks()
            .values()
            .filter(|t| &t.client_id == client && !t.is_expired(now) && status.is_none_or(|s| t.status == s))
            .map(|t| TaskSummary {
                task_id: t.task_id.clone(),
                status: t.status,
                attempts: t.attempts,
                created_at: t.created_at,
                updated_at: t.updated_at,
                expires_at: t.expires_at,
            })
            .filter(|t| after.is_none_or(|a| (t.created_at, &t.task_id) < (a.created_at, &a.task_id)))
            .collect();
        mine.sort_by(|a, b| (b.created_at, &b.task_id).cmp(&(a.created_at, &a.task_id)));
        let more = mine.len() > limit;
        mine.truncate(limit);
        let next = more
            .then(|| mine.last().map(|t| ListPosition { created_at: t.created_at, task_id: t.task_id.clone() }))
            .flatten();
        Ok(ListPage { tasks: mine, next })
    }

    async fn due(&self, status: TaskStatus, until: Timestamp, limit: usize) -> Result<Vec<DueTask>, StoreError> {
        let mut due: Vec<DueTask> = self
            .tasks()
            .values()
            .filter(|t| t.status == status && !t.status.is_terminal() && t.due_at <= until)
            .map(|t| DueTask {
                task_id: t.task_id.clone(),
                attempts: t.attempts,
                series_start: t.series_start,
                due_at: t.due_at,
            })
            .collect();
        due.sort_by_key(|t| t.due_at);
        due.truncate(limit);
        Ok(due)
    }
}

/// A call to the store, as an [`Interceptor`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Insert { task: &'a Task, payload_expires_at: i64 },
    Get(&'a TaskId),
    Payload(&'a TaskId),
    Apply(&'a Transition),
    Claim(&'a IdempotencyRecord),
}

impl Call<'_> {
    /// The task the call is about.
    pub fn task_id(&self) -> &TaskId {
        match self {
            Self::Insert { task, .. } => &task.task_id,
            Self::Get(task_id) | Self::Payload(task_id) => task_id,
            Self::Apply(transition) => &transition.task_id,
            Self::Claim(record) => &record.task_id,
        }
    }
}

/// What a test does around the in-memory store's calls about tasks.
pub trait Interceptor: Send + Sync {
    /// Before each call: an error fails the call with it (a throttled or unreachable store).
    fn before(&self, _call: Call<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    /// After a claim answered `earlier` (e.g. a concurrent repeat landing in between).
    fn after_claim(&self, _store: &MemoryStore, _record: &IdempotencyRecord, _earlier: Option<&IdempotencyRecord>) {}
}

/// The in-memory store with a test's [`Interceptor`] around its calls; the index reads (count,
/// earliest due, list, due) pass straight through.
#[derive(Debug, Default)]
pub struct Intercepted<I> {
    pub inner: MemoryStore,
    pub interceptor: I,
}

impl<I> std::ops::Deref for Intercepted<I> {
    type Target = MemoryStore;

    fn deref(&self) -> &MemoryStore {
        &self.inner
    }
}

impl<I: Interceptor> TaskStore for Intercepted<I> {
    async fn insert(&self, task: &Task, payload: &Content, payload_expires_at: i64) -> Result<(), StoreError> {
        self.interceptor.before(Call::Insert { task, payload_expires_at })?;
        self.inner.insert(task, payload, payload_expires_at).await
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.interceptor.before(Call::Get(task_id))?;
        self.inner.get(task_id).await
    }

    async fn payload(&self, task_id: &TaskId) -> Result<Option<Content>, StoreError> {
        self.interceptor.before(Call::Payload(task_id))?;
        self.inner.payload(task_id).await
    }

    async fn apply(&self, transition: &Transition) -> Result<WriteOutcome, StoreError> {
        self.interceptor.before(Call::Apply(transition))?;
        self.inner.apply(transition).await
    }

    async fn claim(&self, record: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.interceptor.before(Call::Claim(record))?;
        let earlier = self.inner.claim(record).await?;
        self.interceptor.after_claim(&self.inner, record, earlier.as_ref());
        Ok(earlier)
    }

    async fn count(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        self.inner.count(status, since, until).await
    }

    async fn earliest_due(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        self.inner.earliest_due(status).await
    }

    async fn list(
        &self,
        client: &ClientId,
        status: Option<TaskStatus>,
        limit: usize,
        after: Option<&ListPosition>,
        now: Timestamp,
    ) -> Result<ListPage, StoreError> {
        self.inner.list(client, status, limit, after, now).await
    }

    async fn due(&self, status: TaskStatus, until: Timestamp, limit: usize) -> Result<Vec<DueTask>, StoreError> {
        self.inner.due(status, until, limit).await
    }
}

/// An [`EventSink`] that keeps what it was told, for tests.
#[derive(Debug, Default)]
pub struct RecordedEvents(Mutex<Vec<crate::ports::TaskEvent>>);

impl RecordedEvents {
    pub fn events(&self) -> Vec<crate::ports::TaskEvent> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl crate::ports::EventSink for RecordedEvents {
    fn record(&self, event: crate::ports::TaskEvent) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
    }
}

impl HoldStore for MemoryStore {
    async fn held_until(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read();
        Ok(*self.hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    async fn hold_until(&self, until: Timestamp) -> Result<(), StoreError> {
        self.write()?;
        let mut hold = self.hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if hold.is_none_or(|held| held < until) {
            *hold = Some(until);
        }
        Ok(())
    }
}

impl SecretRecords for MemoryStore {
    async fn secret_record(&self, client: &ClientId) -> Result<Option<SecretRecord>, StoreError> {
        self.read();
        Ok(self.secret_records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(client).cloned())
    }

    async fn put_secret_record(
        &self,
        client: &ClientId,
        record: &SecretRecord,
        seen: Option<u32>,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut records = self.secret_records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.get(client).map(|stored| stored.current.number) != seen {
            return Ok(false);
        }
        records.insert(client.clone(), record.clone());
        Ok(true)
    }
}

/// A [`Publisher`] that keeps what it was sent, for tests; it can be told to refuse.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<Dispatch>>,
    refusing: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<Dispatch> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Makes every later send fail (or succeed again).
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }
}

impl Publisher for MemoryQueue {
    async fn publish(&self, dispatches: &[Dispatch]) -> Vec<Result<(), PublishError>> {
        if self.refusing.load(Ordering::SeqCst) {
            return vec![Err(PublishError("refused (test)".into())); dispatches.len()];
        }
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(dispatches);
        vec![Ok(()); dispatches.len()]
    }
}
