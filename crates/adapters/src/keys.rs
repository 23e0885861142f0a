//! Client API keys in the tasks table: one item per key (`pk = APIKEY#<key id>`) holding its
//! owner and the digest of its secret, never the secret. The sparse `by_key_owner` index lists
//! them per client without reading tasks.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use taskfleet_core::auth::{CachedAuthenticator, KeyRecord, KeyRecordStore};
use taskfleet_core::{ClientId, StoreError, Timestamp};

use crate::config::{self, ConfigError};
use crate::item::{self, unavailable};
use crate::table;

/// The DynamoDB [`KeyRecordStore`]: key records as items of the tasks table.
#[derive(Debug, Clone)]
pub struct DynamoKeyRecords {
    client: Client,
    table: String,
}

#[derive(Serialize, Deserialize)]
struct KeyItem {
    pk: String,
    key_id: String,
    key_owner: String,
    secret_digest: String,
    /// Milliseconds since the epoch.
    key_created_at: i64,
}

impl KeyItem {
    fn into_record(self) -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord {
            client_id: ClientId::parse(&self.key_owner)
                .map_err(|_| StoreError::Corrupt("key item: bad owner".into()))?,
            key_id: self.key_id,
            secret_digest: self.secret_digest,
            created_at: Timestamp::from_millis(self.key_created_at),
        })
    }
}

impl DynamoKeyRecords {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The keys in the table named by `TASKS_TABLE`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::TASKS_TABLE)?))
    }

    /// The keys in `TASKS_TABLE`, each key found cached for `API_KEY_CACHE_SECONDS` (what the API
    /// functions authenticate with).
    pub fn cached_from_env(sdk: &aws_config::SdkConfig) -> Result<CachedAuthenticator<Self>, ConfigError> {
        let seconds = config::positive(config::API_KEY_CACHE_SECONDS, config::DEFAULT_API_KEY_CACHE_SECONDS)?;
        Ok(CachedAuthenticator::new(Self::from_env(sdk)?, std::time::Duration::from_secs(seconds)))
    }

    fn key(key_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([(table::PK.to_owned(), AttributeValue::S(table::api_key_key(key_id)))])
    }

    async fn records(&self, items: Vec<HashMap<String, AttributeValue>>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let key_id = match item.get("key_id") {
                Some(AttributeValue::S(id)) => id.clone(),
                _ => return Err(StoreError::Corrupt("key index: no key_id".into())),
            };
            if let Some(record) = self.find(&key_id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }
}

impl KeyRecordStore for DynamoKeyRecords {
    async fn find(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key_id)))
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = answer.item else { return Ok(None) };
        let item: KeyItem = serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("key item: {e}")))?;
        item.into_record().map(Some)
    }

    async fn save(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let item = KeyItem {
            pk: table::api_key_key(&record.key_id),
            key_id: record.key_id.clone(),
            key_owner: record.client_id.to_string(),
            secret_digest: record.secret_digest.clone(),
            key_created_at: record.created_at.as_millis(),
        };
        item::create(&self.client, &self.table, item, "key").await
    }

    async fn list(&self, client: Option<&ClientId>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let (page_items, next) = match client {
                Some(client) => {
                    let page = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(table::KEY_OWNER_INDEX)
                        .key_condition_expression("#owner = :owner")
                        .expression_attribute_names("#owner", table::KEY_OWNER)
                        .expression_attribute_values(":owner", AttributeValue::S(client.to_string()))
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(unavailable)?;
                    (page.items.unwrap_or_default(), page.last_evaluated_key)
                }
                // The index holds only key items, so scanning it never reads a task.
                None => {
                    let page = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .index_name(table::KEY_OWNER_INDEX)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(unavailable)?;
                    (page.items.unwrap_or_default(), page.last_evaluated_key)
                }
            };
            items.extend(page_items);
            start = next;
            if start.is_none() {
                break;
            }
        }
        let mut records = self.records(items).await?;
        records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(records)
    }

    async fn revoke(&self, key_id: &str) -> Result<bool, StoreError> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key_id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(answer.attributes.is_some_and(|a| !a.is_empty()))
    }
}
