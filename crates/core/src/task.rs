//! The task model: identifiers, status, and the task itself.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::blob::Content;
use crate::completion::delivery::Delivery;
use crate::error::ValidationError;
use crate::time::Timestamp;
use crate::trace::TraceId;

/// A task's identifier: a random (v4) UUID in its hyphenated lower-case form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Accepts only the canonical form the fleet hands out, so an id is a safe key and log field.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let canonical = raw.len() == 36
            && uuid::Uuid::parse_str(raw).is_ok()
            && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'));
        if canonical { Ok(Self(raw.to_owned())) } else { Err(ValidationError::InvalidTaskId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client (tenant) a task belongs to: 1–64 of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid { Ok(Self(raw.to_owned())) } else { Err(ValidationError::InvalidClientId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a task is in its life. Stored and shown as exactly these upper-case strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskStatus {
    Received,
    InProgress,
    Done,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 4] = [Self::Received, Self::InProgress, Self::Done, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "RECEIVED",
            Self::InProgress => "IN_PROGRESS",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
        }
    }

    /// DONE and FAILED are final: nothing moves a task out of them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw).ok_or(ValidationError::UnknownStatus)
    }
}

/// One step of a task's life, kept on the task so a client can see why it ended as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub status: TaskStatus,
    pub at: Timestamp,
    /// The attempt the step belongs to (0 before the first).
    pub attempt: u32,
    pub reason: Option<String>,
}

/// A task as the domain sees it: its state. The client's payload is stored apart, once (see
/// [`crate::ports::TaskStore::insert`]), so that the writes of its life do not rewrite it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: TaskId,
    pub client_id: ClientId,
    pub status: TaskStatus,
    /// The external service's result, once DONE.
    pub result: Option<Content>,
    /// Why the task FAILED.
    pub error: Option<String>,
    /// FAILED because its owner cancelled it. Its `error` then reads "cancelled", but only this
    /// tells a cancel from a service that reported a failure in those words.
    pub cancelled: bool,
    /// How many times the task was handed to the external service, over all series.
    pub attempts: u32,
    /// Attempts made before the current series began (a replay starts a new series).
    pub series_start: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// What is due when, by status: RECEIVED — when it may be dispatched; IN_PROGRESS — the
    /// callback deadline; DONE/FAILED — when it finished. The sweeper and the metrics read it.
    pub due_at: Timestamp,
    /// When storage may delete the task (epoch seconds; the DynamoDB TTL attribute).
    pub expires_at: i64,
    /// SHA-256 of the callback token of each of the latest attempts, by attempt number; the
    /// tokens themselves are never stored.
    pub callback_tokens: BTreeMap<u32, String>,
    /// The latest history entries, oldest first.
    pub history: Vec<HistoryEntry>,
    /// How many older history entries were dropped.
    pub history_omitted: u32,
    /// How often the owner replayed the task.
    pub replays: u32,
    /// When the client asked the task to start (`run_at`), if that was later than its
    /// submission: until then it waits RECEIVED, due at this time.
    pub run_at: Option<Timestamp>,
    /// The trace the task belongs to: the submitting request's, or one started for it (absent
    /// on tasks stored before trace ids were kept).
    pub trace_id: Option<TraceId>,
    /// Where to POST the task when it ends (its completion webhook), as the submitter gave it
    /// and [`crate::completion::destination`] accepted it. Never changes.
    pub webhook_url: Option<String>,
    /// The completion webhook's delivery once an attempt was made; see [`Task::delivery`].
    pub webhook: Option<Delivery>,
}

impl Task {
    /// A task freshly received from a client, with a new id.
    pub fn received(client_id: ClientId, now: Timestamp, expires_at: i64) -> Self {
        Self::received_as(TaskId::generate(), client_id, now, expires_at)
    }

    /// A task freshly received from a client, with a given id (an idempotent retry of a
    /// submission rebuilds exactly the task the first one described).
    pub fn received_as(task_id: TaskId, client_id: ClientId, now: Timestamp, expires_at: i64) -> Self {
        Self {
            task_id,
            client_id,
            status: TaskStatus::Received,
            result: None,
            error: None,
            cancelled: false,
            attempts: 0,
            series_start: 0,
            created_at: now,
            updated_at: now,
            due_at: now,
            expires_at,
            callback_tokens: BTreeMap::new(),
            history: vec![HistoryEntry { status: TaskStatus::Received, at: now, attempt: 0, reason: None }],
            history_omitted: 0,
            replays: 0,
            run_at: None,
            trace_id: None,
            webhook_url: None,
            webhook: None,
        }
    }

    /// This new task scheduled to start at `run_at`: it waits RECEIVED, due then. A time not
    /// later than its creation schedules nothing (the task is due at once).
    pub fn scheduled(mut self, run_at: Option<Timestamp>) -> Self {
        if let Some(run_at) = run_at.filter(|at| *at > self.created_at) {
            self.run_at = Some(run_at);
            self.due_at = run_at;
        }
        self
    }

    /// This new task in trace `trace_id`.
    pub fn traced(mut self, trace_id: Option<TraceId>) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// This new task with a completion webhook to `url`.
    pub fn notifying(mut self, url: Option<String>) -> Self {
        self.webhook_url = url;
        self
    }

    /// The completion webhook's delivery: none unless the task has a `webhook_url` and has
    /// ended; before its first attempt is recorded, pending with its first attempt due when the
    /// task ended.
    pub fn delivery(&self) -> Option<Delivery> {
        Delivery::of_task(self.status.is_terminal(), self.webhook_url.is_some(), self.webhook.clone(), self.due_at)
    }

    /// When the task may first start: its `run_at`, or its creation. Its expiries count from
    /// here (see [`crate::ttl::TtlPolicy`]).
    pub fn starts_at(&self) -> Timestamp {
        self.run_at.map_or(self.created_at, |run_at| run_at.max(self.created_at))
    }

    /// Drops the oldest history entries beyond [`crate::lifecycle::HISTORY_KEPT`], counting them.
    pub fn bound_history(&mut self) {
        let excess = self.history.len().saturating_sub(crate::lifecycle::HISTORY_KEPT);
        if excess > 0 {
            self.history.drain(..excess);
            self.history_omitted = self.history_omitted.saturating_add(u32::try_from(excess).unwrap_or(u32::MAX));
        }
    }

    /// The current attempt's number within its series (1-based; 0 before the first).
    pub fn attempt_in_series(&self) -> u32 {
        self.attempts.saturating_sub(self.series_start)
    }

    /// Storage deletes expired items late (DynamoDB: within days; the emulator: never),
    /// so readers treat a task past its `expires_at` as gone.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now.as_epoch_seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_stored_as_their_exact_names() {
        let names: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["RECEIVED", "IN_PROGRESS", "DONE", "FAILED"]);
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
        assert!("done".parse::<TaskStatus>().is_err());
        assert!("CANCELLED".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn only_done_and_failed_are_terminal() {
        assert!(!TaskStatus::Received.is_terminal());
        assert!(!TaskStatus::InProgress.is_terminal());
        assert!(TaskStatus::Done.is_terminal());
        assert!(TaskStatus::Failed.is_terminal());
    }

    #[test]
    fn generated_task_ids_parse_back() {
        let id = TaskId::generate();
        assert_eq!(TaskId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn task_ids_must_be_canonical_uuids() {
        for raw in [
            "",
            "not-a-uuid",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            "../../etc/passwd",
        ] {
            assert_eq!(TaskId::parse(raw), Err(ValidationError::InvalidTaskId), "{raw}");
        }
        assert!(TaskId::parse("6f9619ff-8b86-d011-b42d-00c04fc964ff").is_ok());
    }

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(ClientId::parse("acme-corp_1.eu").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse("a:b").is_err());
        assert!(ClientId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn a_task_scheduled_later_waits_due_at_its_run_at_and_an_earlier_time_schedules_nothing() {
        let now = Timestamp::from_millis(10_000);
        let client = ClientId::parse("c").unwrap();
        let later = Task::received(client.clone(), now, 99).scheduled(Some(Timestamp::from_millis(15_000)));
        assert_eq!(
            (later.status, later.due_at, later.run_at, later.starts_at()),
            (TaskStatus::Received, Timestamp::from_millis(15_000), Some(Timestamp::from_millis(15_000)), later.due_at)
        );
        for run_at in [None, Some(now), Some(Timestamp::from_millis(1))] {
            let task = Task::received(client.clone(), now, 99).scheduled(run_at);
            assert_eq!((task.due_at, task.run_at, task.starts_at()), (now, None, now), "{run_at:?}");
        }
    }

    #[test]
    fn a_task_is_expired_from_its_expiry_second_on() {
        let now = Timestamp::from_millis(10_000);
        let mut task = Task::received(ClientId::parse("c").unwrap(), now, 11);
        assert!(!task.is_expired(now));
        task.expires_at = 10;
        assert!(task.is_expired(now));
    }
}
