//! The DynamoDB task store. Every state change is one conditional UpdateItem naming the expected
//! status (and attempt), so late or repeated events cannot move a task backwards or finish it
//! twice.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, Select};
use taskfleet_core::lifecycle::{Heartbeat, Transition};
use taskfleet_core::ports::{DueTask, IdempotencyRecord, ListPage, ListPosition, TaskStore, TaskSummary, WriteOutcome};
use taskfleet_core::{ClientId, StoreError, Task, TaskId, TaskStatus, Timestamp};

use crate::config::{self, ConfigError};
use crate::item::{self, unavailable};
use crate::record::{HistoryRecord, IdempotencyItem, TaskRecord, task_from_item};
use crate::table;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The store of the table named by `TASKS_TABLE`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::TASKS_TABLE)?))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(task_id: &TaskId) -> HashMap<String, AttributeValue> {
        HashMap::from([(table::PK.to_owned(), AttributeValue::S(table::task_key(task_id.as_str())))])
    }
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The UpdateItem parts of a conditional write: SET/REMOVE clauses, condition, names, values.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
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

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let name = self.name(attribute);
        self.values.insert(format!(":{attribute}"), value);
        self.set.push(format!("{name} = :{attribute}"));
    }

    /// Appends `items` to the list `attribute`, creating it if absent.
    fn append(&mut self, attribute: &str, items: Vec<AttributeValue>) {
        let name = self.name(attribute);
        self.values.insert(":empty".to_owned(), AttributeValue::L(Vec::new()));
        self.values.insert(format!(":{attribute}"), AttributeValue::L(items));
        self.set.push(format!("{name} = list_append(if_not_exists({name}, :empty), :{attribute})"));
    }

    fn require(&mut self, attribute: &str, placeholder: &str, value: AttributeValue) {
        let name = self.name(attribute);
        self.values.insert(placeholder.to_owned(), value);
        self.conditions.push(format!("{name} = {placeholder}"));
    }

    /// The token guard: element `attempt − 1` of the token list must equal `digest`.
    fn require_token(&mut self, attempt: u32, digest: &str) {
        let name = self.name("callback_tokens");
        self.values.insert(":expected_token".to_owned(), AttributeValue::S(digest.to_owned()));
        self.conditions.push(format!("{name}[{}] = :expected_token", attempt.saturating_sub(1)));
    }

    /// An expired task takes no write: DynamoDB deletes it late, and until then it stays gone.
    fn require_unexpired(&mut self, now: Timestamp) {
        let name = self.name(table::EXPIRES_AT);
        self.values.insert(":now_seconds".to_owned(), number(now.as_epoch_seconds()));
        self.conditions.push(format!("{name} > :now_seconds"));
    }

    fn of(transition: &Transition) -> Result<Self, StoreError> {
        let mut update = Update::default();
        update.require_unexpired(transition.at);
        update.require(table::STATUS, ":from", AttributeValue::S(transition.from.as_str().to_owned()));
        if let Some(expected) = transition.expected_attempts {
            update.require("attempts", ":expected_attempts", number(expected));
        }
        if let Some((attempt, digest)) = &transition.expected_token {
            update.require_token(*attempt, digest);
        }
        if let Some(due) = transition.expected_due {
            update.require(table::DUE_AT, ":expected_due", number(due.as_millis()));
        }
        update.set(table::STATUS, AttributeValue::S(transition.to.as_str().to_owned()));
        update.set(table::UPDATED_AT, number(transition.at.as_millis()));
        update.set(table::DUE_AT, number(transition.due_at.as_millis()));
        if let Some(attempts) = transition.attempts {
            update.set("attempts", number(attempts));
        }
        if let Some(series_start) = transition.series_start {
            update.set("series_start", number(series_start));
        }
        if let Some(result) = &transition.result {
            update.set("result", AttributeValue::S(result.to_string()));
        }
        if let Some(error) = &transition.error {
            update.set("error", AttributeValue::S(error.clone()));
        } else if transition.clear_error {
            let name = update.name("error");
            update.remove.push(name);
        }
        if let Some(expires_at) = transition.expires_at {
            update.set(table::EXPIRES_AT, number(expires_at));
        }
        if let Some(token) = &transition.new_token {
            update.append("callback_tokens", vec![AttributeValue::S(token.clone())]);
        }
        let entry = serde_dynamo::to_attribute_value(HistoryRecord::from(&transition.entry))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode history: {e}")))?;
        update.append("history", vec![entry]);
        Ok(update)
    }

    fn of_heartbeat(heartbeat: &Heartbeat) -> Self {
        let mut update = Update::default();
        update.require_unexpired(heartbeat.at);
        update.require(table::STATUS, ":from", AttributeValue::S(TaskStatus::InProgress.as_str().to_owned()));
        update.require("attempts", ":expected_attempts", number(heartbeat.attempt));
        update.require_token(heartbeat.attempt, &heartbeat.token_digest);
        update.set(table::DUE_AT, number(heartbeat.deadline.as_millis()));
        update.set(table::UPDATED_AT, number(heartbeat.at.as_millis()));
        update
    }

    fn expression(&self) -> String {
        let mut expression = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        expression
    }
}

impl DynamoStore {
    /// Runs one conditional UpdateItem; a failed condition answers the task as it is.
    async fn write(&self, task_id: &TaskId, update: Update) -> Result<WriteOutcome, StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .update_expression(update.expression())
            .condition_expression(update.conditions.join(" AND "))
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match written {
            Ok(answer) => Ok(WriteOutcome::Applied(task_from_item(answer.attributes.unwrap_or_default())?)),
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

    /// One page of the status index for `status` with `due_at` in the given range.
    fn status_query(
        &self,
        status: TaskStatus,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut names = HashMap::from([("#status".to_owned(), table::STATUS.to_owned())]);
        let mut values = HashMap::from([(":status".to_owned(), AttributeValue::S(status.as_str().to_owned()))]);
        let mut condition = "#status = :status".to_owned();
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
}

/// What the client index holds of a task.
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
        let corrupt = |what: &str| StoreError::Corrupt(format!("client index: {what}"));
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

impl TaskStore for DynamoStore {
    async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        item::create(&self.client, &self.table, TaskRecord::from(task), "task").await
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        answer.item.map(task_from_item).transpose()
    }

    async fn apply(&self, transition: &Transition) -> Result<WriteOutcome, StoreError> {
        self.write(&transition.task_id, Update::of(transition)?).await
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<WriteOutcome, StoreError> {
        self.write(&heartbeat.task_id, Update::of_heartbeat(heartbeat)).await
    }

    async fn claim(&self, record: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>, StoreError> {
        let item = serde_dynamo::to_item(IdempotencyItem::from(record))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode idempotency record: {e}")))?;
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", table::PK)
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
                .client
                .get_item()
                .table_name(&self.table)
                .key(
                    table::PK,
                    AttributeValue::S(table::idempotency_key(record.client_id.as_str(), &record.key_digest)),
                )
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable)?
                .item
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
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .status_query(status, since, until)
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

    async fn earliest_due(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        let page = self
            .status_query(status, None, None)
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

    async fn list(
        &self,
        client: &ClientId,
        status: Option<TaskStatus>,
        limit: usize,
        after: Option<&ListPosition>,
        now: Timestamp,
    ) -> Result<ListPage, StoreError> {
        let mut filter = "#expires_at > :now".to_owned();
        let mut names = HashMap::from([
            ("#client".to_owned(), table::CLIENT_ID.to_owned()),
            ("#expires_at".to_owned(), table::EXPIRES_AT.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":client".to_owned(), AttributeValue::S(client.to_string())),
            (":now".to_owned(), number(now.as_epoch_seconds())),
        ]);
        if let Some(status) = status {
            filter.push_str(" AND #status = :status");
            names.insert("#status".to_owned(), table::STATUS.to_owned());
            values.insert(":status".to_owned(), AttributeValue::S(status.as_str().to_owned()));
        }
        // The start key is rebuilt from the position and the caller's own client id, so a cursor
        // can never reach into another client's partition.
        let start = after.map(|position| {
            HashMap::from([
                (table::PK.to_owned(), AttributeValue::S(table::task_key(position.task_id.as_str()))),
                (table::CLIENT_ID.to_owned(), AttributeValue::S(client.to_string())),
                (table::CREATED_AT.to_owned(), number(position.created_at.as_millis())),
            ])
        });
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::CLIENT_INDEX)
            .key_condition_expression("#client = :client")
            .filter_expression(filter)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let tasks = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let summary: SummaryItem =
                    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("client index: {e}")))?;
                summary.into_summary()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = match page.last_evaluated_key {
            Some(key) => {
                let created_at = number_of(&key, table::CREATED_AT)?;
                let task_id = match key.get(table::PK) {
                    Some(AttributeValue::S(pk)) => table::task_id_of(pk).and_then(|id| TaskId::parse(id).ok()),
                    _ => None,
                };
                let task_id = task_id.ok_or_else(|| StoreError::Corrupt("client index: bad key".into()))?;
                Some(ListPosition { created_at: Timestamp::from_millis(created_at), task_id })
            }
            None => None,
        };
        Ok(ListPage { tasks, next })
    }

    async fn due(&self, status: TaskStatus, until: Timestamp, limit: usize) -> Result<Vec<DueTask>, StoreError> {
        let mut due = Vec::new();
        let mut start = None;
        while due.len() < limit {
            let page = self
                .status_query(status, None, Some(until))
                .scan_index_forward(true)
                .limit(i32::try_from(limit - due.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                let pk = match item.get(table::PK) {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    _ => return Err(StoreError::Corrupt("status index: no pk".into())),
                };
                let task_id = table::task_id_of(&pk)
                    .and_then(|id| TaskId::parse(id).ok())
                    .ok_or_else(|| StoreError::Corrupt("status index: bad pk".into()))?;
                due.push(DueTask {
                    task_id,
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
}
