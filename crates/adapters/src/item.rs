//! What the table's stores share item by item: writing a new item only if its key is free, and
//! turning SDK failures into the domain's storage error.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Serialize;
use taskfleet_core::StoreError;

use crate::table;

/// Storage could not be reached or refused the request.
pub fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

/// Writes `item` unless an item with its key exists ([`StoreError::AlreadyExists`]).
pub async fn create(client: &Client, table_name: &str, item: impl Serialize, what: &str) -> Result<(), StoreError> {
    match create_or_find(client, table_name, item, what).await? {
        None => Ok(()),
        Some(_) => Err(StoreError::AlreadyExists),
    }
}

/// Writes `item` unless an item with its key exists; answers that item if one does. (It may be
/// this very write: the SDK retries a write whose answer was lost, and the retry finds it.)
pub async fn create_or_find(
    client: &Client,
    table_name: &str,
    item: impl Serialize,
    what: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let item = serde_dynamo::to_item(item).map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))?;
    let written = client
        .put_item()
        .table_name(table_name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", table::PK)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match written {
        Ok(_) => Ok(None),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => match e.into_err() {
            PutItemError::ConditionalCheckFailedException(failed) => Ok(Some(failed.item.unwrap_or_default())),
            _ => Ok(Some(HashMap::new())),
        },
        Err(e) => Err(unavailable(e)),
    }
}
