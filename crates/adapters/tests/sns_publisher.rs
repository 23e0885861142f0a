//! SnsPublisher against the AWS emulator (moto server) through the real SDK: messages published
//! in batches reach an SQS queue subscribed to the topic, intact.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own topic and queue.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use taskfleet_adapters::SnsPublisher;
use taskfleet_core::TaskId;
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::ports::Publisher;

struct Subscribed {
    publisher: SnsPublisher,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// A fresh topic, a fresh queue subscribed to it with raw message delivery, and a publisher.
async fn subscribed_queue() -> Subscribed {
    let sdk = taskfleet_testkit::sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let topic_arn = sns
        .create_topic()
        .name(taskfleet_testkit::unique_name("dispatch"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("topic ARN");
    let queue_url = sqs
        .create_queue()
        .queue_name(taskfleet_testkit::unique_name("dispatch"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("queue ARN");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("Subscribe");

    Subscribed { publisher: SnsPublisher::new(sns, topic_arn), sqs, queue_url }
}

/// Receives (and deletes) messages until `expected` bodies arrived or a few seconds passed.
async fn receive_bodies(sqs: &aws_sdk_sqs::Client, queue_url: &str, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bodies = Vec::new();
    while bodies.len() < expected && Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for message in received.messages.unwrap_or_default() {
            bodies.push(message.body.expect("message body"));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle.expect("receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    bodies
}

fn messages(n: u32) -> Vec<DispatchMessage> {
    (1..=n).map(|attempt| DispatchMessage { task_id: TaskId::generate().to_string(), attempt }).collect()
}

#[tokio::test]
async fn every_message_of_several_batches_arrives_intact() {
    let subscribed = subscribed_queue().await;
    // 23 messages: PublishBatch calls of 10, 10 and 3.
    let sent = messages(23);

    let outcomes = subscribed.publisher.publish(&sent).await;

    assert_eq!(outcomes.len(), 23);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, &Ok(()), "message {i}");
    }

    let bodies = receive_bodies(&subscribed.sqs, &subscribed.queue_url, 23).await;
    assert_eq!(bodies.len(), 23, "received: {bodies:#?}");
    let received: BTreeSet<(TaskId, u32)> = bodies
        .iter()
        .map(|body| {
            let parsed: DispatchMessage =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not a dispatch message: {e}"));
            assert_eq!(body, &serde_json::to_string(&parsed).unwrap(), "the body is the message's JSON, unwrapped");
            DispatchMessage::parse(body).expect("the caller accepts the body")
        })
        .collect();
    let expected: BTreeSet<(TaskId, u32)> =
        sent.iter().map(|m| (TaskId::parse(&m.task_id).unwrap(), m.attempt)).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn nothing_published_is_an_empty_answer() {
    let subscribed = subscribed_queue().await;
    assert!(subscribed.publisher.publish(&[]).await.is_empty());
}

#[tokio::test]
async fn publishing_to_a_missing_topic_fails_every_message() {
    let sdk = taskfleet_testkit::sdk_config().await;
    let missing_topic = format!("arn:aws:sns:us-east-1:123456789012:{}", taskfleet_testkit::unique_name("missing"));
    let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&sdk), missing_topic);

    let outcomes = publisher.publish(&messages(13)).await;

    assert_eq!(outcomes.len(), 13);
    for (i, outcome) in outcomes.iter().enumerate() {
        let error = outcome.as_ref().expect_err("published to a missing topic");
        assert!(error.0.contains("NotFound") || error.0.to_lowercase().contains("not exist"), "message {i}: {error}");
    }
}
