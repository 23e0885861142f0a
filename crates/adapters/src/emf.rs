//! Per-event metrics as CloudWatch Embedded Metric Format: one JSON log line per event, which
//! CloudWatch Logs turns into metrics — no API call, no latency, nothing to fail.

use std::io::Write;

use serde_json::{Value, json};
use taskfleet_core::metrics;
use taskfleet_core::ports::{EventSink, TaskEvent};
use taskfleet_core::{TaskStatus, Timestamp};

use crate::config;

#[derive(Debug, Clone)]
pub struct EmfSink {
    namespace: String,
}

impl EmfSink {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into() }
    }

    /// The sink writing to `METRICS_NAMESPACE` (default `TaskFleet`).
    pub fn from_env() -> Self {
        Self::new(config::or_default(config::METRICS_NAMESPACE, config::DEFAULT_METRICS_NAMESPACE))
    }

    /// The EMF document for one event (no dimensions: the metrics are fleet-wide).
    pub fn document(&self, event: TaskEvent, at: Timestamp) -> Value {
        let values = measurements(event);
        let definitions: Vec<Value> =
            values.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit})).collect();
        let mut document = json!({
            "_aws": {
                "Timestamp": at.as_millis(),
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": [[]], "Metrics": definitions}],
            }
        });
        for (name, value, _) in values {
            document[name] = json!(value);
        }
        document
    }
}

/// (metric, value, unit) for one event.
pub fn measurements(event: TaskEvent) -> Vec<(&'static str, f64, &'static str)> {
    match event {
        TaskEvent::Created => vec![(metrics::TASKS_CREATED, 1.0, "Count")],
        TaskEvent::Retried => vec![(metrics::TASKS_RETRIED, 1.0, "Count")],
        TaskEvent::ExternalCall { accepted } => {
            let mut values = vec![(metrics::EXTERNAL_CALLS, 1.0, "Count")];
            if !accepted {
                values.push((metrics::EXTERNAL_ERRORS, 1.0, "Count"));
            }
            values
        }
        TaskEvent::Finished { status, latency_ms } => {
            let name = if status == TaskStatus::Done { metrics::TASKS_COMPLETED } else { metrics::TASKS_FAILED };
            let mut values = vec![(name, 1.0, "Count")];
            if let Some(latency) = latency_ms {
                values.push((metrics::TASK_LATENCY, latency as f64, "Milliseconds"));
            }
            values
        }
        TaskEvent::WebhookDelivered => vec![(metrics::WEBHOOKS_DELIVERED, 1.0, "Count")],
        TaskEvent::WebhookRetried => vec![(metrics::WEBHOOK_RETRIES, 1.0, "Count")],
        TaskEvent::WebhookGaveUp => vec![(metrics::WEBHOOKS_GIVEN_UP, 1.0, "Count")],
    }
}

impl EventSink for EmfSink {
    fn record(&self, event: TaskEvent) {
        let line = self.document(event, Timestamp::now()).to_string();
        // One write per line so concurrent log output cannot split it.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finish_is_a_count_and_a_latency_in_one_emf_document() {
        let sink = EmfSink::new("TaskFleet");
        let event = TaskEvent::Finished { status: TaskStatus::Done, latency_ms: Some(1_250) };
        let document = sink.document(event, Timestamp::from_millis(1_700_000_000_000));
        assert_eq!(
            document,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "TaskFleet",
                        "Dimensions": [[]],
                        "Metrics": [{"Name": "TasksCompleted", "Unit": "Count"}, {"Name": "TaskLatency", "Unit": "Milliseconds"}]
                    }]
                },
                "TasksCompleted": 1.0,
                "TaskLatency": 1250.0
            })
        );
    }

    #[test]
    fn every_event_metric_name_is_one_the_dashboard_knows() {
        let events = [
            TaskEvent::Created,
            TaskEvent::Retried,
            TaskEvent::ExternalCall { accepted: false },
            TaskEvent::Finished { status: TaskStatus::Failed, latency_ms: Some(1) },
            TaskEvent::Finished { status: TaskStatus::Done, latency_ms: None },
            TaskEvent::WebhookDelivered,
            TaskEvent::WebhookRetried,
            TaskEvent::WebhookGaveUp,
        ];
        let mut names: Vec<&str> = events.into_iter().flat_map(measurements).map(|(name, _, _)| name).collect();
        names.sort_unstable();
        names.dedup();
        let mut known = metrics::EVENTS.to_vec();
        known.sort_unstable();
        assert_eq!(names, known);
    }
}
