//! Metric names: the contract with the dashboard and alarms. Two kinds:
//! - gauges the metrics cron publishes with PutMetricData (dimension `Status` where noted);
//! - per-event metrics the functions emit as CloudWatch Embedded Metric Format log lines
//!   (no dimensions: fleet-wide), all in the namespace `METRICS_NAMESPACE` (default `TaskFleet`).

use crate::task::TaskStatus;

/// Every gauge name the cron publishes.
pub const GAUGES: [&str; 3] = [TASKS_ACTIVE, OLDEST_RECEIVED_AGE, TASKS_OVERDUE];
/// Every per-event (EMF) metric name the functions emit.
pub const EVENTS: [&str; 10] = [
    TASKS_CREATED,
    TASKS_COMPLETED,
    TASKS_FAILED,
    TASKS_RETRIED,
    TASK_LATENCY,
    EXTERNAL_CALLS,
    EXTERNAL_ERRORS,
    WEBHOOKS_DELIVERED,
    WEBHOOK_RETRIES,
    WEBHOOKS_GIVEN_UP,
];

/// IN_PROGRESS tasks past their callback deadline (the sweeper retries or fails them).
pub const TASKS_OVERDUE: &str = "TasksOverdue";
/// A task was created (ingest). Count.
pub const TASKS_CREATED: &str = "TasksCreated";
/// A task reached DONE (webhook). Count.
pub const TASKS_COMPLETED: &str = "TasksCompleted";
/// A task reached FAILED (webhook, caller, sweeper, cancel). Count.
pub const TASKS_FAILED: &str = "TasksFailed";
/// An attempt failed and the task was put back for another (caller, sweeper). Count.
pub const TASKS_RETRIED: &str = "TasksRetried";
/// Milliseconds from creation to DONE or FAILED (webhook, caller, sweeper). Milliseconds.
pub const TASK_LATENCY: &str = "TaskLatency";
/// Jobs POSTed to the external service (caller). Count.
pub const EXTERNAL_CALLS: &str = "ExternalServiceCalls";
/// Jobs the external service refused or did not answer (caller). Count.
pub const EXTERNAL_ERRORS: &str = "ExternalServiceErrors";
/// Completion webhooks delivered (notifier). Count.
pub const WEBHOOKS_DELIVERED: &str = "WebhooksDelivered";
/// Completion webhook attempts that failed with attempts left (notifier). Count.
pub const WEBHOOK_RETRIES: &str = "WebhookRetries";
/// Completion webhooks given up after their last attempt failed (notifier). Count.
pub const WEBHOOKS_GIVEN_UP: &str = "WebhooksGivenUp";

/// Tasks currently RECEIVED or IN_PROGRESS (dimension `Status`).
pub const TASKS_ACTIVE: &str = "TasksActive";
/// Seconds the oldest RECEIVED task has waited to be handed over (0 when none waits).
pub const OLDEST_RECEIVED_AGE: &str = "OldestReceivedAgeSeconds";
/// The dimension name carrying a task status.
pub const STATUS_DIMENSION: &str = "Status";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub status: Option<TaskStatus>,
    pub value: f64,
    pub unit: Unit,
}
