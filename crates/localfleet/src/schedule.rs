//! What EventBridge schedules do in AWS: invoke the metrics cron and the sweeper on an interval.

use std::sync::Arc;
use std::time::Duration;

use crate::events;
use crate::functions::Functions;

/// A scheduled function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Metrics,
    Sweeper,
}

pub async fn run(functions: Arc<Functions>, job: Job, every: Duration, region: String) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = match job {
            Job::Metrics => functions.invoke_metrics(events::scheduled_event("taskfleet-metrics", &region)).await,
            Job::Sweeper => {
                functions.invoke_sweeper(events::scheduled_event("taskfleet-sweeper", &region)).await.map(|_| ())
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(?job, %error, "scheduled run failed");
        }
    }
}
