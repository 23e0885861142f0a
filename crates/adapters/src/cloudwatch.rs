//! The CloudWatch metrics sink for the cron's gauges (PutMetricData).

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use taskfleet_core::error::MetricsError;
use taskfleet_core::metrics::{self, Gauge, Unit};
use taskfleet_core::ports::MetricsSink;

use crate::config;

#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: Client,
    namespace: String,
}

impl CloudWatchSink {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self { client, namespace: namespace.into() }
    }

    /// The sink writing to `METRICS_NAMESPACE` (default `TaskFleet`).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk), config::or_default(config::METRICS_NAMESPACE, config::DEFAULT_METRICS_NAMESPACE))
    }
}

fn datum(gauge: &Gauge, timestamp: DateTime) -> MetricDatum {
    let unit = match gauge.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Seconds => StandardUnit::Seconds,
    };
    let dimensions = gauge
        .status
        .map(|status| vec![Dimension::builder().name(metrics::STATUS_DIMENSION).value(status.as_str()).build()]);
    MetricDatum::builder()
        .metric_name(gauge.name)
        .set_dimensions(dimensions)
        .value(gauge.value)
        .unit(unit)
        .timestamp(timestamp)
        .build()
}

impl MetricsSink for CloudWatchSink {
    async fn put(&self, gauges: &[Gauge]) -> Result<(), MetricsError> {
        let now = DateTime::from(std::time::SystemTime::now());
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(gauges.iter().map(|g| datum(g, now)).collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| MetricsError(DisplayErrorContext(&e).to_string()))
    }
}
