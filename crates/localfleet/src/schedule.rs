//! What EventBridge schedules do in AWS: invoke the metrics cron and the sweeper on an interval.
//! Each invocation is recorded as Lambda records it ([`crate::aws_metrics`]).

use std::sync::Arc;
use std::time::Duration;

use crate::aws_metrics::AwsMetrics;
use crate::events;
use crate::functions::Functions;
use crate::local_names::Function;

/// A scheduled function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Metrics,
    Sweeper,
}

pub async fn run(functions: Arc<Functions>, metrics: Arc<AwsMetrics>, job: Job, every: Duration, region: String) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = match job {
            Job::Metrics => {
                let event = events::scheduled_event("taskfleet-metrics", &region);
                metrics.invoke(Function::Metrics, functions.invoke_metrics(event)).await
            }
            Job::Sweeper => {
                let event = events::scheduled_event("taskfleet-sweeper", &region);
                metrics.invoke(Function::Sweeper, functions.invoke_sweeper(event)).await.map(|_| ())
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(?job, %error, "scheduled run failed");
        }
    }
}
