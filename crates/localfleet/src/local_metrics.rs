//! Where the functions' per-event metrics go locally. In AWS they are Embedded Metric Format log
//! lines that CloudWatch Logs turns into metrics; the emulator has no such extraction, so here
//! the same measurements are batched and put into the emulator's CloudWatch every second, where
//! the local dashboard reads them beside the cron's gauges.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
use taskfleet_adapters::emf::measurements;
use taskfleet_core::ports::{EventSink, TaskEvent};

/// CloudWatch takes at most 150 values per datum.
const VALUES_PER_DATUM: usize = 150;

#[derive(Debug, Default)]
pub struct LocalMetrics {
    pending: Mutex<Vec<(&'static str, f64, &'static str)>>,
}

impl EventSink for LocalMetrics {
    fn record(&self, event: TaskEvent) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(measurements(event));
    }
}

impl LocalMetrics {
    fn drain(&self) -> Vec<(&'static str, f64, &'static str)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Puts what was recorded into the emulator's CloudWatch every `every`, until dropped.
    pub async fn forward(self: Arc<Self>, client: aws_sdk_cloudwatch::Client, namespace: String, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let mut by_metric: std::collections::BTreeMap<&str, (Vec<f64>, &str)> = Default::default();
            for (name, value, unit) in self.drain() {
                by_metric.entry(name).or_insert_with(|| (Vec::new(), unit)).0.push(value);
            }
            let data: Vec<MetricDatum> = by_metric
                .into_iter()
                .flat_map(|(name, (values, unit))| {
                    values
                        .chunks(VALUES_PER_DATUM)
                        .map(|chunk| {
                            MetricDatum::builder()
                                .metric_name(name)
                                .set_values(Some(chunk.to_vec()))
                                .unit(StandardUnit::from(unit))
                                .build()
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            for batch in data.chunks(500) {
                let put =
                    client.put_metric_data().namespace(&namespace).set_metric_data(Some(batch.to_vec())).send().await;
                if let Err(error) = put {
                    tracing::warn!(error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&error), "local metrics not forwarded");
                }
            }
        }
    }
}
