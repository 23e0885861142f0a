//! The table `table::create` makes, against the AWS emulator (moto server): its layout, and a
//! stream whose records carry the images the dispatcher reads.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use aws_sdk_dynamodb::types::{KeyType, ProjectionType, StreamViewType as TableStreamViewType, TimeToLiveStatus};
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, ShardIteratorType};
use common::fresh_store;
use serde_json::json;
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::lifecycle::Transition;
use taskfleet_core::ports::{TaskStore, WriteOutcome};
use taskfleet_core::{Task, Timestamp};

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

    let [index] = description.global_secondary_indexes() else { panic!("one index: {description:?}") };
    assert_eq!(index.index_name(), Some(table::STATUS_INDEX));
    let index_keys: Vec<_> = index.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
    assert_eq!(index_keys, [(table::STATUS, KeyType::Hash), (table::UPDATED_AT, KeyType::Range)]);
    assert_eq!(index.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::KeysOnly));

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

#[tokio::test]
async fn the_stream_carries_new_and_old_images() {
    let store = fresh_store().await;
    let now = Timestamp::now();
    let task = Task::received(common::client_id(), json!({"n": 1}), now, 4_000_000_000);
    store.insert(&task).await.unwrap();
    let started = store.apply(&Transition::start(&task.task_id, 1, now)).await.unwrap();
    assert!(matches!(started, WriteOutcome::Applied(_)), "{started:?}");
    // A rejected (conditional-check-failed) write changes nothing, so it is not in the stream.
    let repeated = store.apply(&Transition::start(&task.task_id, 1, now)).await.unwrap();
    assert!(matches!(repeated, WriteOutcome::Rejected(Some(_))), "{repeated:?}");

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

    let pk = AttributeValue::S(table::task_key(task.task_id.as_str()));
    let status = |image: Option<&std::collections::HashMap<String, AttributeValue>>| {
        let image = image.expect("image");
        assert_eq!(image.get("pk"), Some(&pk));
        (image.get("status").cloned(), image.get("attempts").cloned())
    };
    let [insert, modify] = records.as_slice() else { panic!("two records: {records:#?}") };

    assert_eq!(insert.event_name(), Some(&OperationType::Insert));
    let change = insert.dynamodb().expect("change");
    assert_eq!(change.keys().and_then(|k| k.get("pk")), Some(&pk));
    assert_eq!(change.old_image(), None, "an insert has no old image");
    assert_eq!(
        status(change.new_image()),
        (Some(AttributeValue::S("RECEIVED".into())), Some(AttributeValue::N("0".into())))
    );

    assert_eq!(modify.event_name(), Some(&OperationType::Modify));
    let change = modify.dynamodb().expect("change");
    assert_eq!(
        status(change.old_image()),
        (Some(AttributeValue::S("RECEIVED".into())), Some(AttributeValue::N("0".into())))
    );
    assert_eq!(
        status(change.new_image()),
        (Some(AttributeValue::S("IN_PROGRESS".into())), Some(AttributeValue::N("1".into())))
    );
}
