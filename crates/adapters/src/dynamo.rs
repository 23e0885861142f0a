//! The DynamoDB task store. Every state change is one conditional UpdateItem of the task's small
//! state item, its condition and its update built from the transition's own guards and writes
//! (the same lists the in-memory store applies), so late or repeated events cannot move a task
//! backwards or finish it twice. The payload is written once, to an item of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
};
use futures_util::future::try_join_all;
use taskfleet_core::blob::Content;
use taskfleet_core::completion::delivery::DeliveryState;
use taskfleet_core::lifecycle::{Guard, HISTORY_KEPT, Transition, Write, forgotten_token};
use taskfleet_core::ports::{
    DueTask, HoldStore, IdempotencyRecord, ListPage, ListPosition, TaskStore, TaskSummary, WriteOutcome,
};
use taskfleet_core::{ClientId, StoreError, Task, TaskId, TaskStatus, Timestamp};

use crate::config::{self, ConfigError};
use crate::item::{self, unavailable};
use crate::record::{HistoryRecord, IdempotencyItem, PayloadRecord, TaskRecord, task_from_item};
use crate::table::{self, Layout};

/// How long a store trusts the number of status index shards it read from the table.
const SHARDS_CACHE: Duration = Duration::from_secs(60);
/// How often a listing asks again for the items DynamoDB left unprocessed.
const BATCH_GET_ROUNDS: usize = 5;

#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    layout: Layout,
    /// The status index shards readers must read, and when that was read.
    read_shards: Mutex<Option<(Instant, u32)>>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::with_layout(client, table, Layout::default())
    }

    pub fn with_layout(client: Client, table: impl Into<String>, layout: Layout) -> Self {
        Self { client, table: table.into(), layout, read_shards: Mutex::new(None) }
    }

    /// The store of the table named by `TASKS_TABLE`, with `STATUS_INDEX_SHARDS` shards.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_layout(Client::new(sdk), config::required(config::TASKS_TABLE)?, config::layout()?))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(pk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([(table::PK.to_owned(), AttributeValue::S(pk))])
    }
}

/// The completion webhook's delivery attributes (see `record::TaskRecord`).
const WEBHOOK_STATE: &str = "webhook_state";
const WEBHOOK_ATTEMPTS: &str = "webhook_attempts";
const WEBHOOK_NEXT_AT: &str = "webhook_next_at";

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The UpdateItem parts of a conditional write: SET/REMOVE/ADD clauses, condition, names, values.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    /// `#attribute` for `attribute`, declared once.
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The path of attempt `attempt`'s token digest in the `tokens` map.
    fn token_path(&mut self, attempt: u32) -> String {
        let map = self.name("tokens");
        let key = format!("#attempt{attempt}");
        self.names.insert(key.clone(), attempt.to_string());
        format!("{map}.{key}")
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) -> String {
        self.values.insert(placeholder.to_owned(), value);
        placeholder.to_owned()
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let name = self.name(attribute);
        let value = self.value(&format!(":{attribute}"), value);
        self.set.push(format!("{name} = {value}"));
    }

    fn remove(&mut self, attribute: &str) {
        let name = self.name(attribute);
        self.remove.push(name);
    }

    fn require(&mut self, attribute: &str, placeholder: &str, value: AttributeValue) {
        let name = self.name(attribute);
        let value = self.value(placeholder, value);
        self.conditions.push(format!("{name} = {value}"));
    }

    /// The condition of one guard.
    fn guard(&mut self, guard: &Guard) {
        match guard {
            Guard::Unexpired(now) => {
                let name = self.name(table::EXPIRES_AT);
                let now = self.value(":now_seconds", number(now.as_epoch_seconds()));
                self.conditions.push(format!("{name} > {now}"));
            }
            Guard::Expired(now) => {
                let name = self.name(table::EXPIRES_AT);
                let now = self.value(":now_seconds", number(now.as_epoch_seconds()));
                self.conditions.push(format!("{name} <= {now}"));
            }
            Guard::Status(status) => self.require(table::STATUS, ":from", text(status.as_str())),
            Guard::Attempts(attempts) => self.require("attempts", ":expected_attempts", number(attempts)),
            Guard::Token { attempt, digest } => {
                let path = self.token_path(*attempt);
                let digest = self.value(":expected_token", text(digest.as_str()));
                self.conditions.push(format!("{path} = {digest}"));
            }
            Guard::DueAt(due) => self.require(table::DUE_AT, ":expected_due", number(due.as_millis())),
            Guard::ReplaysBelow(limit) => {
                let name = self.name("replays");
                let limit = self.value(":replay_limit", number(limit));
                self.conditions.push(format!("(attribute_not_exists({name}) OR {name} < {limit})"));
            }
            Guard::DeliveryPending { made } => {
                let state = self.name(WEBHOOK_STATE);
                let attempts = self.name(WEBHOOK_ATTEMPTS);
                let pending = self.value(":pending", text(DeliveryState::Pending.as_str()));
                let made_value = self.value(":webhook_made", number(made));
                let recorded = format!("({state} = {pending} AND {attempts} = {made_value})");
                self.conditions.push(if *made == 0 {
                    format!("(attribute_not_exists({state}) OR {recorded})")
                } else {
                    recorded
                });
            }
        }
    }

    /// The update clauses of one write.
    fn write(&mut self, write: &Write, task_id: &TaskId, layout: &Layout) -> Result<(), StoreError> {
        match write {
            Write::Status(status) => {
                self.set(table::STATUS, text(status.as_str()));
                match layout.status_key(task_id.as_str(), *status) {
                    Some(key) => self.set(table::STATUS_KEY, text(key)),
                    None => self.remove(table::STATUS_KEY),
                }
            }
            Write::UpdatedAt(at) => self.set(table::UPDATED_AT, number(at.as_millis())),
            Write::DueAt(due) => self.set(table::DUE_AT, number(due.as_millis())),
            Write::Attempts(attempts) => self.set("attempts", number(attempts)),
            Write::Token { attempt, digest } => {
                let path = self.token_path(*attempt);
                let digest = self.value(":token", text(digest.as_str()));
                self.set.push(format!("{path} = {digest}"));
                if let Some(forgotten) = forgotten_token(*attempt) {
                    let path = self.token_path(forgotten);
                    self.remove.push(path);
                }
            }
            Write::SeriesStart(start) => self.set("series_start", number(start)),
            Write::Result(Content::Inline(value)) => self.set("result", text(value.to_string())),
            Write::Result(Content::Stored { key }) => self.set("result_key", text(key.as_str())),
            Write::Error(error) => self.set("error", text(error.as_str())),
            Write::ClearError => self.remove("error"),
            Write::Cancelled(true) => self.set("cancelled", AttributeValue::Bool(true)),
            Write::Cancelled(false) => self.remove("cancelled"),
            Write::ExpiresAt(expires_at) => self.set(table::EXPIRES_AT, number(expires_at)),
            Write::History(entry) => {
                let entry = serde_dynamo::to_attribute_value(HistoryRecord::from(entry))
                    .map_err(|e| StoreError::Corrupt(format!("cannot encode history: {e}")))?;
                let name = self.name("history");
                let empty = self.value(":empty", AttributeValue::L(Vec::new()));
                let entry = self.value(":history", AttributeValue::L(vec![entry]));
                self.set.push(format!("{name} = list_append(if_not_exists({name}, {empty}), {entry})"));
            }
            Write::CountReplay => {
                let name = self.name("replays");
                let one = self.value(":one", number(1));
                self.add.push(format!("{name} {one}"));
            }
            Write::Delivery(delivery) => {
                self.set(WEBHOOK_STATE, text(delivery.state.as_str()));
                self.set(WEBHOOK_ATTEMPTS, number(delivery.attempts));
                match delivery.next_at {
                    Some(next) => self.set(WEBHOOK_NEXT_AT, number(next.as_millis())),
                    None => self.remove(WEBHOOK_NEXT_AT),
                }
            }
            Write::ClearDelivery => {
                for attribute in [WEBHOOK_STATE, WEBHOOK_ATTEMPTS, WEBHOOK_NEXT_AT] {
                    self.remove(attribute);
                }
            }
        }
        Ok(())
    }

    fn of(transition: &Transition, layout: &Layout) -> Result<Self, StoreError> {
        let mut update = Update::default();
        for guard in transition.guards() {
            update.guard(&guard);
        }
        for write in transition.writes() {
            update.write(&write, &transition.task_id, layout)?;
        }
        Ok(update)
    }

    fn expression(&self) -> String {
        let mut expression = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        if !self.add.is_empty() {
            expression.push_str(&format!(" ADD {}", self.add.join(", ")));
        }
        expression
    }
}

impl DynamoStore {
    /// The item with partition key `pk`, read strongly consistent.
    async fn read_item(&self, pk: String) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(answer.item)
    }

    /// Runs one conditional UpdateItem; a failed condition answers the task as it is.
    async fn write(&self, task_id: &TaskId, update: Update) -> Result<WriteOutcome, StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(table::task_key(task_id.as_str()))))
            .update_expression(update.expression())
            .condition_expression(update.conditions.join(" AND "))
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match written {
            Ok(answer) => {
                let item = answer.attributes.unwrap_or_default();
                let history = match item.get("history") {
                    Some(AttributeValue::L(entries)) => entries.len(),
                    _ => 0,
                };
                if history > HISTORY_KEPT {
                    self.trim_history(task_id, history).await;
                }
                Ok(WriteOutcome::Applied(task_from_item(item)?))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let current = match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                let current = match current {
                    Some(item) => Some(task_from_item(item)?),
                    // DynamoDB returns no item when there is none; read to be sure of "missing".
                    None => self.get(task_id).await?,
                };
                Ok(WriteOutcome::Rejected(current))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Drops the oldest history entries of a task whose history just grew past the kept
    /// number, counting them. An update cannot both append to a list and remove from its head,
    /// so this is a second write, made only by the rare task with that long a life; it applies
    /// only if the history is still `length` long. If it does not apply, the next write trims;
    /// readers see the history trimmed either way.
    async fn trim_history(&self, task_id: &TaskId, length: usize) {
        let excess = length - HISTORY_KEPT;
        let removed: Vec<String> = (0..excess).map(|index| format!("#history[{index}]")).collect();
        let trimmed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(table::task_key(task_id.as_str()))))
            .update_expression(format!(
                "REMOVE {} SET #omitted = if_not_exists(#omitted, :zero) + :excess",
                removed.join(", ")
            ))
            .condition_expression("size(#history) = :length")
            .expression_attribute_names("#history", "history")
            .expression_attribute_names("#omitted", "history_omitted")
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":excess", number(excess))
            .expression_attribute_values(":length", number(length))
            .send()
            .await;
        if let Err(error) = trimmed {
            let conditional =
                matches!(&error, SdkError::ServiceError(e) if e.err().is_conditional_check_failed_exception());
            if !conditional {
                tracing::warn!(%task_id, error = %unavailable(error), "history not trimmed; the next write trims it");
            }
        }
    }

    /// How many status index shards to read: this store's own setting, or more if a store was
    /// ever configured with more. The table remembers the most any store (writer or reader) was
    /// configured with, so lowering `STATUS_INDEX_SHARDS` strands no task in a shard that is no
    /// longer written, and raising it lets readers find new shards before any task lands there.
    async fn read_shards(&self) -> Result<u32, StoreError> {
        let cached = *self.read_shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, shards)) = cached.filter(|(read_at, _)| read_at.elapsed() < SHARDS_CACHE) {
            return Ok(shards);
        }
        let own = self.layout.status_shards;
        let stored = self
            .read_item(table::STATUS_SHARDS_ITEM.to_owned())
            .await?
            .and_then(|item| match item.get("shards") {
                Some(AttributeValue::N(n)) => n.parse::<u32>().ok(),
                _ => None,
            })
            .unwrap_or(0);
        if own > stored {
            let raised = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(table::STATUS_SHARDS_ITEM.to_owned())))
                .update_expression("SET #shards = :shards")
                .condition_expression("attribute_not_exists(#shards) OR #shards < :shards")
                .expression_attribute_names("#shards", "shards")
                .expression_attribute_values(":shards", number(own))
                .send()
                .await;
            match raised {
                Ok(_) => {}
                Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        let shards = own.max(stored).min(table::MAX_STATUS_SHARDS);
        *self.read_shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), shards));
        Ok(shards)
    }

    /// A query of one shard of the status index for `status` with `due_at` in the given range.
    fn status_query(
        &self,
        status: TaskStatus,
        shard: u32,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> QueryFluentBuilder {
        let mut names = HashMap::from([("#key".to_owned(), table::STATUS_KEY.to_owned())]);
        let mut values = HashMap::from([(":key".to_owned(), text(table::status_shard_key(status, shard)))]);
        let mut condition = "#key = :key".to_owned();
        let range = match (since, until) {
            (Some(_), Some(_)) => Some("#due BETWEEN :since AND :until"),
            (Some(_), None) => Some("#due >= :since"),
            (None, Some(_)) => Some("#due <= :until"),
            (None, None) => None,
        };
        if let Some(range) = range {
            condition.push_str(" AND ");
            condition.push_str(range);
            names.insert("#due".to_owned(), table::DUE_AT.to_owned());
        }
        if let Some(since) = since {
            values.insert(":since".to_owned(), number(since.as_millis()));
        }
        if let Some(until) = until {
            values.insert(":until".to_owned(), number(until.as_millis()));
        }
        self.client
            .query()
            .table_name(&self.table)
            .index_name(table::STATUS_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
    }

    async fn count_shard(
        &self,
        status: TaskStatus,
        shard: u32,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .status_query(status, shard, since, until)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            total += u64::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    async fn earliest_in_shard(&self, status: TaskStatus, shard: u32) -> Result<Option<Timestamp>, StoreError> {
        let page = self
            .status_query(status, shard, None, None)
            .scan_index_forward(true)
            .limit(1)
            .send()
            .await
            .map_err(unavailable)?;
        match page.items.unwrap_or_default().first() {
            Some(item) => Ok(Some(Timestamp::from_millis(number_of(item, table::DUE_AT)?))),
            None => Ok(None),
        }
    }

    async fn due_in_shard(
        &self,
        status: TaskStatus,
        shard: u32,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueTask>, StoreError> {
        let mut due = Vec::new();
        let mut start = None;
        while due.len() < limit {
            let page = self
                .status_query(status, shard, None, Some(until))
                .scan_index_forward(true)
                .limit(i32::try_from(limit - due.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                due.push(DueTask {
                    task_id: task_id_in(&item, "status index")?,
                    attempts: u32::try_from(number_of(&item, "attempts")?).unwrap_or(0),
                    series_start: u32::try_from(number_of(&item, "series_start")?).unwrap_or(0),
                    due_at: Timestamp::from_millis(number_of(&item, table::DUE_AT)?),
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(due)
    }

    /// Up to `limit` entries of one client index shard, newest first, older than `before`
    /// (a created key); and whether the shard has more.
    async fn client_shard_page(
        &self,
        client: &ClientId,
        shard: u32,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let mut condition = "#client = :client".to_owned();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::CLIENT_INDEX)
            .expression_attribute_names("#client", table::CLIENT_KEY)
            .expression_attribute_values(":client", text(table::client_shard_key(client.as_str(), shard)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(before) = before {
            condition.push_str(" AND #created < :before");
            query = query
                .expression_attribute_names("#created", table::CREATED_KEY)
                .expression_attribute_values(":before", text(before));
        }
        let page = query.key_condition_expression(condition).send().await.map_err(unavailable)?;
        let keys = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| match item.get(table::CREATED_KEY) {
                Some(AttributeValue::S(key)) => Ok(key.clone()),
                _ => Err(StoreError::Corrupt("client index: no created key".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((keys, page.last_evaluated_key.is_some()))
    }

    /// The listed state of each task (in no particular order); tasks that are gone are absent.
    async fn summaries(&self, task_ids: &[TaskId]) -> Result<HashMap<TaskId, TaskSummary>, StoreError> {
        let mut found = HashMap::new();
        if task_ids.is_empty() {
            return Ok(found);
        }
        let keys: Vec<_> = task_ids.iter().map(|id| Self::key(table::task_key(id.as_str()))).collect();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .projection_expression("task_id, #status, attempts, created_at, updated_at, expires_at")
            .expression_attribute_names("#status", table::STATUS)
            .build()
            .map_err(|e| StoreError::Corrupt(format!("listing request: {e}")))?;
        for round in 0..BATCH_GET_ROUNDS {
            let answer =
                self.client.batch_get_item().request_items(&self.table, request).send().await.map_err(unavailable)?;
            for item in answer.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                let summary: SummaryItem =
                    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("listed task: {e}")))?;
                let summary = summary.into_summary()?;
                found.insert(summary.task_id.clone(), summary);
            }
            match answer.unprocessed_keys.unwrap_or_default().remove(&self.table) {
                Some(left) if !left.keys.is_empty() => request = left,
                _ => return Ok(found),
            }
            tokio::time::sleep(Duration::from_millis(20 << round)).await;
        }
        Err(StoreError::Unavailable("the tasks of a listing could not all be read".into()))
    }
}

/// What a listing reads of a task.
#[derive(serde::Deserialize)]
struct SummaryItem {
    task_id: String,
    status: String,
    attempts: u32,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
}

impl SummaryItem {
    fn into_summary(self) -> Result<TaskSummary, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("listed task: {what}"));
        Ok(TaskSummary {
            task_id: TaskId::parse(&self.task_id).map_err(|_| corrupt("bad task_id"))?,
            status: self.status.parse().map_err(|_| corrupt("bad status"))?,
            attempts: self.attempts,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            expires_at: self.expires_at,
        })
    }
}

fn number_of(item: &HashMap<String, AttributeValue>, attribute: &str) -> Result<i64, StoreError> {
    match item.get(attribute) {
        Some(AttributeValue::N(n)) => {
            n.parse().map_err(|_| StoreError::Corrupt(format!("status index: bad {attribute}")))
        }
        None => Ok(0),
        _ => Err(StoreError::Corrupt(format!("status index: {attribute} is not a number"))),
    }
}

fn task_id_in(item: &HashMap<String, AttributeValue>, what: &str) -> Result<TaskId, StoreError> {
    match item.get(table::PK) {
        Some(AttributeValue::S(pk)) => table::task_id_of(pk).and_then(|id| TaskId::parse(id).ok()),
        _ => None,
    }
    .ok_or_else(|| StoreError::Corrupt(format!("{what}: bad pk")))
}

/// The listing position of a client index sort key.
fn position_of(created_key: &str) -> Result<ListPosition, StoreError> {
    let corrupt = || StoreError::Corrupt("client index: bad created key".into());
    let (millis, task_id) = created_key.split_once('#').ok_or_else(corrupt)?;
    Ok(ListPosition {
        created_at: Timestamp::from_millis(millis.parse().map_err(|_| corrupt())?),
        task_id: TaskId::parse(task_id).map_err(|_| corrupt())?,
    })
}

impl TaskStore for DynamoStore {
    async fn insert(&self, task: &Task, payload: &Content, payload_expires_at: i64) -> Result<(), StoreError> {
        // The payload first: a task item is never without its payload. A task that fails to
        // land leaves a payload item that expires with nothing pointing at it. The payload item
        // is written once: one already there (of this task, or of an insert that did not finish
        // with this id) is kept, and the task's own create below decides whether the id is taken.
        // Before a task can land in a shard no reader knows of, the table learns of the shards
        // (at most one read a minute per store).
        self.read_shards().await?;
        let payload = PayloadRecord::of(&task.task_id, payload, payload_expires_at);
        match item::create(&self.client, &self.table, payload, "payload").await {
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
        let Some(existing) =
            item::create_or_find(&self.client, &self.table, TaskRecord::of(task, &self.layout), "task").await?
        else {
            return Ok(());
        };
        // The id is taken. By this very task if the SDK retried a create whose answer was lost
        // and the retry found the first one landed (the same client and creation time: a fresh
        // random id is never another task's): that is this insert done, not a conflict.
        match task_from_item(existing) {
            Ok(stored) if stored.client_id == task.client_id && stored.created_at == task.created_at => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.read_item(table::task_key(task_id.as_str())).await?.map(task_from_item).transpose()
    }

    async fn payload(&self, task_id: &TaskId) -> Result<Option<Content>, StoreError> {
        let Some(item) = self.read_item(table::payload_item_key(task_id.as_str())).await? else { return Ok(None) };
        let record: PayloadRecord =
            serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("payload item: {e}")))?;
        record.into_content().map(Some)
    }

    async fn apply(&self, transition: &Transition) -> Result<WriteOutcome, StoreError> {
        self.write(&transition.task_id, Update::of(transition, &self.layout)?).await
    }

    async fn claim(&self, record: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>, StoreError> {
        let item = serde_dynamo::to_item(IdempotencyItem::from(record))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode idempotency record: {e}")))?;
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // A record that expired counts as absent (TTL deletes it late, if at all): replace it.
            .condition_expression("attribute_not_exists(#pk) OR #expires_at <= :now")
            .expression_attribute_names("#pk", table::PK)
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_values(":now", number(record.created_at.as_epoch_seconds()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match written {
            Ok(_) => return Ok(None),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => match e.into_err() {
                PutItemError::ConditionalCheckFailedException(failed) => failed.item,
                _ => None,
            },
            Err(e) => return Err(unavailable(e)),
        };
        let existing = match existing {
            Some(item) => item,
            None => self
                .read_item(table::idempotency_key(record.client_id.as_str(), &record.key_digest))
                .await?
                .ok_or_else(|| StoreError::Unavailable("idempotency record vanished".into()))?,
        };
        let item: IdempotencyItem =
            serde_dynamo::from_item(existing).map_err(|e| StoreError::Corrupt(format!("idempotency item: {e}")))?;
        item.into_record(&record.key_digest).map(Some)
    }

    async fn count(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        if status.is_terminal() {
            return Ok(0); // finished tasks are not in the status index
        }
        let shards = self.read_shards().await?;
        let counts = try_join_all((0..shards).map(|shard| self.count_shard(status, shard, since, until))).await?;
        Ok(counts.into_iter().sum())
    }

    async fn earliest_due(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        if status.is_terminal() {
            return Ok(None);
        }
        let shards = self.read_shards().await?;
        let earliest = try_join_all((0..shards).map(|shard| self.earliest_in_shard(status, shard))).await?;
        Ok(earliest.into_iter().flatten().min())
    }

    async fn list(
        &self,
        client: &ClientId,
        status: Option<TaskStatus>,
        limit: usize,
        after: Option<&ListPosition>,
        now: Timestamp,
    ) -> Result<ListPage, StoreError> {
        // The position becomes a sort key bound inside the caller's own partitions, so a cursor
        // can never reach into another client's tasks.
        let before =
            after.map(|position| table::created_key(position.created_at.as_millis(), position.task_id.as_str()));
        let pages = try_join_all(
            (0..table::CLIENT_SHARDS).map(|shard| self.client_shard_page(client, shard, before.as_deref(), limit)),
        )
        .await?;
        let mut more = false;
        let mut keys = Vec::new();
        for (shard_keys, shard_has_more) in pages {
            more |= shard_has_more;
            keys.extend(shard_keys);
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        more |= keys.len() > limit;
        keys.truncate(limit);
        let positions = keys.iter().map(|key| position_of(key)).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<TaskId> = positions.iter().map(|position| position.task_id.clone()).collect();
        let mut found = self.summaries(&ids).await?;
        let tasks = ids
            .iter()
            .filter_map(|id| found.remove(id))
            .filter(|task| task.expires_at > now.as_epoch_seconds() && status.is_none_or(|s| task.status == s))
            .collect();
        let next = if more { positions.last().cloned() } else { None };
        Ok(ListPage { tasks, next })
    }

    async fn due(&self, status: TaskStatus, until: Timestamp, limit: usize) -> Result<Vec<DueTask>, StoreError> {
        if status.is_terminal() {
            return Ok(Vec::new());
        }
        let shards = self.read_shards().await?;
        let pages = try_join_all((0..shards).map(|shard| self.due_in_shard(status, shard, until, limit))).await?;
        let mut due: Vec<DueTask> = pages.into_iter().flatten().collect();
        due.sort_by_key(|task| task.due_at);
        due.truncate(limit);
        Ok(due)
    }
}

/// The hold is one small item, read eventually consistent (half a read unit; each instance reads
/// it at most once per second, see `taskfleet_core::hold`) and only ever lengthened.
impl HoldStore for DynamoStore {
    async fn held_until(&self) -> Result<Option<Timestamp>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(table::HOLD_ITEM.to_owned())))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(answer.item.and_then(|item| match item.get("until") {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok().map(Timestamp::from_millis),
            _ => None,
        }))
    }

    async fn hold_until(&self, until: Timestamp) -> Result<(), StoreError> {
        let held = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(table::HOLD_ITEM.to_owned())))
            .update_expression("SET #until = :until")
            .condition_expression("attribute_not_exists(#until) OR #until < :until")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":until", number(until.as_millis()))
            .send()
            .await;
        match held {
            Ok(_) => Ok(()),
            // A hold that ends later is recorded already.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
