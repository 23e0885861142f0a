//! The table `table::create` makes, against the AWS emulator (moto server): its layout (key,
//! stream, the status, client and key-owner indexes, TTL), and a stream whose records carry the
//! images the dispatcher reads (status, attempts, due_at) — and, for the payload item written
//! with each task, an image that is no task's.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{
    AttributeValue as TableAttributeValue, BillingMode, KeyType, ProjectionType, ScalarAttributeType,
    StreamViewType as TableStreamViewType, TimeToLiveStatus,
};
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, ShardIteratorType};
use common::fresh_store;
use serde_json::json;
use taskfleet_adapters::{DynamoStore, record, table};
use taskfleet_core::blob::Content;
use taskfleet_core::dispatch::{DispatchMessage, Snapshot, Step, dispatch_for};
use taskfleet_core::lifecycle::Transition;
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{Task, TaskId, TaskStatus, Timestamp};

/// An index as DescribeTable reports it: keys, projection type, projected attributes (sorted).
#[derive(Debug, PartialEq)]
struct IndexLayout {
    keys: Vec<(String, KeyType)>,
    projection: Option<ProjectionType>,
    projected: Vec<String>,
}

async fn stream_arn(store: &DynamoStore) -> String {
    store
        .client()
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .expect("DescribeTable")
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the table has a stream")
}

#[tokio::test]
async fn the_table_has_the_declared_layout() {
    let store = fresh_store().await;
    let description = store
        .client()
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .expect("DescribeTable")
        .table
        .expect("table");

    let keys: Vec<_> = description.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
    assert_eq!(keys, [(table::PK, KeyType::Hash)]);

    let stream = description.stream_specification().expect("stream");
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&TableStreamViewType::NewAndOldImages));

    // Every index, with its keys and what it projects.
    let indexes: BTreeMap<String, IndexLayout> = description
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            let keys =
                index.key_schema().iter().map(|k| (k.attribute_name().to_owned(), k.key_type().clone())).collect();
            let projection = index.projection().expect("projection");
            let mut projected = projection.non_key_attributes().to_vec();
            projected.sort_unstable();
            let layout = IndexLayout { keys, projection: projection.projection_type().cloned(), projected };
            (index.index_name().expect("index name").to_owned(), layout)
        })
        .collect();
    let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
    assert_eq!((table::STATUS_INDEX, table::CLIENT_INDEX), ("by_status", "by_client"));
    assert_eq!(table::KEY_OWNER_INDEX, "by_key_owner");
    assert_eq!(
        indexes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["by_client", "by_key_owner", "by_status"],
        "{indexes:#?}"
    );
    assert_eq!(
        indexes.get("by_status"),
        Some(&IndexLayout {
            keys: vec![("status_key".to_owned(), KeyType::Hash), ("due_at".to_owned(), KeyType::Range)],
            projection: Some(ProjectionType::Include),
            projected: owned(&["attempts", "series_start"]),
        }),
        "{indexes:#?}"
    );
    assert_eq!(
        indexes.get("by_client"),
        Some(&IndexLayout {
            keys: vec![("client_key".to_owned(), KeyType::Hash), ("created_key".to_owned(), KeyType::Range)],
            projection: Some(ProjectionType::KeysOnly),
            projected: vec![],
        }),
        "{indexes:#?}"
    );
    assert_eq!(
        indexes.get("by_key_owner"),
        Some(&IndexLayout {
            keys: vec![("key_owner".to_owned(), KeyType::Hash), ("key_id".to_owned(), KeyType::Range)],
            projection: Some(ProjectionType::KeysOnly),
            projected: vec![],
        }),
        "{indexes:#?}"
    );

    // The keys are declared with their types: strings, and a number (milliseconds) for due_at;
    // nothing else is declared (the client index sorts on a string).
    let attributes: BTreeMap<&str, &ScalarAttributeType> =
        description.attribute_definitions().iter().map(|a| (a.attribute_name(), a.attribute_type())).collect();
    let expected: BTreeMap<&str, &ScalarAttributeType> = BTreeMap::from([
        ("pk", &ScalarAttributeType::S),
        ("status_key", &ScalarAttributeType::S),
        ("due_at", &ScalarAttributeType::N),
        ("client_key", &ScalarAttributeType::S),
        ("created_key", &ScalarAttributeType::S),
        ("key_owner", &ScalarAttributeType::S),
        ("key_id", &ScalarAttributeType::S),
    ]);
    assert_eq!(attributes, expected);
    assert_eq!(description.billing_mode_summary().and_then(|b| b.billing_mode()), Some(&BillingMode::PayPerRequest));

    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("DescribeTimeToLive")
        .time_to_live_description
        .expect("TTL description");
    assert_eq!(ttl.attribute_name(), Some(table::EXPIRES_AT));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

/// A stream image's attribute as the table's SDK types it (the two SDKs have one shape each).
fn table_value(value: &AttributeValue) -> TableAttributeValue {
    match value {
        AttributeValue::S(text) => TableAttributeValue::S(text.clone()),
        AttributeValue::N(number) => TableAttributeValue::N(number.clone()),
        AttributeValue::Bool(flag) => TableAttributeValue::Bool(*flag),
        AttributeValue::Null(null) => TableAttributeValue::Null(*null),
        AttributeValue::L(list) => TableAttributeValue::L(list.iter().map(table_value).collect()),
        AttributeValue::M(map) => {
            TableAttributeValue::M(map.iter().map(|(k, v)| (k.clone(), table_value(v))).collect())
        }
        other => panic!("a task image holds no {other:?}"),
    }
}

/// What the dispatcher reads of an image.
fn snapshot(image: &HashMap<String, AttributeValue>) -> (TaskId, Snapshot) {
    let item: HashMap<String, TableAttributeValue> = image.iter().map(|(k, v)| (k.clone(), table_value(v))).collect();
    record::snapshot_from_image(&serde_dynamo::Item::from(item)).expect("a readable image").expect("a task image")
}

#[tokio::test]
async fn the_stream_carries_new_and_old_images_with_due_at() {
    let store = fresh_store().await;
    let now = Timestamp::now();
    let deadline = now.plus_seconds(900);
    let later = now.plus_seconds(1_800);
    let retry_at = now.plus_seconds(120);
    let task = Task::received(common::client_id(), now, 4_000_000_000);
    store.insert(&task, &Content::Inline(json!({"n": 1})), 4_000_000_000).await.unwrap();
    let start = Transition::start(
        &task.task_id,
        1,
        common::token_digest(1),
        (now, deadline),
        &taskfleet_core::TtlPolicy::default(),
    );
    let started = store.apply(&start).await.unwrap();
    assert!(matches!(started, WriteOutcome::Applied(_)), "{started:?}");
    // A rejected (conditional-check-failed) write changes nothing, so it is not in the stream.
    let repeated = store.apply(&start).await.unwrap();
    assert!(matches!(repeated, WriteOutcome::Rejected(Some(_))), "{repeated:?}");
    let beat = Transition::heartbeat(
        &task.task_id,
        1,
        common::token_digest(1),
        (now.plus_seconds(60), later),
        &taskfleet_core::TtlPolicy::default(),
    );
    let beaten = store.apply(&beat).await.unwrap();
    assert!(matches!(beaten, WriteOutcome::Applied(_)), "{beaten:?}");
    let retry = Transition::retry(&task.task_id, 1, "attempt 1: refused", now.plus_seconds(61), retry_at);
    let retried = store.apply(&retry).await.unwrap();
    assert!(matches!(retried, WriteOutcome::Applied(_)), "{retried:?}");

    let sdk = taskfleet_testkit::sdk_config().await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let arn = stream_arn(&store).await;
    let shards = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStream")
        .stream_description
        .map(|d| d.shards.unwrap_or_default())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().expect("shard id"))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        let page = streams.get_records().set_shard_iterator(iterator).send().await.expect("GetRecords");
        records.extend(page.records.unwrap_or_default());
    }

    // The table's note of its status index shards is no task's either.
    let note = AttributeValue::S(table::STATUS_SHARDS_ITEM.to_owned());
    records.retain(|record| record.dynamodb().and_then(|c| c.keys()).and_then(|k| k.get("pk")) != Some(&note));
    let pk = AttributeValue::S(table::task_key(task.task_id.as_str()));
    let ms = |t: Timestamp| Some(AttributeValue::N(t.as_millis().to_string()));
    let fields = |image: Option<&HashMap<String, AttributeValue>>| {
        let image = image.expect("image");
        assert_eq!(image.get("pk"), Some(&pk));
        (image.get("status").cloned(), image.get("attempts").cloned(), image.get("due_at").cloned())
    };
    let received = |attempts: &str, due: Timestamp| {
        (Some(AttributeValue::S("RECEIVED".into())), Some(AttributeValue::N(attempts.into())), ms(due))
    };
    let in_progress =
        |due: Timestamp| (Some(AttributeValue::S("IN_PROGRESS".into())), Some(AttributeValue::N("1".into())), ms(due));
    // The payload item is written first, once: its record is no task's.
    let [payload, insert, start, heartbeat, retry] = records.as_slice() else { panic!("five records: {records:#?}") };
    assert_eq!(payload.event_name(), Some(&OperationType::Insert));
    let change = payload.dynamodb().expect("change");
    let image = change.new_image().expect("image");
    assert_eq!(image.get("pk"), Some(&AttributeValue::S(table::payload_item_key(task.task_id.as_str()))));
    let item: HashMap<String, TableAttributeValue> = image.iter().map(|(k, v)| (k.clone(), table_value(v))).collect();
    assert_eq!(record::snapshot_from_image(&serde_dynamo::Item::from(item)).unwrap(), None);

    assert_eq!(insert.event_name(), Some(&OperationType::Insert));
    let change = insert.dynamodb().expect("change");
    assert_eq!(change.keys().and_then(|k| k.get("pk")), Some(&pk));
    assert_eq!(change.old_image(), None, "an insert has no old image");
    assert_eq!(fields(change.new_image()), received("0", now));
    let new = snapshot(change.new_image().unwrap());
    let client_id = task.client_id.to_string();
    assert_eq!(
        new,
        (
            task.task_id.clone(),
            Snapshot {
                status: TaskStatus::Received,
                attempts: 0,
                due_at: now,
                client_id: client_id.clone(),
                delivery: None
            }
        )
    );
    let message =
        DispatchMessage { task_id: task.task_id.to_string(), attempt: 1, step: Step::Start, due_at: now.as_millis() };
    assert_eq!(
        dispatch_for(&task.task_id, None, Some(new.1)),
        Some((message, client_id.clone())),
        "a new task's first attempt starts at once, in its client's message group"
    );

    assert_eq!(start.event_name(), Some(&OperationType::Modify));
    let change = start.dynamodb().expect("change");
    assert_eq!(fields(change.old_image()), received("0", now));
    assert_eq!(fields(change.new_image()), in_progress(deadline));
    let new_image = change.new_image().unwrap();
    assert_eq!(
        new_image.get("tokens"),
        Some(&AttributeValue::M(HashMap::from([("1".to_owned(), AttributeValue::S(common::token_digest(1)))])))
    );
    let shard = table::shard_of(task.task_id.as_str(), table::DEFAULT_STATUS_SHARDS);
    assert_eq!(new_image.get("status_key"), Some(&AttributeValue::S(format!("IN_PROGRESS#{shard}"))));
    let AttributeValue::L(history) = &new_image["history"] else { panic!("history is a list: {new_image:?}") };
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(AttributeValue::is_m), "{history:?}");
    let running = Snapshot {
        status: TaskStatus::InProgress,
        attempts: 1,
        due_at: deadline,
        client_id: client_id.clone(),
        delivery: None,
    };
    assert_eq!(snapshot(new_image).1, running);

    assert_eq!(heartbeat.event_name(), Some(&OperationType::Modify));
    let change = heartbeat.dynamodb().expect("change");
    assert_eq!(fields(change.old_image()), in_progress(deadline));
    assert_eq!(fields(change.new_image()), in_progress(later), "a heartbeat moves only the deadline");

    assert_eq!(retry.event_name(), Some(&OperationType::Modify));
    let change = retry.dynamodb().expect("change");
    assert_eq!(fields(change.old_image()), in_progress(later));
    assert_eq!(fields(change.new_image()), received("1", retry_at));
    let (old, new) = (snapshot(change.old_image().unwrap()).1, snapshot(change.new_image().unwrap()).1);
    assert_eq!(
        new,
        Snapshot {
            status: TaskStatus::Received,
            attempts: 1,
            due_at: retry_at,
            client_id: client_id.clone(),
            delivery: None
        }
    );
    // The retry's timer: attempt 2 starts when its backoff ends.
    let message = DispatchMessage {
        task_id: task.task_id.to_string(),
        attempt: 2,
        step: Step::Start,
        due_at: retry_at.as_millis(),
    };
    assert_eq!(dispatch_for(&task.task_id, Some(old), Some(new)), Some((message, client_id)));
}
