//! On a schedule (every minute): the safety net for lost timers. Every active task has a timer
//! on the jobs queue; one still due a dispatch grace after its time lost it. Attempts whose
//! deadline passed are timed out (retried, or FAILED with no attempts left; a heartbeat in
//! between wins); RECEIVED tasks are made due again, so the dispatcher sets their start again
//! (the new due time is a lease: the next run leaves them alone for the grace); tasks whose TTL
//! passed while active are FAILED ("expired"). A task it cannot move is logged and skipped; the
//! run stops before its invocation's deadline. Reads only due entries of the status index.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, SdkConfig, config};
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::{EventSink, TaskEvent, TaskStore};
use taskfleet_core::service::{self, SweepReport};
use taskfleet_core::{StoreError, Timestamp};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S> {
    pub store: S,
    pub policies: Policies,
    /// Most due tasks of each kind per run; the next run takes the rest.
    pub batch: usize,
    pub events: Arc<dyn EventSink>,
}

impl App<DynamoStore> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
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

/// How long before its invocation's deadline a run stops moving tasks.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

pub async fn handle<S: TaskStore>(
    app: &App<S>,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<serde_json::Value, SweepError> {
    let left = Duration::from_millis(event.context.deadline.saturating_sub(now_millis()));
    let stop_at = tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN);
    let report = service::sweep(&app.store, Timestamp::now(), &app.policies, app.batch, stop_at).await?;
    for task_id in &report.timed_out_retried {
        tracing::warn!(%task_id, "callback overdue and its timer lost; attempt timed out, will retry");
        app.events.record(TaskEvent::Retried);
    }
    for task in report.timed_out_failed.iter().chain(&report.expired) {
        let error = task.error.as_deref().unwrap_or_default();
        tracing::warn!(task_id = %task.task_id, %error, "active task failed by the sweeper");
        app.events.record(TaskEvent::finished(task));
    }
    for (task_id, error) in &report.skipped {
        tracing::error!(%task_id, %error, "task not moved; the next run tries again");
    }
    let summary = summary(&report);
    tracing::info!(%summary, "sweep done");
    Ok(summary)
}

fn now_millis() -> u64 {
    u64::try_from(Timestamp::now().as_millis()).unwrap_or(0)
}

/// What a run answers (and Lambda logs): how many of each.
pub fn summary(report: &SweepReport) -> serde_json::Value {
    serde_json::json!({
        "timed_out_retried": report.timed_out_retried.len(),
        "timed_out_failed": report.timed_out_failed.len(),
        "expired": report.expired.len(),
        "redispatched": report.redispatched,
        "skipped": report.skipped.len(),
        "out_of_time": report.out_of_time,
    })
}

#[cfg(test)]
mod tests;
