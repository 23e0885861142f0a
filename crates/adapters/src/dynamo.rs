//! The DynamoDB task store. Every state change is one conditional UpdateItem naming the expected
//! status (and attempt), so late or repeated events cannot move a task backwards or finish it
//! twice.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, Select};
use taskfleet_core::lifecycle::Transition;
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{StoreError, Task, TaskId, TaskStatus, Timestamp};

use crate::config::{self, ConfigError};
use crate::record::{TaskRecord, task_from_item};
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

fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The UpdateItem parts of a transition: update expression, condition, names and values.
struct Update {
    set: Vec<&'static str>,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn of(transition: &Transition) -> Self {
        let mut update = Update {
            set: vec!["#status = :to", "#updated_at = :at"],
            condition: "#status = :from".to_owned(),
            names: HashMap::from([
                ("#status".to_owned(), table::STATUS.to_owned()),
                ("#updated_at".to_owned(), table::UPDATED_AT.to_owned()),
            ]),
            values: HashMap::from([
                (":to".to_owned(), AttributeValue::S(transition.to.as_str().to_owned())),
                (":from".to_owned(), AttributeValue::S(transition.from.as_str().to_owned())),
                (":at".to_owned(), number(transition.at.as_millis())),
            ]),
        };
        if transition.attempts.is_some() || transition.expected_attempts.is_some() {
            update.names.insert("#attempts".to_owned(), "attempts".to_owned());
        }
        if let Some(attempts) = transition.attempts {
            update.set.push("#attempts = :attempts");
            update.values.insert(":attempts".to_owned(), number(attempts));
        }
        if let Some(expected) = transition.expected_attempts {
            update.condition.push_str(" AND #attempts = :expected");
            update.values.insert(":expected".to_owned(), number(expected));
        }
        if let Some(result) = &transition.result {
            update.set.push("#result = :result");
            update.names.insert("#result".to_owned(), "result".to_owned());
            update.values.insert(":result".to_owned(), AttributeValue::S(result.to_string()));
        }
        if let Some(error) = &transition.error {
            update.set.push("#error = :error");
            update.names.insert("#error".to_owned(), "error".to_owned());
            update.values.insert(":error".to_owned(), AttributeValue::S(error.clone()));
        }
        if let Some(expires_at) = transition.expires_at {
            update.set.push("#expires_at = :expires_at");
            update.names.insert("#expires_at".to_owned(), table::EXPIRES_AT.to_owned());
            update.values.insert(":expires_at".to_owned(), number(expires_at));
        }
        update
    }
}

impl TaskStore for DynamoStore {
    async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(TaskRecord::from(task))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode task: {e}")))?;
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", table::PK)
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(unavailable(e)),
        }
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
        let update = Update::of(transition);
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&transition.task_id)))
            .update_expression(format!("SET {}", update.set.join(", ")))
            .condition_expression(update.condition)
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
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        failed,
                    ) => failed.item,
                    _ => None,
                };
                let current = match current {
                    Some(item) => Some(task_from_item(item)?),
                    // DynamoDB returns no item when there is none; some emulators never return
                    // it, so read to tell "missing" from "moved on".
                    None => self.get(&transition.task_id).await?,
                };
                Ok(WriteOutcome::Rejected(current))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn count(&self, status: TaskStatus, since: Option<Timestamp>) -> Result<u64, StoreError> {
        let mut condition = "#status = :status".to_owned();
        let mut values = HashMap::from([(":status".to_owned(), AttributeValue::S(status.as_str().to_owned()))]);
        let mut names = HashMap::from([("#status".to_owned(), table::STATUS.to_owned())]);
        if let Some(since) = since {
            condition.push_str(" AND #updated_at >= :since");
            values.insert(":since".to_owned(), number(since.as_millis()));
            names.insert("#updated_at".to_owned(), table::UPDATED_AT.to_owned());
        }
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(table::STATUS_INDEX)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
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

    async fn oldest_update(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::STATUS_INDEX)
            .key_condition_expression("#status = :status")
            .expression_attribute_names("#status", table::STATUS)
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().to_owned()))
            .scan_index_forward(true)
            .limit(1)
            .send()
            .await
            .map_err(unavailable)?;
        let oldest = page.items.unwrap_or_default().into_iter().next();
        let Some(item) = oldest else { return Ok(None) };
        match item.get(table::UPDATED_AT) {
            Some(AttributeValue::N(millis)) => millis
                .parse::<i64>()
                .map(|m| Some(Timestamp::from_millis(m)))
                .map_err(|_| StoreError::Corrupt("status index: bad updated_at".into())),
            _ => Err(StoreError::Corrupt("status index: no updated_at".into())),
        }
    }
}
