//! On a schedule (every minute): the lifecycle's clock. Attempts whose callback is overdue are
//! timed out — put back for another attempt with backoff, or FAILED when the series has none
//! left (a heartbeat that moved the deadline in between wins). RECEIVED tasks due for longer
//! than the dispatch grace — retries whose backoff ended, and any dispatch that was lost — are
//! published for the caller. Reads only due entries of the status index.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, SdkConfig, SnsPublisher, config};
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::{EventSink, Publisher, TaskEvent, TaskStore};
use taskfleet_core::service::{self, SweepReport};
use taskfleet_core::{StoreError, Timestamp};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, P> {
    pub store: S,
    pub publisher: P,
    pub policies: Policies,
    /// Most due tasks of each kind per run; the next run takes the rest.
    pub batch: usize,
    pub events: Arc<dyn EventSink>,
}

impl App<DynamoStore, SnsPublisher> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            publisher: SnsPublisher::from_env(sdk)?,
            policies: config::policies()?,
            batch: usize::try_from(config::positive(config::SWEEP_BATCH, config::DEFAULT_SWEEP_BATCH)?).unwrap_or(500),
            events: Arc::new(EmfSink::from_env()),
        })
    }
}

#[derive(Debug, Error)]
#[error(transparent)]
pub struct SweepError(#[from] StoreError);

impl From<SweepError> for Diagnostic {
    fn from(error: SweepError) -> Self {
        Diagnostic { error_type: "StoreUnavailable".to_owned(), error_message: error.to_string() }
    }
}

pub async fn handle<S: TaskStore, P: Publisher>(
    app: &App<S, P>,
    _event: LambdaEvent<EventBridgeEvent>,
) -> Result<serde_json::Value, SweepError> {
    let report = service::sweep(&app.store, &app.publisher, Timestamp::now(), &app.policies, app.batch).await?;
    for task_id in &report.timed_out_retried {
        tracing::warn!(%task_id, "callback overdue; attempt timed out, will retry");
        app.events.record(TaskEvent::Retried);
    }
    for task in &report.timed_out_failed {
        tracing::warn!(task_id = %task.task_id, "callback overdue; no attempts left, task failed");
        app.events.record(TaskEvent::finished(task));
    }
    tracing::info!(
        timed_out_retried = report.timed_out_retried.len(),
        timed_out_failed = report.timed_out_failed.len(),
        dispatched = report.dispatched,
        dispatch_failures = report.dispatch_failures,
        "sweep done"
    );
    Ok(summary(&report))
}

/// What a run answers (and Lambda logs): how many of each.
pub fn summary(report: &SweepReport) -> serde_json::Value {
    serde_json::json!({
        "timed_out_retried": report.timed_out_retried.len(),
        "timed_out_failed": report.timed_out_failed.len(),
        "dispatched": report.dispatched,
        "dispatch_failures": report.dispatch_failures,
    })
}

#[cfg(test)]
mod tests;
