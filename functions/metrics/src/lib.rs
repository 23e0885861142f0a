//! On a schedule: counts active tasks, overdue attempts and the backlog's age, and pushes them to
//! CloudWatch (PutMetricData, namespace `METRICS_NAMESPACE`). Finished tasks are counted by the
//! per-event metrics the functions emit as each task finishes.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use taskfleet_adapters::{CloudWatchSink, ConfigError, DynamoStore, SdkConfig};
use taskfleet_core::error::MetricsError;
use taskfleet_core::ports::{MetricsSink, TaskStore};
use taskfleet_core::{StoreError, Timestamp, service};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, M> {
    pub store: S,
    pub sink: M,
}

impl App<DynamoStore, CloudWatchSink> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { store: DynamoStore::from_env(sdk)?, sink: CloudWatchSink::from_env(sdk) })
    }
}

#[derive(Debug, Error)]
pub enum MetricsRunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] MetricsError),
}

impl From<MetricsRunError> for Diagnostic {
    fn from(error: MetricsRunError) -> Self {
        let error_type = match error {
            MetricsRunError::Store(_) => "StoreUnavailable",
            MetricsRunError::Sink(_) => "MetricsUnavailable",
        };
        Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

pub async fn handle<S: TaskStore, M: MetricsSink>(
    app: &App<S, M>,
    _event: LambdaEvent<EventBridgeEvent>,
) -> Result<(), MetricsRunError> {
    let gauges = service::gauges(&app.store, Timestamp::now()).await?;
    app.sink.put(&gauges).await?;
    for gauge in &gauges {
        tracing::info!(
            metric = gauge.name,
            status = gauge.status.map(|s| s.as_str()),
            value = gauge.value,
            "gauge pushed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
