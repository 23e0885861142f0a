//! What an EventBridge schedule does in AWS: invokes the metrics cron on an interval.

use std::sync::Arc;
use std::time::Duration;

use crate::events;
use crate::functions::Functions;

pub async fn run(functions: Arc<Functions>, every: Duration, region: String) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = functions.invoke_metrics(events::scheduled_event("taskfleet-metrics", &region)).await {
            tracing::warn!(%error, "metrics run failed");
        }
    }
}
