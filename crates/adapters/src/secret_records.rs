//! Clients' completion-webhook secret records in the tasks table: one item per client
//! (`pk = WEBHOOKSECRET#<client>`) holding the current version and salt and, after a rotation,
//! the previous ones and until when they sign. Never a secret: see
//! `taskfleet_core::completion::client_secret`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use taskfleet_core::completion::client_secret::{SALT_LEN, SecretRecord, Version};
use taskfleet_core::ports::SecretRecords;
use taskfleet_core::{ClientId, StoreError, Timestamp};

use crate::config::{self, ConfigError};
use crate::item::unavailable;
use crate::table;

/// The DynamoDB [`SecretRecords`].
#[derive(Debug, Clone)]
pub struct DynamoSecretRecords {
    client: Client,
    table: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SecretItem {
    pk: String,
    version: u32,
    /// Base64.
    salt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_salt: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_until: Option<i64>,
}

impl SecretItem {
    fn of(client: &ClientId, record: &SecretRecord) -> Self {
        let previous = record.previous.as_ref();
        Self {
            pk: table::webhook_secret_key(client.as_str()),
            version: record.current.number,
            salt: STANDARD.encode(record.current.salt),
            previous_version: previous.map(|(version, _)| version.number),
            previous_salt: previous.map(|(version, _)| STANDARD.encode(version.salt)),
            previous_until: previous.map(|(_, until)| until.as_millis()),
        }
    }

    fn into_record(self) -> Result<SecretRecord, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("secret record {}: bad salt", self.pk));
        let salt = |encoded: &str| -> Result<[u8; SALT_LEN], StoreError> {
            STANDARD.decode(encoded).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(corrupt)
        };
        let previous = match (self.previous_version, self.previous_salt.as_deref(), self.previous_until) {
            (Some(number), Some(encoded), Some(until)) => {
                Some((Version { number, salt: salt(encoded)? }, Timestamp::from_millis(until)))
            }
            _ => None,
        };
        Ok(SecretRecord { current: Version { number: self.version, salt: salt(&self.salt)? }, previous })
    }
}

impl DynamoSecretRecords {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The records in the table named by `TASKS_TABLE`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::TASKS_TABLE)?))
    }
}

impl SecretRecords for DynamoSecretRecords {
    async fn secret_record(&self, client: &ClientId) -> Result<Option<SecretRecord>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(table::PK, AttributeValue::S(table::webhook_secret_key(client.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = answer.item else { return Ok(None) };
        let item: SecretItem =
            serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("secret record: {e}")))?;
        item.into_record().map(Some)
    }

    async fn put_secret_record(
        &self,
        client: &ClientId,
        record: &SecretRecord,
        seen: Option<u32>,
    ) -> Result<bool, StoreError> {
        let item = serde_dynamo::to_item(SecretItem::of(client, record))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a secret record: {e}")))?;
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let put = match seen {
            None => put.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", table::PK),
            Some(version) => put
                .condition_expression("#version = :seen")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":seen", AttributeValue::N(version.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
