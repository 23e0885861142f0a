//! The table's layout: key and attribute names, the status index, item keys. Shared by the store,
//! the stream reader and whoever creates the table (the local fleet; serverless.yml in AWS).

/// Partition key of every item.
pub const PK: &str = "pk";
/// Global secondary index over (`status`, `updated_at`), keys only: counts and backlog age read
/// it per status, so they cost what the active tasks cost, not what all stored tasks cost.
pub const STATUS_INDEX: &str = "by_status";
pub const STATUS: &str = "status";
pub const UPDATED_AT: &str = "updated_at";
/// TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

const TASK_PREFIX: &str = "TASK#";

/// The partition key of a task item.
pub fn task_key(task_id: &str) -> String {
    format!("{TASK_PREFIX}{task_id}")
}

/// The task id of a task item's partition key; None for items that are not tasks.
pub fn task_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(TASK_PREFIX)
}

/// Creates the tasks table as serverless.yml declares it in AWS: on-demand, `pk` hash key,
/// stream with new and old images, the status index, TTL on `expires_at`. For the local fleet
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
        .key_schema(key(UPDATED_AT, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(STATUS, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(UPDATED_AT, ScalarAttributeType::N)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .global_secondary_indexes(status_index)
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
