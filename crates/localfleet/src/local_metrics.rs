//! Where the functions' per-event metrics go locally. In AWS they are Embedded Metric Format log
//! lines that CloudWatch Logs turns into metrics; the emulator has no such extraction, so here
//! the same measurements go to the recorder of [`crate::aws_metrics`], which puts them into the
//! emulator's CloudWatch every second (under the fleet's namespace, without dimensions, as the
//! EMF lines declare them), where the local dashboard and alarms read them beside the cron's
//! gauges.

use std::sync::Arc;

use taskfleet_adapters::emf::measurements;
use taskfleet_core::ports::{EventSink, TaskEvent};

use crate::aws_metrics::AwsMetrics;

#[derive(Debug)]
pub struct LocalMetrics {
    recorder: Arc<AwsMetrics>,
    namespace: String,
}

impl LocalMetrics {
    pub fn new(recorder: Arc<AwsMetrics>, namespace: &str) -> Self {
        Self { recorder, namespace: namespace.to_owned() }
    }
}

impl EventSink for LocalMetrics {
    fn record(&self, event: TaskEvent) {
        for (name, value, unit) in measurements(event) {
            self.recorder.record(&self.namespace, name, &[], value, unit);
        }
    }
}
