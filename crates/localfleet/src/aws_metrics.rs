//! The metrics AWS itself publishes for the fleet, published locally by the stand-ins that know
//! them: the emulator has no Lambda, API Gateway or SQS metrics, but the local fleet invokes
//! every function, is the HTTP API and polls the queues. Same namespaces, names, dimensions and
//! units as AWS documents them, so deploy/dashboard.json and deploy/alarms.json read them
//! unchanged (placeholders: [`crate::local_names`]).
//!
//! | namespace        | metrics (unit)                                                        | dimension     | measured by |
//! |------------------|-----------------------------------------------------------------------|---------------|-------------|
//! | `AWS/Lambda`     | Invocations, Errors, Throttles (Count), Duration (Milliseconds), ConcurrentExecutions (Count, the most at once in each second) | `FunctionName` | [`AwsMetrics::invoke`] at every invocation point (front, stream, queue, schedules) |
//! | `AWS/Lambda`     | ConcurrentExecutions (account: every function)                        | none          | same |
//! | `AWS/Lambda`     | IteratorAge (Milliseconds: now − the batch's last record's ApproximateCreationDateTime) | `FunctionName` (dispatcher) | the stream source |
//! | `AWS/ApiGateway` | Count, 4xx, 5xx (Count), Latency, IntegrationLatency (Milliseconds)  | `ApiId`       | the front |
//! | `AWS/SQS`, `AWS/DynamoDB` | see [`crate::queue_metrics`]                                 | `QueueName`, `TableName` | a poller |
//!
//! `Throttles` is always 0: the local fleet has no concurrency limit to throttle at (no reserved
//! or account concurrency is emulated; the jobs queue's `MaximumConcurrency` limits pollers, which
//! in AWS is not a throttle either). The fleet's own per-event metrics (the EMF stand-in,
//! [`crate::local_metrics`]) go through the same recorder.
//!
//! Values are aggregated per metric and put into the emulator's CloudWatch every second as
//! statistic sets (one datum per metric and second, however many invocations). The emulator
//! computes no percentiles, so the recorder also keeps the values of millisecond metrics for an
//! hour and answers percentiles itself ([`AwsMetrics::percentiles`]) for the dashboard and the
//! alarms.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};

use crate::local_names::{Function, LocalNames};

pub const LAMBDA: &str = "AWS/Lambda";
pub const API_GATEWAY: &str = "AWS/ApiGateway";
pub const SQS: &str = "AWS/SQS";
pub const DYNAMODB: &str = "AWS/DynamoDB";

pub const COUNT: &str = "Count";
pub const MILLISECONDS: &str = "Milliseconds";
pub const SECONDS: &str = "Seconds";

/// How long values are kept for percentiles, and how many per metric at most.
const SAMPLES_FOR: i64 = 60 * 60 * 1000;
const SAMPLES_MAX: usize = 100_000;
/// Data per PutMetricData request.
const DATA_PER_PUT: usize = 500;
/// Metrics waiting to be put at most, while the emulator does not take them.
const PENDING_MAX: usize = 10_000;

/// One metric: namespace, name and dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

impl Series {
    pub fn new(namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions: dimensions.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }
}

/// A metric and a second (since the epoch).
type Key = (Series, i64);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Aggregate {
    sum: f64,
    min: f64,
    max: f64,
    count: f64,
    unit: &'static str,
}

#[derive(Debug, Default, Clone, Copy)]
struct Running {
    now: u64,
    /// The most at once since the last flush.
    peak: u64,
}

impl Running {
    fn enter(&mut self) {
        self.now += 1;
        self.peak = self.peak.max(self.now);
    }

    fn leave(&mut self) {
        self.now = self.now.saturating_sub(1);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Values by metric and by the second they were recorded in.
    pending: HashMap<Key, Aggregate>,
    running: BTreeMap<Function, Running>,
    account: Running,
    samples: HashMap<Series, VecDeque<(i64, f64)>>,
}

/// The recorder: see the module documentation.
#[derive(Debug)]
pub struct AwsMetrics {
    names: LocalNames,
    inner: Mutex<Inner>,
    /// Off: only the fleet's own metrics are recorded (`LOCAL_AWS_METRICS=off`).
    aws: bool,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One running invocation; [`Invocation::end`] records it, dropping it only stops counting it
/// as running (an invocation cut short when the fleet stops).
pub struct Invocation<'a> {
    metrics: &'a AwsMetrics,
    function: Function,
    started: Instant,
}

impl Invocation<'_> {
    /// Records the invocation: Invocations, Errors (1 when `failed`), Throttles (0), Duration.
    pub fn end(self, failed: bool) {
        if !self.metrics.aws {
            return;
        }
        let name = self.metrics.names.function(self.function);
        let dimensions = [("FunctionName", name.as_str())];
        let duration = millis(self.started.elapsed());
        self.metrics.record(LAMBDA, "Invocations", &dimensions, 1.0, COUNT);
        self.metrics.record(LAMBDA, "Errors", &dimensions, if failed { 1.0 } else { 0.0 }, COUNT);
        self.metrics.record(LAMBDA, "Throttles", &dimensions, 0.0, COUNT);
        self.metrics.record(LAMBDA, "Duration", &dimensions, duration, MILLISECONDS);
    }
}

impl Drop for Invocation<'_> {
    fn drop(&mut self) {
        let mut inner = self.metrics.lock();
        inner.running.entry(self.function).or_default().leave();
        inner.account.leave();
    }
}

impl AwsMetrics {
    pub fn new(names: LocalNames) -> Self {
        Self { names, inner: Mutex::default(), aws: true }
    }

    /// A recorder of the fleet's own metrics only: the stand-ins record nothing (the benchmarks
    /// count the fleet's AWS requests, which these metrics are not in AWS).
    pub fn without_aws_metrics(names: LocalNames) -> Self {
        Self { names, inner: Mutex::default(), aws: false }
    }

    pub fn names(&self) -> &LocalNames {
        &self.names
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one value of a metric (aggregated until the next put).
    pub fn record(&self, namespace: &str, name: &str, dimensions: &[(&str, &str)], value: f64, unit: &'static str) {
        let series = Series::new(namespace, name, dimensions);
        let now = now_millis();
        let mut inner = self.lock();
        if unit == MILLISECONDS {
            let samples = inner.samples.entry(series.clone()).or_default();
            samples.push_back((now, value));
            if samples.len() > SAMPLES_MAX {
                samples.pop_front();
            }
        }
        inner
            .pending
            .entry((series, now.div_euclid(1000)))
            .and_modify(|a| {
                a.sum += value;
                a.min = a.min.min(value);
                a.max = a.max.max(value);
                a.count += 1.0;
            })
            .or_insert(Aggregate { sum: value, min: value, max: value, count: 1.0, unit });
    }

    /// Counts an invocation of `function` as running until it ends.
    pub fn start(&self, function: Function) -> Invocation<'_> {
        let mut inner = self.lock();
        inner.running.entry(function).or_default().enter();
        inner.account.enter();
        Invocation { metrics: self, function, started: Instant::now() }
    }

    /// Runs one invocation of `function`, recording it; an `Err` is a function error.
    pub async fn invoke<T, E>(
        &self,
        function: Function,
        invocation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let running = self.start(function);
        let outcome = invocation.await;
        running.end(outcome.is_err());
        outcome
    }

    /// One request the HTTP API answered: Count, 4xx, 5xx, Latency.
    pub fn api_request(&self, status: u16, latency: Duration) {
        if !self.aws {
            return;
        }
        let api = self.names.api_id();
        let dimensions = [("ApiId", api.as_str())];
        self.record(API_GATEWAY, "Count", &dimensions, 1.0, COUNT);
        self.record(API_GATEWAY, "4xx", &dimensions, if (400..500).contains(&status) { 1.0 } else { 0.0 }, COUNT);
        self.record(API_GATEWAY, "5xx", &dimensions, if status >= 500 { 1.0 } else { 0.0 }, COUNT);
        self.record(API_GATEWAY, "Latency", &dimensions, millis(latency), MILLISECONDS);
    }

    /// How long the HTTP API waited for a function (IntegrationLatency).
    pub fn integration_latency(&self, latency: Duration) {
        if !self.aws {
            return;
        }
        let api = self.names.api_id();
        self.record(API_GATEWAY, "IntegrationLatency", &[("ApiId", api.as_str())], millis(latency), MILLISECONDS);
    }

    /// The dispatcher's stream IteratorAge for one batch: now − `last_record_created` (ms).
    pub fn iterator_age(&self, last_record_created: i64) {
        if !self.aws {
            return;
        }
        let name = self.names.function(Function::Dispatcher);
        let age = (now_millis() - last_record_created).max(0) as f64;
        self.record(LAMBDA, "IteratorAge", &[("FunctionName", name.as_str())], age, MILLISECONDS);
    }

    /// The `p`-th percentile (0-100) of a millisecond metric's values per period, for `periods`
    /// periods of `period` ms from `start` (ms since the epoch); None where there is no value
    /// (nearest rank, as CloudWatch's percentiles of raw values).
    pub fn percentiles(&self, series: &Series, p: f64, start: i64, period: i64, periods: usize) -> Vec<Option<f64>> {
        let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); periods];
        if let Some(samples) = self.lock().samples.get(series) {
            for (at, value) in samples {
                let offset = at - start;
                if offset >= 0
                    && period > 0
                    && let Some(bucket) = usize::try_from(offset / period).ok().and_then(|i| buckets.get_mut(i))
                {
                    bucket.push(*value);
                }
            }
        }
        buckets.into_iter().map(|values| percentile(values, p)).collect()
    }

    /// What was recorded since the last call, with each function's and the account's
    /// ConcurrentExecutions for the interval.
    fn drain(&self) -> HashMap<Key, Aggregate> {
        let mut inner = self.lock();
        let mut account = None;
        let mut concurrency = Vec::new();
        for (function, running) in &mut inner.running {
            if running.peak > 0 && self.aws {
                concurrency.push((*function, running.peak));
            }
            running.peak = running.now;
        }
        if inner.account.peak > 0 && self.aws {
            account = Some(inner.account.peak);
        }
        inner.account.peak = inner.account.now;
        let now = now_millis();
        let cutoff = now - SAMPLES_FOR;
        for samples in inner.samples.values_mut() {
            while samples.front().is_some_and(|(at, _)| *at < cutoff) {
                samples.pop_front();
            }
        }
        inner.samples.retain(|_, samples| !samples.is_empty());
        let mut drained = std::mem::take(&mut inner.pending);
        drop(inner);
        let mut peak = |series: Series, value: u64| {
            let value = value as f64;
            let aggregate = Aggregate { sum: value, min: value, max: value, count: 1.0, unit: COUNT };
            drained.insert((series, now.div_euclid(1000)), aggregate);
        };
        for (function, value) in concurrency {
            let name = self.names.function(function);
            peak(Series::new(LAMBDA, "ConcurrentExecutions", &[("FunctionName", &name)]), value);
        }
        if let Some(value) = account {
            peak(Series::new(LAMBDA, "ConcurrentExecutions", &[]), value);
        }
        drained
    }

    /// Puts what was recorded into the emulator's CloudWatch every `every`, until dropped. What
    /// the emulator does not take (it is down, or paused in a drill) is put again with the next
    /// second's values, as CloudWatch would have had it.
    pub async fn forward(self: Arc<Self>, client: aws_sdk_cloudwatch::Client, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let mut by_namespace: BTreeMap<String, Vec<(Key, Aggregate)>> = BTreeMap::new();
            for (key, aggregate) in self.drain() {
                by_namespace.entry(key.0.namespace.clone()).or_default().push((key, aggregate));
            }
            for (namespace, data) in by_namespace {
                for batch in data.chunks(DATA_PER_PUT) {
                    let put = client
                        .put_metric_data()
                        .namespace(&namespace)
                        .set_metric_data(Some(
                            batch.iter().map(|((series, second), a)| datum(series, *second, a)).collect(),
                        ))
                        .send()
                        .await;
                    if let Err(error) = put {
                        tracing::warn!(error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&error), %namespace, "metrics not put into the emulator's CloudWatch; trying again");
                        self.put_back(batch);
                    }
                }
            }
        }
    }

    /// Values the emulator did not take, merged into what is pending (at most [`PENDING_MAX`]
    /// metrics waiting: beyond, the oldest values are dropped).
    fn put_back(&self, batch: &[(Key, Aggregate)]) {
        let mut inner = self.lock();
        for (key, aggregate) in batch {
            if inner.pending.len() >= PENDING_MAX && !inner.pending.contains_key(key) {
                continue;
            }
            inner
                .pending
                .entry(key.clone())
                .and_modify(|a| {
                    a.sum += aggregate.sum;
                    a.min = a.min.min(aggregate.min);
                    a.max = a.max.max(aggregate.max);
                    a.count += aggregate.count;
                })
                .or_insert(*aggregate);
        }
    }
}

/// One metric's values of one second as a statistic set, with that second as its timestamp (so
/// that values put late still count in their period).
fn datum(series: &Series, second: i64, aggregate: &Aggregate) -> MetricDatum {
    let dimensions =
        series.dimensions.iter().map(|(name, value)| Dimension::builder().name(name).value(value).build()).collect();
    MetricDatum::builder()
        .metric_name(&series.name)
        .set_dimensions(Some(dimensions))
        .statistic_values(
            StatisticSet::builder()
                .sample_count(aggregate.count)
                .sum(aggregate.sum)
                .minimum(aggregate.min)
                .maximum(aggregate.max)
                .build(),
        )
        .unit(StandardUnit::from(aggregate.unit))
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(second))
        .build()
}

/// The nearest-rank `p`-th percentile of `values`.
pub fn percentile(mut values: Vec<f64>, p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Names;

    fn recorder() -> AwsMetrics {
        AwsMetrics::new(LocalNames::new(&Names::with_prefix("t"), "NS", "us-east-1"))
    }

    /// What was drained, per metric whatever the second.
    fn by_series(metrics: &AwsMetrics) -> HashMap<Series, Aggregate> {
        let mut merged: HashMap<Series, Aggregate> = HashMap::new();
        for ((series, _), a) in metrics.drain() {
            merged
                .entry(series)
                .and_modify(|m| {
                    m.sum += a.sum;
                    m.min = m.min.min(a.min);
                    m.max = m.max.max(a.max);
                    m.count += a.count;
                })
                .or_insert(a);
        }
        merged
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(values.clone(), 50.0), Some(50.0));
        assert_eq!(percentile(values.clone(), 99.0), Some(99.0));
        assert_eq!(percentile(values, 100.0), Some(100.0));
        assert_eq!(percentile(vec![7.0], 99.0), Some(7.0));
        assert_eq!(percentile(vec![], 50.0), None);
    }

    #[test]
    fn an_invocation_records_lambdas_metrics_and_concurrency() {
        let metrics = recorder();
        let first = metrics.start(Function::Caller);
        let second = metrics.start(Function::Caller);
        let other = metrics.start(Function::Ingest);
        first.end(false);
        second.end(true);
        drop(other);
        let drained = by_series(&metrics);
        let get =
            |name: &str, dimensions: &[(&str, &str)]| drained.get(&Series::new(LAMBDA, name, dimensions)).copied();
        let caller = [("FunctionName", "t-caller")];
        assert_eq!(get("Invocations", &caller).map(|a| a.sum), Some(2.0));
        assert_eq!(get("Errors", &caller).map(|a| a.sum), Some(1.0));
        assert_eq!(get("Throttles", &caller).map(|a| a.sum), Some(0.0));
        assert_eq!(get("Duration", &caller).map(|a| (a.count, a.unit)), Some((2.0, MILLISECONDS)));
        assert_eq!(get("ConcurrentExecutions", &caller).map(|a| a.max), Some(2.0));
        assert_eq!(get("ConcurrentExecutions", &[("FunctionName", "t-ingest")]).map(|a| a.max), Some(1.0));
        assert_eq!(get("ConcurrentExecutions", &[]).map(|a| a.max), Some(3.0), "the account's");
        // The ingest invocation was dropped, not ended: it ran, but it is not an invocation.
        assert_eq!(get("Invocations", &[("FunctionName", "t-ingest")]), None);
        // Nothing runs any more: no concurrency in the next interval.
        assert!(metrics.drain().is_empty());
    }

    #[test]
    fn without_aws_metrics_only_the_fleets_own_are_recorded() {
        let metrics = AwsMetrics::without_aws_metrics(LocalNames::new(&Names::with_prefix("t"), "NS", "us-east-1"));
        metrics.start(Function::Caller).end(true);
        metrics.api_request(500, Duration::from_millis(3));
        metrics.iterator_age(0);
        metrics.record("NS", "TasksCreated", &[], 1.0, COUNT);
        let recorded: Vec<Series> = by_series(&metrics).into_keys().collect();
        assert_eq!(recorded, [Series::new("NS", "TasksCreated", &[])]);
    }

    #[test]
    fn values_the_emulator_did_not_take_are_put_again_with_the_next_ones() {
        let metrics = recorder();
        let errors = Series::new(LAMBDA, "Errors", &[("FunctionName", "t-caller")]);
        metrics.record(LAMBDA, "Errors", &[("FunctionName", "t-caller")], 1.0, COUNT);
        let refused: Vec<(Key, Aggregate)> = metrics.drain().into_iter().collect();
        metrics.put_back(&refused);
        assert_eq!(metrics.drain().keys().collect::<Vec<_>>(), [&refused[0].0], "put again with its own second");
        metrics.put_back(&refused);
        metrics.record(LAMBDA, "Errors", &[("FunctionName", "t-caller")], 0.0, COUNT);
        let next = by_series(&metrics);
        assert_eq!((next[&errors].sum, next[&errors].count, next[&errors].min), (1.0, 2.0, 0.0));
    }

    #[test]
    fn api_requests_count_by_class_and_keep_latencies_for_percentiles() {
        let metrics = recorder();
        for status in [200, 202, 404, 500] {
            metrics.api_request(status, Duration::from_millis(u64::from(status)));
        }
        let drained = by_series(&metrics);
        let api = [("ApiId", "t-api")];
        let sum = |name: &str| drained[&Series::new(API_GATEWAY, name, &api)].sum;
        assert_eq!((sum("Count"), sum("4xx"), sum("5xx")), (4.0, 1.0, 1.0));
        let latency = Series::new(API_GATEWAY, "Latency", &api);
        let start = now_millis() - 10_000;
        let p = metrics.percentiles(&latency, 50.0, start, 20_000, 1);
        assert_eq!(p, [Some(202.0)]);
    }
}
