//! `AWS/SQS` metrics of every queue (the jobs queue, the deliveries queue, their dead-letter
//! queues, the dispatcher's dead-letter queue), and the `AWS/DynamoDB` throttle counts of the table, as AWS publishes
//! them: a poller reads each queue's attributes (GetQueueAttributes) every few seconds and the
//! recorder ([`crate::aws_metrics`]) puts them, per `QueueName` / `TableName`.
//!
//! What the emulator cannot say is emulated, and how:
//! * `ApproximateNumberOfMessagesVisible`, `…Delayed`, `…NotVisible`: the queue's attributes.
//! * `ApproximateAgeOfOldestMessage` (seconds), which is not a queue attribute. Dead-letter
//!   queues: a peek (ReceiveMessage, visibility timeout 0, up to ten messages) reads their
//!   `SentTimestamp`; the emulator keeps a message's first `SentTimestamp` when it moves it to a
//!   dead-letter queue, so the age counts from when it was first sent (AWS counts from when it
//!   was moved). The jobs queue cannot be peeked: every receive counts towards its redrive to the
//!   dead-letter queue. There the age is what the event source mapping saw: the oldest
//!   `SentTimestamp` among the messages it received and has not deleted (failed ones, back after
//!   the visibility timeout) and the age of those it received since the last poll; while visible
//!   messages wait and nothing is received, the age grows with the clock. Delayed messages (timers
//!   not yet due) are not seen until they are received, where AWS counts them from when sent.
//! * `NumberOfMessagesReceived` and `NumberOfMessagesDeleted` of the jobs queue: counted by the
//!   event source mapping ([`QueueWatch`]). `NumberOfMessagesSent`: derived, since the functions
//!   send through the SQS adapter: the change in the queue's messages (visible, delayed, in
//!   flight) plus those deleted plus those moved to its dead-letter queue since the last poll.
//! * `AWS/DynamoDB` `WriteThrottleEvents` (table and each index) and `ReadThrottleEvents`
//!   (table): 0 at every poll; the emulator never throttles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

use crate::aws_metrics::{AwsMetrics, COUNT, DYNAMODB, SECONDS, SQS};

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sent_at(message: &Message) -> Option<i64> {
    message.attributes.as_ref()?.get(&MessageSystemAttributeName::SentTimestamp)?.parse().ok()
}

#[derive(Debug, Default)]
struct Watched {
    /// Received and not deleted: message id → (SentTimestamp, last received).
    outstanding: HashMap<String, (i64, i64)>,
    received: u64,
    deleted: u64,
    /// The oldest SentTimestamp among messages received since the last poll.
    oldest_received: Option<i64>,
}

/// What the jobs queue's event source mapping saw, for its metrics.
#[derive(Debug, Default)]
pub struct QueueWatch(Mutex<Watched>);

/// What [`QueueWatch::take`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub received: u64,
    pub deleted: u64,
    /// The oldest SentTimestamp among received, undeleted messages and those received since.
    pub oldest_sent: Option<i64>,
}

impl QueueWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A batch was received.
    pub fn received(&self, messages: &[Message]) {
        let now = now_millis();
        let mut watched = self.lock();
        for message in messages {
            watched.received += 1;
            let Some(sent) = sent_at(message) else { continue };
            watched.oldest_received = Some(watched.oldest_received.map_or(sent, |o| o.min(sent)));
            if let Some(id) = &message.message_id {
                watched.outstanding.insert(id.clone(), (sent, now));
            }
        }
    }

    /// Messages were deleted (handled).
    pub fn deleted<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut watched = self.lock();
        for id in ids {
            watched.deleted += 1;
            watched.outstanding.remove(id);
        }
    }

    /// What was seen since the last call. A message not received again within `forget_after`
    /// of its last receive is forgotten (moved to the dead-letter queue, or lost from view).
    pub fn take(&self, forget_after: Duration) -> Seen {
        let now = now_millis();
        let forget_after = i64::try_from(forget_after.as_millis()).unwrap_or(i64::MAX);
        let mut watched = self.lock();
        watched.outstanding.retain(|_, (_, seen)| now - *seen <= forget_after);
        let oldest_outstanding = watched.outstanding.values().map(|(sent, _)| *sent).min();
        let oldest_sent = match (oldest_outstanding, watched.oldest_received) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let seen = Seen { received: watched.received, deleted: watched.deleted, oldest_sent };
        watched.received = 0;
        watched.deleted = 0;
        watched.oldest_received = None;
        seen
    }
}

/// One queue to publish metrics for.
#[derive(Debug, Clone)]
pub struct WatchedQueue {
    pub name: String,
    pub url: String,
}

/// The poller: see the module documentation.
pub struct ResourceMetrics {
    pub sqs: Client,
    pub recorder: Arc<AwsMetrics>,
    pub jobs: WatchedQueue,
    pub jobs_dlq: WatchedQueue,
    pub dispatcher_dlq: WatchedQueue,
    /// What the jobs queue's event source mapping saw.
    pub watch: Arc<QueueWatch>,
    /// The deliveries queue and its dead-letter queue.
    pub deliveries: WatchedQueue,
    pub deliveries_dlq: WatchedQueue,
    /// What the deliveries queue's event source mapping saw.
    pub deliveries_watch: Arc<QueueWatch>,
    pub table: String,
    pub indexes: Vec<String>,
    /// A message received from the jobs queue comes back this long after a failure at most.
    pub visibility_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Depth {
    visible: u64,
    delayed: u64,
    in_flight: u64,
}

impl Depth {
    fn total(self) -> u64 {
        self.visible + self.delayed + self.in_flight
    }
}

/// What the poller remembers between polls.
#[derive(Debug, Default)]
struct Previous {
    at: Option<i64>,
    jobs: Option<Depth>,
    jobs_dlq: Option<Depth>,
    age_seconds: f64,
}

impl ResourceMetrics {
    /// Polls every `every` until the task is dropped.
    pub async fn run(self, every: Duration) {
        let mut previous = Previous::default();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.poll(&mut previous).await;
        }
    }

    fn record(&self, queue: &str, name: &str, value: f64, unit: &'static str) {
        self.recorder.record(SQS, name, &[("QueueName", queue)], value, unit);
    }

    async fn depth(&self, queue: &WatchedQueue) -> Option<Depth> {
        let answer = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await;
        let attributes = match answer {
            Ok(answer) => answer.attributes.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(queue = %queue.name, error = %DisplayErrorContext(&error), "cannot read the queue's attributes");
                return None;
            }
        };
        let number = |name: QueueAttributeName| attributes.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
        let depth = Depth {
            visible: number(QueueAttributeName::ApproximateNumberOfMessages),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        };
        self.record(&queue.name, "ApproximateNumberOfMessagesVisible", depth.visible as f64, COUNT);
        self.record(&queue.name, "ApproximateNumberOfMessagesDelayed", depth.delayed as f64, COUNT);
        self.record(&queue.name, "ApproximateNumberOfMessagesNotVisible", depth.in_flight as f64, COUNT);
        Some(depth)
    }

    /// A dead-letter queue's oldest message, by a peek that leaves the messages visible.
    async fn peeked_age(&self, queue: &WatchedQueue, depth: Depth) -> f64 {
        if depth.visible == 0 {
            return 0.0;
        }
        let peek = self
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await;
        match peek {
            Ok(answer) => answer
                .messages
                .unwrap_or_default()
                .iter()
                .filter_map(sent_at)
                .min()
                .map_or(0.0, |sent| (now_millis() - sent).max(0) as f64 / 1000.0),
            Err(error) => {
                tracing::warn!(queue = %queue.name, error = %DisplayErrorContext(&error), "cannot peek into the queue");
                0.0
            }
        }
    }

    async fn poll(&self, previous: &mut Previous) {
        let now = now_millis();
        let mut jobs_dlq = None;
        for dlq in [&self.jobs_dlq, &self.dispatcher_dlq, &self.deliveries_dlq] {
            if let Some(depth) = self.depth(dlq).await {
                let age = self.peeked_age(dlq, depth).await;
                self.record(&dlq.name, "ApproximateAgeOfOldestMessage", age, SECONDS);
                if dlq.url == self.jobs_dlq.url {
                    jobs_dlq = Some(depth);
                }
            }
        }
        let seen = self.watch.take(self.visibility_timeout * 3);
        if let Some(depth) = self.depth(&self.jobs).await {
            let elapsed = previous.at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            let mut age = seen.oldest_sent.map_or(0.0, |sent| (now - sent).max(0) as f64 / 1000.0);
            if seen.received == 0 && depth.visible > 0 {
                // Waiting and not read: the oldest message ages with the clock.
                age = age.max(previous.age_seconds + elapsed);
            }
            if depth.visible + depth.in_flight == 0 {
                age = 0.0;
            }
            previous.age_seconds = age;
            self.record(&self.jobs.name, "ApproximateAgeOfOldestMessage", age, SECONDS);
            self.record(&self.jobs.name, "NumberOfMessagesReceived", seen.received as f64, COUNT);
            self.record(&self.jobs.name, "NumberOfMessagesDeleted", seen.deleted as f64, COUNT);
            if let Some(before) = previous.jobs {
                let moved_to_dlq = match (previous.jobs_dlq, jobs_dlq) {
                    (Some(before), Some(now)) => now.total().saturating_sub(before.total()),
                    _ => 0,
                };
                let sent = (depth.total() + seen.deleted + moved_to_dlq).saturating_sub(before.total());
                self.record(&self.jobs.name, "NumberOfMessagesSent", sent as f64, COUNT);
            }
            previous.jobs = Some(depth);
        }
        if jobs_dlq.is_some() {
            previous.jobs_dlq = jobs_dlq;
        }
        // The deliveries queue: its depth, and the oldest message its event source saw (as the
        // jobs queue's, without the clock's growth between polls).
        let seen = self.deliveries_watch.take(self.visibility_timeout * 3);
        if let Some(depth) = self.depth(&self.deliveries).await {
            let age = match seen.oldest_sent {
                Some(sent) if depth.visible + depth.in_flight > 0 => (now - sent).max(0) as f64 / 1000.0,
                _ => 0.0,
            };
            self.record(&self.deliveries.name, "ApproximateAgeOfOldestMessage", age, SECONDS);
        }
        previous.at = Some(now);
        let mut tables = vec![vec![("TableName", self.table.as_str())]];
        for index in &self.indexes {
            tables.push(vec![("TableName", self.table.as_str()), ("GlobalSecondaryIndexName", index.as_str())]);
        }
        for dimensions in &tables {
            self.recorder.record(DYNAMODB, "WriteThrottleEvents", dimensions, 0.0, COUNT);
        }
        self.recorder.record(DYNAMODB, "ReadThrottleEvents", &tables[0], 0.0, COUNT);
    }
}
