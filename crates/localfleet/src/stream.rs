//! What Lambda's DynamoDB event source mapping does in AWS: reads the table's stream, hands the
//! dispatcher batches of records, and honours its batch item failures — a failed record and
//! those after it are retried (with backoff), and after `MAX_RETRIES` the failing record goes
//! to the dead letters and the rest of the batch goes on. A record set aside is also sent, as
//! the invocation record Lambda sends an on-failure destination, to the dispatcher's dead-letter
//! queue. Each invocation is recorded as Lambda records it, with the batch's `IteratorAge`
//! ([`crate::aws_metrics`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

use crate::aws_metrics::AwsMetrics;
use crate::events;
use crate::functions::Functions;
use crate::local_names::Function;
use crate::{DeadLetters, DeliveryChaos};

/// Records per dispatcher invocation (the event source mapping's BatchSize).
pub const BATCH_SIZE: i32 = 100;
/// Retries of a failing record before it is set aside (MaximumRetryAttempts).
pub const MAX_RETRIES: u32 = 3;
const IDLE: Duration = Duration::from_millis(200);

pub struct StreamSource {
    pub client: Client,
    pub stream_arn: String,
    pub region: String,
    pub metrics: Arc<AwsMetrics>,
    /// The dispatcher's dead-letter queue (its on-failure destination).
    pub sqs: aws_sdk_sqs::Client,
    pub dead_letter_queue_url: String,
}

/// Follows every shard of the stream until the task is dropped.
pub async fn run(source: StreamSource, functions: Arc<Functions>, dead_letters: DeadLetters, chaos: DeliveryChaos) {
    let source = Arc::new(source);
    let mut followed = HashSet::new();
    // Dropping the set (when this task is aborted) stops the followers too.
    let mut followers = tokio::task::JoinSet::new();
    loop {
        match source.client.describe_stream().stream_arn(&source.stream_arn).send().await {
            Ok(described) => {
                let shards = described.stream_description.and_then(|d| d.shards).unwrap_or_default();
                for shard in shards.into_iter().filter_map(|s| s.shard_id) {
                    if followed.insert(shard.clone()) {
                        let (source, functions, dead_letters) =
                            (source.clone(), functions.clone(), dead_letters.clone());
                        followers.spawn(async move { follow(&source, &shard, &functions, &dead_letters, chaos).await });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %DisplayErrorContext(&e), "cannot describe the stream"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn follow(
    source: &StreamSource,
    shard: &str,
    functions: &Functions,
    dead_letters: &DeadLetters,
    chaos: DeliveryChaos,
) {
    let mut iterator = None;
    let mut last_sequence: Option<String> = None;
    loop {
        if iterator.is_none() {
            let mut request = source.client.get_shard_iterator().stream_arn(&source.stream_arn).shard_id(shard);
            request = match &last_sequence {
                Some(sequence) => {
                    request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(sequence)
                }
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            match request.send().await {
                Ok(answer) => iterator = answer.shard_iterator,
                Err(e) => {
                    tracing::warn!(shard, error = %DisplayErrorContext(&e), "cannot open the shard");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(current) = iterator.take() else { return };
        let page = match source.client.get_records().shard_iterator(current).limit(BATCH_SIZE).send().await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(shard, error = %DisplayErrorContext(&e), "cannot read the shard; reopening");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let records = page.records.unwrap_or_default();
        if let Some(last) = records.last().and_then(|r| r.dynamodb.as_ref()).and_then(|d| d.sequence_number.clone()) {
            last_sequence = Some(last);
        }
        let closed = page.next_shard_iterator.is_none();
        iterator = page.next_shard_iterator;
        if records.is_empty() {
            if closed {
                return;
            }
            tokio::time::sleep(IDLE).await;
            continue;
        }
        if fastrand::f64() < chaos.duplicate_stream_batch {
            deliver(source, shard, records.clone(), functions, dead_letters).await;
        }
        deliver(source, shard, records, functions, dead_letters).await;
    }
}

fn sequence(record: &Record) -> Option<&str> {
    record.dynamodb.as_ref().and_then(|d| d.sequence_number.as_deref())
}

fn created_millis(record: &Record) -> Option<i64> {
    record.dynamodb.as_ref()?.approximate_creation_date_time?.to_millis().ok()
}

async fn deliver(
    source: &StreamSource,
    shard: &str,
    mut pending: Vec<Record>,
    functions: &Functions,
    dead_letters: &DeadLetters,
) {
    let mut retries = 0;
    while !pending.is_empty() {
        let event = events::dynamodb_event(
            pending.iter().map(|r| events::dynamodb_record(r, &source.stream_arn, &source.region)).collect(),
        );
        if let Some(created) = pending.last().and_then(created_millis) {
            source.metrics.iterator_age(created);
        }
        let invoked = source.metrics.invoke(Function::Dispatcher, functions.invoke_dispatcher(event)).await;
        let failed: HashSet<String> = match invoked {
            Ok(answer) => serde_json::from_value::<DynamoDbEventResponse>(answer)
                .map(|a| a.batch_item_failures.into_iter().filter_map(|f| f.item_identifier).collect())
                .unwrap_or_else(|_| pending.iter().filter_map(sequence).map(str::to_owned).collect()),
            Err(error) => {
                tracing::error!(%error, "dispatcher invocation failed; retrying the batch");
                pending.iter().filter_map(sequence).map(str::to_owned).collect()
            }
        };
        // Lambda checkpoints before the first failed record and retries from it.
        let Some(first_failed) = pending.iter().position(|r| sequence(r).is_some_and(|s| failed.contains(s))) else {
            return;
        };
        pending.drain(..first_failed);
        retries += 1;
        if retries > MAX_RETRIES {
            let poison = pending.remove(0);
            let record = events::dynamodb_record(&poison, &source.stream_arn, &source.region);
            tracing::error!(
                sequence = sequence(&poison),
                "stream record failed {MAX_RETRIES} retries; sent to the dead letters"
            );
            dead_letters.push(record);
            send_to_dead_letter_queue(source, shard, &poison).await;
            retries = 0;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(retries))).await;
    }
}

/// What Lambda sends a stream event source's on-failure destination for a batch it gave up on:
/// where the records are, not the records.
async fn send_to_dead_letter_queue(source: &StreamSource, shard: &str, poison: &Record) {
    let sequence = sequence(poison);
    let arrived = created_millis(poison)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let function = source.metrics.names().function(Function::Dispatcher);
    let body = serde_json::json!({
        "requestContext": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "functionArn": format!("arn:aws:lambda:{}:{}:function:{function}", source.region, events::ACCOUNT),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": MAX_RETRIES + 1,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence,
            "endSequenceNumber": sequence,
            "approximateArrivalOfFirstRecord": arrived,
            "approximateArrivalOfLastRecord": arrived,
            "batchSize": 1,
            "streamArn": source.stream_arn,
        },
    });
    let sent =
        source.sqs.send_message().queue_url(&source.dead_letter_queue_url).message_body(body.to_string()).send().await;
    if let Err(error) = sent {
        tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "cannot send to the dispatcher's dead-letter queue");
    }
}
