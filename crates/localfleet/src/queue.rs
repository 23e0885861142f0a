//! What SNS's Lambda subscription does in AWS: delivers each dispatch message to the caller.
//! Locally the topic fans out to an SQS queue (the emulator's HTTP subscriptions are synchronous
//! and drop attributes); this reads it and invokes the caller with the SNS event Lambda would get.
//! A failed invocation leaves the message to reappear after the visibility timeout — Lambda's
//! async retries — and after three receives the queue moves it to its dead-letter queue.

use std::sync::Arc;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use tokio::task::JoinSet;

use crate::DeliveryChaos;
use crate::events;
use crate::functions::Functions;

pub struct QueueSource {
    pub client: Client,
    pub queue_url: String,
    pub subscription_arn: String,
}

/// Polls the queue until the task is dropped; up to ten messages are handled at once.
pub async fn run(source: Arc<QueueSource>, functions: Arc<Functions>, chaos: DeliveryChaos) {
    loop {
        let received = source
            .client
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let messages = match received {
            Ok(answer) => answer.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "cannot read the caller queue");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut invocations = JoinSet::new();
        for message in messages {
            let (source, functions) = (source.clone(), functions.clone());
            invocations.spawn(async move {
                let Some(receipt) = message.receipt_handle else { return };
                let envelope = message.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
                let event = events::sns_event(&envelope, &source.subscription_arn);
                if fastrand::f64() < chaos.duplicate_message {
                    let _ = functions.invoke_caller(event.clone()).await;
                }
                match functions.invoke_caller(event).await {
                    Ok(()) => {
                        let deleted = source
                            .client
                            .delete_message()
                            .queue_url(&source.queue_url)
                            .receipt_handle(receipt)
                            .send()
                            .await;
                        if let Err(e) = deleted {
                            tracing::warn!(error = %DisplayErrorContext(&e), "cannot delete a delivered message");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "caller failed; the message will be delivered again"),
                }
            });
        }
        invocations.join_all().await;
    }
}
