//! The table's layout: key and attribute names, the indexes and their shards, item keys. Shared
//! by the store, the stream reader and whoever creates the table (the local fleet;
//! serverless.yml in AWS).

use taskfleet_core::TaskStatus;

/// Partition key of every item.
pub const PK: &str = "pk";
/// Sparse global secondary index over (`status_key`, `due_at`) holding only *active* tasks
/// (RECEIVED, IN_PROGRESS): `status_key` is `{STATUS}#{shard}`, the shard taken from the task
/// id, so that no key value is written by more than one in [`Layout::status_shards`] tasks; a
/// task that finishes loses its `status_key` and leaves the index. The sweeper and the metrics
/// read every shard, so they cost what the active tasks cost, not what all stored tasks cost.
pub const STATUS_INDEX: &str = "by_status";
pub const STATUS_KEY: &str = "status_key";
pub const STATUS: &str = "status";
pub const DUE_AT: &str = "due_at";
/// What the status index carries besides its keys (they change with the key, so keeping them
/// costs no extra index write).
pub const STATUS_INDEX_ATTRIBUTES: [&str; 2] = ["attempts", "series_start"];
/// Global secondary index over (`client_key`, `created_key`), keys only: a client's tasks,
/// newest first, spread over [`CLIENT_SHARDS`] key values per client. Both keys are written
/// once, when the task is created, and never change, so the index costs one write per task; a
/// listing reads the current state of the tasks it lists from the table.
pub const CLIENT_INDEX: &str = "by_client";
/// `{client_id}#{shard}`.
pub const CLIENT_KEY: &str = "client_key";
/// `{created_at, 15 digits of milliseconds}#{task_id}`: newest first, and unique.
pub const CREATED_KEY: &str = "created_key";
/// How many key values one client's tasks spread over in the client index: at 1,000 writes/s
/// per key value, 32 carry 32,000 tasks/s of one client (a listing reads them all, at once).
/// Part of the stored layout: changing it needs a migration of the client index keys.
pub const CLIENT_SHARDS: u32 = 32;
pub const CLIENT_ID: &str = "client_id";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
/// Sparse global secondary index over (`key_owner`, `key_id`): only API key items carry these.
pub const KEY_OWNER_INDEX: &str = "by_key_owner";
pub const KEY_OWNER: &str = "key_owner";
pub const KEY_ID: &str = "key_id";
/// TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

/// The default and the largest number of status index shards (`STATUS_INDEX_SHARDS`). Each
/// active task writes its shard key twice per status (put, then delete), so a key value takes
/// 2 / shards writes per task on average: 64 shards carry ~32,000 tasks/s, with room for the
/// uneven spread of random task ids over the shards.
pub const DEFAULT_STATUS_SHARDS: u32 = 64;
pub const MAX_STATUS_SHARDS: u32 = 256;

/// Where a task's index keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// How many key values each active status spreads over in the status index.
    pub status_shards: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Self { status_shards: DEFAULT_STATUS_SHARDS }
    }
}

/// A task's shard among `shards`: task ids are random (v4) UUIDs, so their leading hex digits
/// are uniform.
pub fn shard_of(task_id: &str, shards: u32) -> u32 {
    let lead = task_id.get(..8).and_then(|hex| u32::from_str_radix(hex, 16).ok()).unwrap_or(0);
    lead % shards.max(1)
}

impl Layout {
    /// The status index key of a task in `status`; None for a finished task (it leaves the
    /// index).
    pub fn status_key(&self, task_id: &str, status: TaskStatus) -> Option<String> {
        (!status.is_terminal()).then(|| status_shard_key(status, shard_of(task_id, self.status_shards)))
    }
}

/// The status index key value of one shard of `status`.
pub fn status_shard_key(status: TaskStatus, shard: u32) -> String {
    format!("{}#{shard}", status.as_str())
}

/// The client index key value of one shard of a client.
pub fn client_shard_key(client_id: &str, shard: u32) -> String {
    format!("{client_id}#{shard}")
}

/// The client index key of a task.
pub fn client_key(client_id: &str, task_id: &str) -> String {
    client_shard_key(client_id, shard_of(task_id, CLIENT_SHARDS))
}

/// The client index sort key of a task (or of a listing position).
pub fn created_key(created_at_millis: i64, task_id: &str) -> String {
    format!("{:015}#{task_id}", created_at_millis.max(0))
}

/// The task id in a client index sort key.
pub fn task_id_of_created_key(created_key: &str) -> Option<&str> {
    created_key.split_once('#').map(|(_, task_id)| task_id)
}

const TASK_PREFIX: &str = "TASK#";
const PAYLOAD_PREFIX: &str = "PAYLOAD#";
/// The item holding the most status index shards any reader saw configured.
pub const STATUS_SHARDS_ITEM: &str = "META#status-index";
/// The item holding the fleet-wide hold on new jobs (`until`, epoch milliseconds).
pub const HOLD_ITEM: &str = "META#hold";
const IDEMPOTENCY_PREFIX: &str = "IDEMPOTENCY#";
const API_KEY_PREFIX: &str = "APIKEY#";
const WEBHOOK_SECRET_PREFIX: &str = "WEBHOOKSECRET#";

/// The partition key of a client's completion-webhook secret record.
pub fn webhook_secret_key(client_id: &str) -> String {
    format!("{WEBHOOK_SECRET_PREFIX}{client_id}")
}

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

/// The partition key of a task's payload item (written once, when the task is created).
pub fn payload_item_key(task_id: &str) -> String {
    format!("{PAYLOAD_PREFIX}{task_id}")
}

/// The task id of a task item's partition key; None for items that are not tasks.
pub fn task_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(TASK_PREFIX)
}

/// Creates the tasks table as serverless.yml declares it in AWS: on-demand, `pk` hash key,
/// stream with new and old images, the status, client and key-owner indexes, TTL on
/// `expires_at`. For the local fleet
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
        .key_schema(key(STATUS_KEY, KeyType::Hash)?)
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
        .key_schema(key(CLIENT_KEY, KeyType::Hash)?)
        .key_schema(key(CREATED_KEY, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
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
        .attribute_definitions(attribute(STATUS_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(DUE_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(CLIENT_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(CREATED_KEY, ScalarAttributeType::S)?)
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
        assert_eq!(task_id_of(&payload_item_key("abc")), None);
    }

    #[test]
    fn active_tasks_spread_over_the_status_shards_and_finished_ones_leave_the_index() {
        let layout = Layout { status_shards: 4 };
        let id = "0000000b-0000-4000-8000-000000000000";
        assert_eq!(layout.status_key(id, TaskStatus::Received).as_deref(), Some("RECEIVED#3"));
        assert_eq!(layout.status_key(id, TaskStatus::InProgress).as_deref(), Some("IN_PROGRESS#3"));
        assert_eq!(layout.status_key(id, TaskStatus::Done), None);
        assert_eq!(layout.status_key(id, TaskStatus::Failed), None);
    }

    #[test]
    fn random_task_ids_fill_every_shard_about_evenly() {
        let mut counts = vec![0u32; 32];
        for _ in 0..32_000 {
            counts[shard_of(&uuid::Uuid::new_v4().to_string(), 32) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1_200).contains(&n)), "{counts:?}");
    }

    #[test]
    fn created_keys_sort_as_their_times_and_carry_the_task_id() {
        assert!(created_key(999, "b") < created_key(1_000, "a"));
        assert_eq!(task_id_of_created_key(&created_key(5, "t-1")), Some("t-1"));
        assert_eq!(client_key("acme", "00000031-0000"), "acme#17");
    }
}
