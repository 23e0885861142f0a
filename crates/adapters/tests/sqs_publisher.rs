//! SqsPublisher against the AWS emulator (moto server) through the real SDK: messages sent in
//! concurrent batches arrive intact, with their message group, and not before their delay.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own queue.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use taskfleet_adapters::SqsPublisher;
use taskfleet_core::dispatch::{Dispatch, DispatchMessage, Step};
use taskfleet_core::ports::Publisher;
use taskfleet_core::{TaskId, Timestamp};

struct Queue {
    publisher: SqsPublisher,
    sqs: aws_sdk_sqs::Client,
    url: String,
}

async fn queue() -> Queue {
    let sdk = taskfleet_testkit::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name(taskfleet_testkit::unique_name("jobs"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL");
    Queue { publisher: SqsPublisher::new(sqs.clone(), &url), sqs, url }
}

/// Receives (and deletes) messages until `expected` arrived or `within` passed: (body, group,
/// when it arrived).
async fn receive(queue: &Queue, expected: usize, within: Duration) -> Vec<(String, Option<String>, Instant)> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    while received.len() < expected && Instant::now() < deadline {
        let answer = queue
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for message in answer.messages.unwrap_or_default() {
            let group =
                message.attributes.as_ref().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned();
            received.push((message.body.expect("message body"), group, Instant::now()));
            queue
                .sqs
                .delete_message()
                .queue_url(&queue.url)
                .receipt_handle(message.receipt_handle.expect("receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    received
}

fn due_now(n: u32, group: &str) -> Vec<Dispatch> {
    let now = Timestamp::now();
    (1..=n)
        .map(|attempt| {
            let message = DispatchMessage {
                task_id: TaskId::generate().to_string(),
                attempt,
                step: Step::Start,
                due_at: now.as_millis(),
            };
            Dispatch::new(message, group, now)
        })
        .collect()
}

#[tokio::test]
async fn every_message_of_several_batches_arrives_intact_with_its_group() {
    let queue = queue().await;
    // 23 messages: SendMessageBatch calls of 10, 10 and 3, made concurrently.
    let sent = due_now(23, "acme");
    let outcomes = queue.publisher.publish(&sent).await;
    assert_eq!(outcomes, vec![Ok(()); 23]);

    let received = receive(&queue, 23, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 23);
    let bodies: BTreeSet<String> = received.iter().map(|(body, _, _)| body.clone()).collect();
    let expected: BTreeSet<String> = sent.iter().map(|d| serde_json::to_string(&d.message).unwrap()).collect();
    assert_eq!(bodies, expected, "the body is the message's JSON");
    for (body, group, _) in &received {
        DispatchMessage::parse(body).expect("the caller accepts the body");
        assert_eq!(group.as_deref(), Some("acme"), "the client is the message group");
    }
}

#[tokio::test]
async fn a_delayed_message_arrives_no_sooner_than_its_delay() {
    let queue = queue().await;
    let now = Timestamp::now();
    let message = DispatchMessage {
        task_id: TaskId::generate().to_string(),
        attempt: 2,
        step: Step::Start,
        due_at: now.plus_seconds(2).as_millis(),
    };
    let sent_at = Instant::now();
    let outcomes = queue.publisher.publish(&[Dispatch::new(message, "acme", now)]).await;
    assert_eq!(outcomes, [Ok(())]);
    let received = receive(&queue, 1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    let waited = received[0].2 - sent_at;
    assert!(waited >= Duration::from_millis(1_900), "arrived after {waited:?}");
}

#[tokio::test]
async fn nothing_sent_is_an_empty_answer() {
    assert!(queue().await.publisher.publish(&[]).await.is_empty());
}

#[tokio::test]
async fn sending_to_a_missing_queue_fails_every_message() {
    let sdk = taskfleet_testkit::sdk_config().await;
    let missing =
        format!("{}/123456789012/{}", taskfleet_testkit::endpoint(), taskfleet_testkit::unique_name("missing"));
    let publisher = SqsPublisher::new(aws_sdk_sqs::Client::new(&sdk), missing);
    let outcomes = publisher.publish(&due_now(13, "acme")).await;
    assert_eq!(outcomes.len(), 13);
    assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
}
