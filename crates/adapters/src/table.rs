//! The table's layout: key and attribute names, the status index, item keys. Shared by the store,
//! the stream reader and whoever creates the table (the local fleet; serverless.yml in AWS).

/// Partition key of every item.
pub const PK: &str = "pk";
/// Global secondary index over (`status`, `due_at`) with the attempt counters: the sweeper and
/// the metrics read it per status and due range, so they cost what the active (or recently
/// finished) tasks cost, not what all stored tasks cost.
pub const STATUS_INDEX: &str = "by_status";
pub const STATUS: &str = "status";
pub const DUE_AT: &str = "due_at";
/// What the status index carries besides its keys.
pub const STATUS_INDEX_ATTRIBUTES: [&str; 2] = ["attempts", "series_start"];
/// Global secondary index over (`client_id`, `created_at`): a client's tasks, newest first, with
/// what a listing shows (not payloads or results, which would double what every write costs).
pub const CLIENT_INDEX: &str = "by_client";
/// What the client index carries besides its keys.
pub const CLIENT_INDEX_ATTRIBUTES: [&str; 5] = ["task_id", "status", "updated_at", "attempts", "expires_at"];
pub const CLIENT_ID: &str = "client_id";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
/// Sparse global secondary index over (`key_owner`, `key_id`): only API key items carry these.
pub const KEY_OWNER_INDEX: &str = "by_key_owner";
pub const KEY_OWNER: &str = "key_owner";
pub const KEY_ID: &str = "key_id";
/// TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

const TASK_PREFIX: &str = "TASK#";
const IDEMPOTENCY_PREFIX: &str = "IDEMPOTENCY#";
const API_KEY_PREFIX: &str = "APIKEY#";

/// The partition key of a client API key.
pub fn api_key_key(key_id: &str) -> String {
    format!("{API_KEY_PREFIX}{key_id}")
}

/// The partition key of an idempotency record: one per client and key digest.
pub fn idempotency_key(client_id: &str, key_digest: &str) -> String {
    format!("{IDEMPOTENCY_PREFIX}{client_id}#{key_digest}")
}

/// The partition key of a task item.
pub fn task_key(task_id: &str) -> String {
    format!("{TASK_PREFIX}{task_id}")
}

/// The task id of a task item's partition key; None for items that are not tasks.
pub fn task_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(TASK_PREFIX)
}

/// Creates the tasks table as serverless.yml declares it in AWS: on-demand, `pk` hash key,
/// stream with new and old images, the status and client indexes, TTL on `expires_at`. For the local fleet
/// and tests (the emulator creates it active at once); in AWS, CloudFormation owns the table.
pub async fn create(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build()
    };
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let status_index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .key_schema(key(STATUS, KeyType::Hash)?)
        .key_schema(key(DUE_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(STATUS_INDEX_ATTRIBUTES.map(String::from).to_vec()))
                .build(),
        )
        .build()?;
    let client_index = GlobalSecondaryIndex::builder()
        .index_name(CLIENT_INDEX)
        .key_schema(key(CLIENT_ID, KeyType::Hash)?)
        .key_schema(key(CREATED_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(CLIENT_INDEX_ATTRIBUTES.map(String::from).to_vec()))
                .build(),
        )
        .build()?;
    let key_owner_index = GlobalSecondaryIndex::builder()
        .index_name(KEY_OWNER_INDEX)
        .key_schema(key(KEY_OWNER, KeyType::Hash)?)
        .key_schema(key(KEY_ID, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(STATUS, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(DUE_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(CLIENT_ID, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(CREATED_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(KEY_OWNER, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(KEY_ID, ScalarAttributeType::S)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .global_secondary_indexes(status_index)
        .global_secondary_indexes(client_index)
        .global_secondary_indexes(key_owner_index)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        )
        .send()
        .await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name(EXPIRES_AT).build()?,
        )
        .send()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_round_trip_and_other_items_are_not_tasks() {
        assert_eq!(task_id_of(&task_key("abc")), Some("abc"));
        assert_eq!(task_id_of("IDEMPOTENCY#x"), None);
    }
}
