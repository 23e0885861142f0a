//! How a task is stored: a small *state* item that every transition rewrites, and a *payload*
//! item written once when the task is created. Payloads and results are kept as JSON text so
//! they round-trip exactly (number formats, key order, nesting deeper than DynamoDB maps allow);
//! large ones live in the blob store and the items keep their key.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskfleet_core::blob::Content;
use taskfleet_core::completion::delivery::{Delivery, DeliveryState};
use taskfleet_core::dispatch::Snapshot;
use taskfleet_core::ports::IdempotencyRecord;
use taskfleet_core::task::HistoryEntry;
use taskfleet_core::trace::TraceId;
use taskfleet_core::{ClientId, StoreError, Task, TaskId, TaskStatus, Timestamp};

use crate::table::{self, Layout};

/// A task's state item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub pk: String,
    pub task_id: String,
    pub client_id: String,
    pub status: String,
    /// The status index key, while the task is active (see [`table::STATUS_INDEX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_key: Option<String>,
    /// The client index keys (see [`table::CLIENT_INDEX`]): written once, never changed.
    pub client_key: String,
    pub created_key: String,
    /// An inline result, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The blob store key of a large result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set (true) only while the task is FAILED by its owner's cancel.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cancelled: bool,
    pub attempts: u32,
    #[serde(default)]
    pub series_start: u32,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    /// Milliseconds since the epoch (see `Task::due_at`).
    pub due_at: i64,
    /// Seconds since the epoch (the TTL attribute).
    pub expires_at: i64,
    /// Callback-token digests of the latest attempts, by attempt number (a map, so that a start
    /// adds one and forgets the oldest in the same write).
    #[serde(default)]
    pub tokens: HashMap<String, String>,
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_omitted: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
    /// Milliseconds since the epoch: when the client scheduled the task to start (absent when it
    /// was due at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<i64>,
    /// The task's trace id, 32 hex digits (absent on items written before trace ids were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The completion webhook's URL (written once, with the task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Its delivery, once an attempt was made: state, attempts made, next attempt (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_next_at: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One history entry as stored (a map in the `history` list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub status: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&HistoryEntry> for HistoryRecord {
    fn from(entry: &HistoryEntry) -> Self {
        Self {
            status: entry.status.as_str().to_owned(),
            at: entry.at.as_millis(),
            attempt: entry.attempt,
            reason: entry.reason.clone(),
        }
    }
}

impl TaskRecord {
    /// The state item of `task`, its index keys placed by `layout`.
    pub fn of(task: &Task, layout: &Layout) -> Self {
        let task_id = task.task_id.as_str();
        let (result, result_key) = match &task.result {
            Some(Content::Inline(value)) => (Some(value.to_string()), None),
            Some(Content::Stored { key }) => (None, Some(key.clone())),
            None => (None, None),
        };
        Self {
            pk: table::task_key(task_id),
            task_id: task_id.to_owned(),
            client_id: task.client_id.to_string(),
            status: task.status.as_str().to_owned(),
            status_key: layout.status_key(task_id, task.status),
            client_key: table::client_key(task.client_id.as_str(), task_id),
            created_key: table::created_key(task.created_at.as_millis(), task_id),
            result,
            result_key,
            error: task.error.clone(),
            cancelled: task.cancelled,
            attempts: task.attempts,
            series_start: task.series_start,
            created_at: task.created_at.as_millis(),
            updated_at: task.updated_at.as_millis(),
            due_at: task.due_at.as_millis(),
            expires_at: task.expires_at,
            tokens: task
                .callback_tokens
                .iter()
                .map(|(attempt, digest)| (attempt.to_string(), digest.clone()))
                .collect(),
            history: task.history.iter().map(HistoryRecord::from).collect(),
            history_omitted: task.history_omitted,
            replays: task.replays,
            run_at: task.run_at.map(Timestamp::as_millis),
            trace_id: task.trace_id.as_ref().map(|trace| trace.as_str().to_owned()),
            webhook_url: task.webhook_url.clone(),
            webhook_state: task.webhook.as_ref().map(|d| d.state.as_str().to_owned()),
            webhook_attempts: task.webhook.as_ref().map(|d| d.attempts),
            webhook_next_at: task.webhook.as_ref().and_then(|d| d.next_at).map(Timestamp::as_millis),
        }
    }
}

impl TryFrom<TaskRecord> for Task {
    type Error = StoreError;

    fn try_from(record: TaskRecord) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("task item {}: {what}", record.pk));
        let result = match (&record.result, &record.result_key) {
            (Some(text), _) => Some(Content::Inline(serde_json::from_str(text).map_err(|_| corrupt("bad result"))?)),
            (None, Some(key)) => Some(Content::Stored { key: key.clone() }),
            (None, None) => None,
        };
        let callback_tokens = record
            .tokens
            .iter()
            .map(|(attempt, digest)| Ok((attempt.parse().map_err(|_| corrupt("bad token attempt"))?, digest.clone())))
            .collect::<Result<BTreeMap<u32, String>, StoreError>>()?;
        let mut task = Task {
            task_id: TaskId::parse(&record.task_id).map_err(|_| corrupt("bad task_id"))?,
            client_id: ClientId::parse(&record.client_id).map_err(|_| corrupt("bad client_id"))?,
            status: record.status.parse::<TaskStatus>().map_err(|_| corrupt("bad status"))?,
            result,
            error: record.error.clone(),
            cancelled: record.cancelled,
            attempts: record.attempts,
            series_start: record.series_start,
            created_at: Timestamp::from_millis(record.created_at),
            updated_at: Timestamp::from_millis(record.updated_at),
            due_at: Timestamp::from_millis(record.due_at),
            expires_at: record.expires_at,
            callback_tokens,
            history: record
                .history
                .iter()
                .map(|entry| {
                    Ok(HistoryEntry {
                        status: entry.status.parse().map_err(|_| corrupt("bad history status"))?,
                        at: Timestamp::from_millis(entry.at),
                        attempt: entry.attempt,
                        reason: entry.reason.clone(),
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            history_omitted: record.history_omitted,
            replays: record.replays,
            run_at: record.run_at.map(Timestamp::from_millis),
            trace_id: record
                .trace_id
                .as_deref()
                .map(|trace| TraceId::parse(trace).ok_or_else(|| corrupt("bad trace_id")))
                .transpose()?,
            webhook_url: record.webhook_url.clone(),
            webhook: stored_delivery(record.webhook_state.as_deref(), record.webhook_attempts, record.webhook_next_at)
                .map_err(|()| corrupt("bad webhook_state"))?,
        };
        // A write appends before a follow-up write trims (see the store): read as trimmed.
        task.bound_history();
        Ok(task)
    }
}

/// The delivery stored in an item's `webhook_*` attributes (none before the first attempt).
fn stored_delivery(state: Option<&str>, attempts: Option<u32>, next_at: Option<i64>) -> Result<Option<Delivery>, ()> {
    let Some(state) = state else { return Ok(None) };
    let state = DeliveryState::parse(state).ok_or(())?;
    Ok(Some(Delivery { state, attempts: attempts.unwrap_or(0), next_at: next_at.map(Timestamp::from_millis) }))
}

/// A task's payload item: written once, with the task; never updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadRecord {
    pub pk: String,
    /// The payload as JSON text, when it is inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The blob store key of a large payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_key: Option<String>,
    /// Seconds since the epoch (the TTL attribute).
    pub expires_at: i64,
}

impl PayloadRecord {
    pub fn of(task_id: &TaskId, payload: &Content, expires_at: i64) -> Self {
        let (inline, key) = match payload {
            Content::Inline(value) => (Some(value.to_string()), None),
            Content::Stored { key } => (None, Some(key.clone())),
        };
        Self { pk: table::payload_item_key(task_id.as_str()), payload: inline, payload_key: key, expires_at }
    }

    pub fn into_content(self) -> Result<Content, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("payload item {}: {what}", self.pk));
        match (&self.payload, &self.payload_key) {
            (Some(text), _) => {
                serde_json::from_str::<Value>(text).map(Content::Inline).map_err(|_| corrupt("bad payload"))
            }
            (None, Some(key)) => Ok(Content::Stored { key: key.clone() }),
            (None, None) => Err(corrupt("neither a payload nor its key")),
        }
    }
}

/// Reads a task from an item (a GetItem answer, an UpdateItem's returned attributes).
pub fn task_from_item<I>(item: I) -> Result<Task, StoreError>
where
    I: Into<serde_dynamo::Item>,
{
    let record: TaskRecord =
        serde_dynamo::from_item(item.into()).map_err(|e| StoreError::Corrupt(format!("task item: {e}")))?;
    Task::try_from(record)
}

#[derive(Deserialize)]
struct SnapshotFields {
    pk: String,
    status: Option<String>,
    attempts: Option<u32>,
    due_at: Option<i64>,
    client_id: Option<String>,
    webhook_url: Option<String>,
    webhook_state: Option<String>,
    webhook_attempts: Option<u32>,
    webhook_next_at: Option<i64>,
}

/// The task id and snapshot of a stream image. `Ok(None)` when the image is empty or is not a
/// task item; an error when it claims to be a task but cannot be read.
pub fn snapshot_from_image(image: &serde_dynamo::Item) -> Result<Option<(TaskId, Snapshot)>, StoreError> {
    if image.is_empty() {
        return Ok(None);
    }
    let fields: SnapshotFields =
        serde_dynamo::from_item(image.clone()).map_err(|e| StoreError::Corrupt(format!("stream image: {e}")))?;
    let Some(task_id) = table::task_id_of(&fields.pk) else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("stream image of {}: {what}", fields.pk));
    let task_id = TaskId::parse(task_id).map_err(|_| corrupt("bad task id"))?;
    let status = fields
        .status
        .as_deref()
        .ok_or_else(|| corrupt("no status"))?
        .parse::<TaskStatus>()
        .map_err(|_| corrupt("bad status"))?;
    let attempts = fields.attempts.ok_or_else(|| corrupt("no attempts"))?;
    let due_at = Timestamp::from_millis(fields.due_at.ok_or_else(|| corrupt("no due_at"))?);
    let client_id = fields.client_id.ok_or_else(|| corrupt("no client_id"))?;
    let stored = stored_delivery(fields.webhook_state.as_deref(), fields.webhook_attempts, fields.webhook_next_at)
        .map_err(|()| corrupt("bad webhook_state"))?;
    let delivery = Delivery::of_task(status.is_terminal(), fields.webhook_url.is_some(), stored, due_at)
        .and_then(|delivery| delivery.next_attempt());
    Ok(Some((task_id, Snapshot { status, attempts, due_at, client_id, delivery })))
}

/// An idempotency record as stored. Its owner is not called `client_id` (nor its time
/// `created_at`), so it stays out of the client index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyItem {
    pub pk: String,
    pub owner: String,
    pub request_digest: String,
    pub task_id: String,
    /// Milliseconds since the epoch.
    pub claimed_at: i64,
    /// Seconds since the epoch (the TTL attribute).
    pub expires_at: i64,
}

impl From<&IdempotencyRecord> for IdempotencyItem {
    fn from(record: &IdempotencyRecord) -> Self {
        Self {
            pk: table::idempotency_key(record.client_id.as_str(), &record.key_digest),
            owner: record.client_id.to_string(),
            request_digest: record.request_digest.clone(),
            task_id: record.task_id.to_string(),
            claimed_at: record.created_at.as_millis(),
            expires_at: record.expires_at,
        }
    }
}

impl IdempotencyItem {
    pub fn into_record(self, key_digest: &str) -> Result<IdempotencyRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("idempotency item: {what}"));
        Ok(IdempotencyRecord {
            client_id: ClientId::parse(&self.owner).map_err(|_| corrupt("bad owner"))?,
            key_digest: key_digest.to_owned(),
            request_digest: self.request_digest,
            task_id: TaskId::parse(&self.task_id).map_err(|_| corrupt("bad task_id"))?,
            created_at: Timestamp::from_millis(self.claimed_at),
            expires_at: self.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task() -> Task {
        let mut task = Task::received(ClientId::parse("alpha").unwrap(), Timestamp::from_millis(1_234), 99);
        task.result = Some(Content::Inline(json!({"b": 1.50, "a": [1, {"x": null}]})));
        task.callback_tokens = [(7, "d7".to_owned()), (8, "d8".to_owned())].into();
        task
    }

    fn record(task: &Task) -> TaskRecord {
        TaskRecord::of(task, &Layout::default())
    }

    #[test]
    fn a_task_round_trips_through_its_item() {
        let task = task();
        let item: serde_dynamo::Item = serde_dynamo::to_item(record(&task)).unwrap();
        assert_eq!(task_from_item(item).unwrap(), task);
        let mut stored = task.clone();
        stored.result = Some(Content::Stored { key: "results/x/1/abc".into() });
        let item: serde_dynamo::Item = serde_dynamo::to_item(record(&stored)).unwrap();
        assert_eq!(task_from_item(item).unwrap(), stored);
        let cancelled = Task { status: TaskStatus::Failed, cancelled: true, ..task };
        let item: HashMap<String, serde_dynamo::AttributeValue> = serde_dynamo::to_item(record(&cancelled)).unwrap();
        assert_eq!(item["cancelled"], serde_dynamo::AttributeValue::Bool(true));
        assert_eq!(task_from_item(item).unwrap(), cancelled);
    }

    #[test]
    fn a_scheduled_traced_task_round_trips_and_an_item_without_either_reads_as_neither() {
        let mut task = task();
        task = task.scheduled(Some(Timestamp::from_millis(9_000))).traced(Some(TraceId::generate()));
        let item: HashMap<String, serde_dynamo::AttributeValue> = serde_dynamo::to_item(record(&task)).unwrap();
        assert_eq!(item["run_at"], serde_dynamo::AttributeValue::N("9000".into()));
        assert_eq!(
            item["trace_id"],
            serde_dynamo::AttributeValue::S(task.trace_id.as_ref().unwrap().as_str().to_owned())
        );
        assert_eq!(task_from_item(item.clone()).unwrap(), task);

        // An item written before either was kept.
        let mut old = item;
        old.remove("run_at");
        old.remove("trace_id");
        let read = task_from_item(old).unwrap();
        assert_eq!((read.run_at, read.trace_id), (None, None));

        let mut broken = record(&task);
        broken.trace_id = Some("not-a-trace".into());
        let item: serde_dynamo::Item = serde_dynamo::to_item(broken).unwrap();
        assert!(matches!(task_from_item(item), Err(StoreError::Corrupt(m)) if m.contains("trace_id")));
    }

    #[test]
    fn a_tasks_webhook_and_its_delivery_round_trip_and_an_ended_task_snapshots_its_next_attempt() {
        use taskfleet_core::completion::delivery::{Delivery, DeliveryState};
        let mut task = task().notifying(Some("https://hooks.example.com/t".into()));
        task.status = TaskStatus::Done;
        let item: HashMap<String, serde_dynamo::AttributeValue> = serde_dynamo::to_item(record(&task)).unwrap();
        assert!(!item.contains_key("webhook_state"), "nothing is written before the first attempt");
        assert_eq!(task_from_item(item.clone()).unwrap(), task);
        let (_, snapshot) = snapshot_from_image(&item.into()).unwrap().unwrap();
        assert_eq!(snapshot.delivery, Some((1, task.due_at)), "its first attempt, due when it ended");

        let retrying =
            Delivery { state: DeliveryState::Pending, attempts: 2, next_at: Some(Timestamp::from_millis(9_000)) };
        task.webhook = Some(retrying);
        let item: HashMap<String, serde_dynamo::AttributeValue> = serde_dynamo::to_item(record(&task)).unwrap();
        assert_eq!(item["webhook_state"], serde_dynamo::AttributeValue::S("pending".into()));
        assert_eq!(task_from_item(item.clone()).unwrap(), task);
        let (_, snapshot) = snapshot_from_image(&item.into()).unwrap().unwrap();
        assert_eq!(snapshot.delivery, Some((3, Timestamp::from_millis(9_000))));

        task.webhook = Some(Delivery { state: DeliveryState::Delivered, attempts: 3, next_at: None });
        let item: HashMap<String, serde_dynamo::AttributeValue> = serde_dynamo::to_item(record(&task)).unwrap();
        assert_eq!(task_from_item(item.clone()).unwrap(), task);
        assert_eq!(snapshot_from_image(&item.into()).unwrap().unwrap().1.delivery, None);

        let mut broken = record(&task);
        broken.webhook_state = Some("lost".into());
        let item: serde_dynamo::Item = serde_dynamo::to_item(broken).unwrap();
        assert!(matches!(task_from_item(item), Err(StoreError::Corrupt(m)) if m.contains("webhook")));
    }

    #[test]
    fn a_payload_round_trips_through_its_item_inline_or_by_key() {
        let id = TaskId::generate();
        for payload in [Content::Inline(json!({"z": 1.50, "a": [true]})), Content::Stored { key: "payloads/x".into() }]
        {
            let item: serde_dynamo::Item = serde_dynamo::to_item(PayloadRecord::of(&id, &payload, 5)).unwrap();
            let back: PayloadRecord = serde_dynamo::from_item(item).unwrap();
            assert_eq!(back.into_content().unwrap(), payload);
        }
    }

    #[test]
    fn only_an_active_task_carries_a_status_index_key() {
        let mut task = task();
        assert!(record(&task).status_key.is_some_and(|key| key.starts_with("RECEIVED#")));
        task.status = TaskStatus::Done;
        assert_eq!(record(&task).status_key, None);
    }

    #[test]
    fn the_item_keeps_status_as_text_and_expiry_as_a_number() {
        let item: std::collections::HashMap<String, serde_dynamo::AttributeValue> =
            serde_dynamo::to_item(record(&task())).unwrap();
        assert_eq!(item["status"], serde_dynamo::AttributeValue::S("RECEIVED".into()));
        assert_eq!(item["expires_at"], serde_dynamo::AttributeValue::N("99".into()));
        assert_eq!(item["updated_at"], serde_dynamo::AttributeValue::N("1234".into()));
        assert!(!item.contains_key("error") && !item.contains_key("cancelled"), "absent fields are not stored");
    }

    #[test]
    fn a_corrupt_item_is_an_error_not_a_panic() {
        let mut broken = record(&task());
        broken.status = "PAUSED".into();
        let item: serde_dynamo::Item = serde_dynamo::to_item(broken).unwrap();
        assert!(matches!(task_from_item(item), Err(StoreError::Corrupt(m)) if m.contains("bad status")));
    }

    #[test]
    fn a_stream_image_gives_the_snapshot_of_a_task_and_nothing_for_other_items() {
        let task = task();
        let image: serde_dynamo::Item = serde_dynamo::to_item(record(&task)).unwrap();
        let (id, snapshot) = snapshot_from_image(&image).unwrap().unwrap();
        assert_eq!(id, task.task_id);
        assert_eq!(
            snapshot,
            Snapshot {
                status: TaskStatus::Received,
                attempts: 0,
                due_at: task.due_at,
                client_id: task.client_id.to_string(),
                delivery: None,
            }
        );

        let other: serde_dynamo::Item = serde_dynamo::to_item(json!({"pk": "IDEMPOTENCY#k"})).unwrap();
        assert_eq!(snapshot_from_image(&other).unwrap(), None);
        assert_eq!(
            snapshot_from_image(&serde_dynamo::Item::from(std::collections::HashMap::<
                String,
                serde_dynamo::AttributeValue,
            >::new()))
            .unwrap(),
            None
        );

        let broken: serde_dynamo::Item = serde_dynamo::to_item(
            json!({"pk": table::task_key(task.task_id.as_str()), "status": "??", "attempts": 0, "due_at": 1}),
        )
        .unwrap();
        assert!(snapshot_from_image(&broken).is_err());
    }
}
