//! What the table's stores share item by item: writing a new item only if its key is free, and
//! turning SDK failures into the domain's storage error.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
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
    let item = serde_dynamo::to_item(item).map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))?;
    let written = client
        .put_item()
        .table_name(table_name)
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
