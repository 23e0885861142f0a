//! The alarms of deploy/alarms.json, evaluated locally against the emulator's CloudWatch, which
//! keeps metrics but evaluates no alarm and computes no metric math. `GET /_local/alarms`
//! answers `[{"name", "state", "reason", "since"}]`; every transition is logged (one line: name,
//! from, to, reason).
//!
//! Each evaluation reads every alarm's evaluation range (its last N + 2 complete periods) with
//! one GetMetricData per period length (the emulator aligns its periods to the start time, as
//! CloudWatch does), percentiles from the recorder ([`crate::aws_metrics`]; the emulator has
//! none), and hands the datapoints to the pure rules of [`crate::alarm_rules`]. Alarms are
//! evaluated at the end of each period (CloudWatch: every minute), up to 2.5 s after it so
//! that the metrics of its last second have been put.
//!
//! An alarm is first evaluated once its N evaluation periods have passed since the fleet started
//! (until then INSUFFICIENT_DATA, "Unchecked"): in AWS its metrics have a history when it is
//! evaluated; here the periods before the fleet started would count as missing data, and an
//! alarm treating missing data as breaching would fire at every start.
//!
//! `LOCAL_ALARM_PERIOD_SECONDS` replaces every alarm's period (`make dev`: 10 s), so that an
//! alarm of "3 of 5 minutes" fires after 3 of 5 such periods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use axum::Router;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::alarm_rules::{self, Alarm, Datapoint, State};
use crate::aws_metrics::{AwsMetrics, Series};
use crate::dashboard::{ALARMS, MetricRow};

/// Where the states are served.
pub const PATH: &str = "/_local/alarms";
/// Every alarm's period locally, in seconds (unset: the definitions' own).
pub const PERIOD_ENV: &str = "LOCAL_ALARM_PERIOD_SECONDS";
/// The deployment's parameters, whose defaults give the thresholds (`{"param": …}`).
pub const SERVERLESS: &str = include_str!("../../../serverless.yml");
/// How long after a period ends it is evaluated at most: the recorder puts each second's values
/// a second later, stamped with their second.
const SETTLE: Duration = Duration::from_millis(2_500);

/// One alarm's state, as `GET /_local/alarms` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub name: String,
    pub state: String,
    pub reason: String,
    /// When it entered this state (RFC 3339).
    pub since: String,
}

struct Entry {
    state: State,
    reason: String,
    since: chrono::DateTime<Utc>,
}

struct Inner {
    cloudwatch: aws_sdk_cloudwatch::Client,
    metrics: Arc<AwsMetrics>,
    alarms: Vec<Alarm>,
    entries: Mutex<Vec<Entry>>,
    /// When the alarms were created (ms since the epoch).
    created: i64,
}

/// The local alarms: definitions and states.
#[derive(Clone)]
pub struct Alarms(Arc<Inner>);

/// The statistic's percentile, for `pNN`.
pub fn percentile_of(stat: &str) -> Option<f64> {
    stat.strip_prefix('p')?.parse().ok()
}

fn series(metric: &MetricRow) -> Series {
    Series { namespace: metric.namespace.clone(), name: metric.name.clone(), dimensions: metric.dimensions.clone() }
}

impl Alarms {
    /// The alarms of deploy/alarms.json with this fleet's names, thresholds from serverless.yml's
    /// defaults, every period `period_override` seconds when set; all INSUFFICIENT_DATA.
    pub fn load(
        cloudwatch: aws_sdk_cloudwatch::Client,
        metrics: Arc<AwsMetrics>,
        period_override: Option<u32>,
    ) -> Result<Self, String> {
        let definition = metrics.names().substitute(ALARMS);
        let alarms = alarm_rules::load(&definition, &alarm_rules::param_defaults(SERVERLESS), period_override)?;
        let now = Utc::now();
        let entries = alarms
            .iter()
            .map(|_| Entry {
                state: State::InsufficientData,
                reason: "Unchecked: Initial alarm creation".to_owned(),
                since: now,
            })
            .collect();
        let created = now.timestamp_millis();
        Ok(Self(Arc::new(Inner { cloudwatch, metrics, alarms, entries: Mutex::new(entries), created })))
    }

    pub fn definitions(&self) -> &[Alarm] {
        &self.0.alarms
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.0.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every alarm's state.
    pub fn statuses(&self) -> Vec<Status> {
        self.0
            .alarms
            .iter()
            .zip(self.entries().iter())
            .map(|(alarm, entry)| Status {
                name: alarm.name.clone(),
                state: entry.state.as_str().to_owned(),
                reason: entry.reason.clone(),
                since: entry.since.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .collect()
    }

    /// Evaluates every alarm at the end of each of the shortest period, until the task is dropped.
    pub async fn run(self) {
        let tick = i64::from(self.0.alarms.iter().map(|a| a.period).min().unwrap_or(60).max(1)) * 1000;
        // Within the next period, whatever its length.
        let settle = SETTLE.min(Duration::from_millis(u64::try_from(tick / 2).unwrap_or(500)));
        loop {
            let now = Utc::now().timestamp_millis();
            let next = (now / tick + 1) * tick;
            let wait = u64::try_from(next - now).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait) + settle).await;
            self.evaluate(next).await;
        }
    }

    /// One evaluation of every alarm over its periods ending at or before `at` (ms since the
    /// epoch).
    pub async fn evaluate(&self, at: i64) {
        let mut by_period: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, alarm) in self.0.alarms.iter().enumerate() {
            by_period.entry(alarm.period).or_default().push(index);
        }
        for (period, indexes) in by_period {
            let period_ms = i64::from(period) * 1000;
            let end = at / period_ms * period_ms;
            let periods = indexes.iter().map(|i| self.0.alarms[*i].rule.range()).max().unwrap_or(1);
            let start = end - period_ms * periods as i64;
            let queries: Vec<(&MetricRow, &str)> = indexes
                .iter()
                .flat_map(|i| self.0.alarms[*i].metrics.iter())
                .map(|query| (&query.metric, query.stat.as_str()))
                .collect();
            let indexes: Vec<usize> = indexes
                .into_iter()
                .filter(|i| end - self.0.created >= period_ms * self.0.alarms[*i].rule.evaluation_periods as i64)
                .collect();
            if indexes.is_empty() {
                continue;
            }
            let values = match self.fetch(&queries, start, period, periods).await {
                Ok(values) => values,
                Err(error) => {
                    tracing::warn!(%error, "alarms not evaluated: cannot read their metrics");
                    continue;
                }
            };
            for index in indexes {
                self.decide(index, &values, start, period_ms, periods);
            }
        }
    }

    fn decide(
        &self,
        index: usize,
        values: &HashMap<(Series, String), Vec<Option<f64>>>,
        start: i64,
        period_ms: i64,
        periods: usize,
    ) {
        let alarm = &self.0.alarms[index];
        let range = alarm.rule.range();
        let skip = periods - range;
        let by_id: HashMap<String, Vec<Option<f64>>> = alarm
            .metrics
            .iter()
            .map(|q| {
                let column = values.get(&(series(&q.metric), q.stat.clone())).cloned().unwrap_or_default();
                (q.id.clone(), column.into_iter().skip(skip).collect())
            })
            .collect();
        let datapoints = match alarm.datapoints(&by_id, range) {
            Ok(datapoints) => datapoints,
            Err(error) => {
                tracing::warn!(alarm = %alarm.name, %error, "alarm not evaluated");
                return;
            }
        };
        let datapoints: Vec<Datapoint> = datapoints
            .into_iter()
            .enumerate()
            .map(|(i, value)| Datapoint { at: start + period_ms * (skip + i) as i64, value })
            .collect();
        let mut entries = self.entries();
        let entry = &mut entries[index];
        let decision = alarm.rule.evaluate(&datapoints, entry.state);
        if decision.state != entry.state {
            let (from, to) = (entry.state, decision.state);
            if to == State::Alarm {
                tracing::warn!(alarm = %alarm.name, %from, %to, reason = %decision.reason, "alarm state changed");
            } else {
                tracing::info!(alarm = %alarm.name, %from, %to, reason = %decision.reason, "alarm state changed");
            }
            *entry = Entry { state: to, reason: decision.reason, since: Utc::now() };
        }
    }

    /// Each (metric, statistic)'s value per period from `start` (ms), `periods` periods of
    /// `period` seconds: one GetMetricData for the statistics the emulator computes, the
    /// recorder's values for percentiles.
    async fn fetch(
        &self,
        queries: &[(&MetricRow, &str)],
        start: i64,
        period: u32,
        periods: usize,
    ) -> Result<HashMap<(Series, String), Vec<Option<f64>>>, String> {
        let period_ms = i64::from(period) * 1000;
        let mut values: HashMap<(Series, String), Vec<Option<f64>>> = HashMap::new();
        let mut asked: Vec<(Series, String)> = Vec::new();
        for (metric, stat) in queries {
            let key = (series(metric), (*stat).to_owned());
            if values.contains_key(&key) || asked.contains(&key) {
                continue;
            }
            match percentile_of(stat) {
                Some(p) => {
                    let column = self.0.metrics.percentiles(&key.0, p, start, period_ms, periods);
                    values.insert(key, column);
                }
                None => asked.push(key),
            }
        }
        if asked.is_empty() {
            return Ok(values);
        }
        let data_queries: Vec<MetricDataQuery> = asked
            .iter()
            .enumerate()
            .map(|(i, (metric, stat))| {
                let dimensions = metric
                    .dimensions
                    .iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect();
                let metric = Metric::builder()
                    .namespace(&metric.namespace)
                    .metric_name(&metric.name)
                    .set_dimensions(Some(dimensions))
                    .build();
                let stat =
                    MetricStat::builder().metric(metric).period(i32::try_from(period).unwrap_or(60)).stat(stat).build();
                MetricDataQuery::builder().id(format!("q{i}")).metric_stat(stat).return_data(true).build()
            })
            .collect();
        let answer = self
            .0
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(data_queries))
            .start_time(DateTime::from_millis(start))
            .end_time(DateTime::from_millis(start + period_ms * periods as i64))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        for key in &asked {
            values.insert(key.clone(), vec![None; periods]);
        }
        for result in answer.metric_data_results() {
            let Some(key) =
                result.id().and_then(|id| id.strip_prefix('q')?.parse::<usize>().ok()).and_then(|i| asked.get(i))
            else {
                continue;
            };
            let column = values.get_mut(key).expect("inserted above");
            for (at, value) in result.timestamps().iter().zip(result.values()) {
                let Ok(at) = at.to_millis() else { continue };
                let offset = at - start;
                if offset >= 0
                    && let Some(slot) = usize::try_from(offset / period_ms).ok().and_then(|i| column.get_mut(i))
                {
                    *slot = Some(*value);
                }
            }
        }
        Ok(values)
    }
}

pub fn router(alarms: Alarms) -> Router {
    Router::new()
        .route(
            PATH,
            get(|Extract(alarms): Extract<Alarms>| async move {
                ([(header::CACHE_CONTROL, "no-store")], axum::Json(alarms.statuses())).into_response()
            }),
        )
        .with_state(alarms)
}
