//! Creates what serverless.yml creates in AWS, in the emulator: the tasks table (with stream,
//! TTL and status index), the jobs queue (timers; a standard queue, its messages grouped by
//! client, with a dead-letter queue after five receives), the deliveries queue (completion-webhook
//! timers, the same way, with a dead-letter queue of its own), the dispatcher's dead-letter queue (its
//! on-failure destination) and the bucket of large payloads and results.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};

/// Names of the emulator resources; one set per fleet, so tests can run fleets side by side.
#[derive(Debug, Clone)]
pub struct Names {
    /// What every name starts with; the functions are `{prefix}-ingest` …, as serverless names
    /// them `taskfleet-<stage>-ingest` ….
    pub prefix: String,
    pub table: String,
    /// The jobs queue (`JOBS_QUEUE_URL`).
    pub queue: String,
    /// The jobs queue's dead-letter queue.
    pub jobs_dlq: String,
    /// The deliveries queue (`DELIVERIES_QUEUE_URL`).
    pub deliveries: String,
    /// The deliveries queue's dead-letter queue.
    pub deliveries_dlq: String,
    /// The dispatcher's on-failure destination (stream records it gave up on).
    pub dispatcher_dlq: String,
    /// The blobs bucket (`BLOBS_BUCKET`): a valid S3 bucket name whatever the prefix.
    pub bucket: String,
}

impl Names {
    /// Resource names derived from one prefix (e.g. `taskfleet-dev`).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            table: format!("{prefix}-tasks"),
            queue: format!("{prefix}-jobs"),
            jobs_dlq: format!("{prefix}-jobs-dlq"),
            deliveries: format!("{prefix}-deliveries"),
            deliveries_dlq: format!("{prefix}-deliveries-dlq"),
            dispatcher_dlq: format!("{prefix}-dispatcher-dlq"),
            bucket: bucket_name(prefix),
        }
    }
}

/// `{prefix}-blobs` as a valid S3 bucket name: 3-63 characters of a-z, 0-9 and '-' (no dots, which
/// break virtual-hosted TLS names), starting with a letter or digit. Anything else in the prefix
/// becomes '-', and a long prefix is cut so that the "-blobs" suffix stays.
pub fn bucket_name(prefix: &str) -> String {
    const SUFFIX: &str = "-blobs";
    let mut stem: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    stem.truncate(63 - SUFFIX.len());
    let stem = stem.trim_matches('-');
    if stem.is_empty() { format!("taskfleet{SUFFIX}") } else { format!("{stem}{SUFFIX}") }
}

/// What exists once [`ensure`] returns.
#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    pub stream_arn: String,
    /// The jobs queue.
    pub queue_url: String,
    pub queue_arn: String,
    pub dead_letter_queue_url: String,
    /// The deliveries queue.
    pub deliveries_queue_url: String,
    pub deliveries_queue_arn: String,
    pub deliveries_dlq_url: String,
    /// The dispatcher's dead-letter queue (its on-failure destination).
    pub dispatcher_dlq_url: String,
    /// The blobs bucket's name (what the functions get as `BLOBS_BUCKET`).
    pub bucket: String,
}

#[derive(Debug, thiserror::Error)]
#[error("could not create {what}: {reason}")]
pub struct ProvisionError {
    what: &'static str,
    reason: String,
}

fn failed(what: &'static str) -> impl FnOnce(String) -> ProvisionError {
    move |reason| ProvisionError { what, reason }
}

/// Creates whatever is missing; safe to run against resources a previous run created.
pub async fn ensure(sdk: &SdkConfig, names: &Names) -> Result<Resources, ProvisionError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    match taskfleet_adapters::table::create(&dynamodb, &names.table).await {
        Ok(()) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(failed("the tasks table")(DisplayErrorContext(&e).to_string())),
    }
    let described = dynamodb
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
        .map_err(|e| failed("the tasks table")(DisplayErrorContext(&e).to_string()))?;
    let stream_arn = described
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or_else(|| failed("the tasks table")("it has no stream".into()))?;

    taskfleet_adapters::blobs::create_bucket(&taskfleet_adapters::blobs::client(sdk), &names.bucket)
        .await
        .map_err(|e| failed("the blobs bucket")(e.to_string()))?;

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dead_letter_queue_url = create_queue(&sqs, &names.jobs_dlq, None).await?;
    let dispatcher_dlq_url = create_queue(&sqs, &names.dispatcher_dlq, None).await?;
    let dead_letter_arn = queue_arn(&sqs, &dead_letter_queue_url).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVES.to_string()})
            .to_string();
    let queue_url = create_queue(&sqs, &names.queue, Some(redrive)).await?;
    let jobs_arn = queue_arn(&sqs, &queue_url).await?;
    let deliveries_dlq_url = create_queue(&sqs, &names.deliveries_dlq, None).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": queue_arn(&sqs, &deliveries_dlq_url).await?,
        "maxReceiveCount": MAX_RECEIVES.to_string()
    })
    .to_string();
    let deliveries_queue_url = create_queue(&sqs, &names.deliveries, Some(redrive)).await?;
    let deliveries_queue_arn = queue_arn(&sqs, &deliveries_queue_url).await?;

    Ok(Resources {
        table: names.table.clone(),
        stream_arn,
        queue_url,
        queue_arn: jobs_arn,
        dead_letter_queue_url,
        deliveries_queue_url,
        deliveries_queue_arn,
        deliveries_dlq_url,
        dispatcher_dlq_url,
        bucket: names.bucket.clone(),
    })
}

/// Stores the given client keys unless they exist (keys chosen by the operator, e.g. the
/// development key; the admin CLI issues random ones).
pub async fn ensure_keys(
    sdk: &SdkConfig,
    table: &str,
    keys: &[(taskfleet_core::ClientId, String)],
) -> Result<(), ProvisionError> {
    use taskfleet_core::auth::KeyRecordStore;
    let store = taskfleet_adapters::DynamoKeyRecords::new(aws_sdk_dynamodb::Client::new(sdk), table);
    for (client, key) in keys {
        let issued = taskfleet_core::auth::adopt(client, key, taskfleet_core::Timestamp::now())
            .ok_or_else(|| failed("a client key")("not shaped tfk_<8 alphanumerics>_<43 base64url>".into()))?;
        match store.save(&issued.record).await {
            Ok(()) | Err(taskfleet_core::StoreError::AlreadyExists) => {}
            Err(e) => return Err(failed("a client key")(e.to_string())),
        }
    }
    Ok(())
}

/// Seconds a received message stays invisible before it is delivered again: a message the
/// caller reported failed comes back after this (in AWS: more than the caller's timeout).
pub const VISIBILITY_TIMEOUT_SECONDS: i32 = 5;
/// Receives of one message before the queue moves it to its dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive: Option<String>,
) -> Result<String, ProvisionError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut request = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_SECONDS.to_string());
    if let Some(policy) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    request
        .send()
        .await
        .map_err(|e| failed("a queue")(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?
        .queue_url
        .ok_or_else(|| failed("a queue")("no URL returned".into()))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed("a queue")(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
    answer
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| failed("a queue")("no ARN returned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (3..=63).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn the_bucket_is_named_after_the_prefix() {
        assert_eq!(Names::with_prefix("taskfleet-dev").bucket, "taskfleet-dev-blobs");
        assert_eq!(bucket_name("e2e-0123456789ab"), "e2e-0123456789ab-blobs");
    }

    #[test]
    fn any_prefix_makes_a_valid_bucket_name() {
        for prefix in ["Taskfleet_Dev", "-x-", "", "..a..b..", "ÄÖÜ", &"long-".repeat(30), "a.", "my fleet"] {
            let name = bucket_name(prefix);
            assert!(valid(&name), "{prefix:?} -> {name:?}");
            assert!(name.ends_with("-blobs"), "{name}");
        }
        assert_eq!(bucket_name("Taskfleet_Dev"), "taskfleet-dev-blobs");
        assert_eq!(bucket_name("team.fleet"), "team-fleet-blobs");
    }
}
