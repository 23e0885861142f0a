//! The gauges the metrics cron publishes. Names and dimensions here are the contract with the
//! dashboard and alarms.

use crate::task::TaskStatus;

/// Tasks currently RECEIVED or IN_PROGRESS (dimension `Status`).
pub const TASKS_ACTIVE: &str = "TasksActive";
/// Tasks that reached DONE or FAILED during the trailing window (dimension `Status`).
pub const TASKS_FINISHED: &str = "TasksFinished";
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
