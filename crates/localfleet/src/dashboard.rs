//! The ops dashboard, locally: `GET /_local/dashboard` draws the widgets of the CloudWatch
//! dashboard that serverless.yml deploys (`deploy/dashboard.json`, the one definition) from the
//! emulator's CloudWatch, so the picture ops see in AWS can be seen under `make dev`.
//!
//! `GET /_local/dashboard/data` answers every widget with its series' datapoints, read with
//! GetMetricStatistics (not GetMetricData: the emulator's GetMetricData ignores the namespace
//! when dimensions are given, and test fleets share metric names under their own namespaces).
//! The placeholders name the local fleet's functions, API and queues ([`crate::local_names`]),
//! whose AWS metrics the fleet publishes itself ([`crate::aws_metrics`]); metric math is
//! evaluated here ([`crate::metric_math`]) on buckets aligned to the period; percentiles, which
//! the emulator does not compute, come from the values the fleet recorded. The alarm widget
//! shows the local alarms' states ([`crate::alarms`]), and charts annotated with an alarm carry
//! its threshold. The page itself (`deploy/local-dashboard.html`) draws the answer as SVG charts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Datapoint, Dimension, Statistic};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::alarms::{Alarms, percentile_of};
use crate::aws_metrics::{AwsMetrics, Series};
use crate::metric_math;

/// Where the page is served.
pub const PATH: &str = "/_local/dashboard";
/// Where the page reads its data.
pub const DATA_PATH: &str = "/_local/dashboard/data";

/// The dashboard serverless.yml deploys (CloudWatch dashboard body, with `${…}` placeholders).
pub const DEFINITION: &str = include_str!("../../../deploy/dashboard.json");
/// The alarms serverless.yml deploys; evaluated locally by [`crate::alarms`].
pub const ALARMS: &str = include_str!("../../../deploy/alarms.json");
const PAGE: &str = include_str!("../../../deploy/local-dashboard.html");

/// Default trailing window and bucket of the charts. The local metrics schedule runs every
/// `METRICS_INTERVAL_SECONDS` (10 s by default), so buckets are finer than AWS's 60 s.
const DEFAULT_MINUTES: u64 = 30;
const DEFAULT_PERIOD_SECONDS: i32 = 10;

/// What the dashboard reads from.
#[derive(Clone)]
pub struct Dashboard {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The recorder of the AWS metrics: local names, percentiles.
    pub metrics: Arc<AwsMetrics>,
    pub alarms: Alarms,
}

pub fn router(dashboard: Dashboard) -> Router {
    Router::new().route(PATH, get(page)).route(DATA_PATH, get(data)).with_state(dashboard)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// A whole number from the query string (`?minutes=…&period=…`).
fn parameter<T: std::str::FromStr>(uri: &Uri, name: &str) -> Option<T> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.parse().ok())
}

async fn data(State(dashboard): State<Dashboard>, uri: Uri) -> Response {
    let minutes = parameter(&uri, "minutes").unwrap_or(DEFAULT_MINUTES).clamp(1, 24 * 60);
    let period = parameter(&uri, "period").unwrap_or(DEFAULT_PERIOD_SECONDS).clamp(1, 3600);
    match dashboard.snapshot(minutes, period).await {
        Ok(answer) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, axum::Json(json!({"error": error}))).into_response(),
    }
}

/// One metric row of a widget: `[namespace, name, dimName, dimValue, …, {options}]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    pub options: serde_json::Map<String, Value>,
}

/// A row of a dashboard or alarm definition: a metric, or metric math over other rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Metric(MetricRow),
    Expression { expression: String, options: serde_json::Map<String, Value> },
}

impl Row {
    /// Reads one row; None for anything that is not a row.
    pub fn parse(row: &Value) -> Option<Self> {
        let items = row.as_array()?;
        let (options, strings) = match items.last() {
            Some(Value::Object(options)) => (options.clone(), &items[..items.len() - 1]),
            _ => (serde_json::Map::new(), &items[..]),
        };
        if let Some(expression) = options.get("expression").and_then(Value::as_str) {
            return Some(Row::Expression { expression: expression.to_owned(), options });
        }
        let strings: Vec<&str> = strings.iter().map(Value::as_str).collect::<Option<_>>()?;
        let (namespace, name, pairs) = match strings.as_slice() {
            [namespace, name, pairs @ ..] if pairs.len() % 2 == 0 => (*namespace, *name, pairs),
            _ => return None,
        };
        let dimensions = pairs.chunks(2).map(|pair| (pair[0].to_owned(), pair[1].to_owned())).collect();
        Some(Row::Metric(MetricRow { namespace: namespace.to_owned(), name: name.to_owned(), dimensions, options }))
    }
}

/// Every metric row of a widget list (dashboard widgets' `properties.metrics`).
pub fn widget_rows(widget: &Value) -> Vec<Row> {
    widget["properties"]["metrics"]
        .as_array()
        .map(|rows| rows.iter().filter_map(Row::parse).collect())
        .unwrap_or_default()
}

/// A series' points by the start of their aligned bucket (ms).
type Points = BTreeMap<i64, f64>;

impl Dashboard {
    /// The definition with this fleet's names filled in.
    fn definition(&self) -> Result<Value, String> {
        let text = self.metrics.names().substitute(DEFINITION);
        serde_json::from_str(&text).map_err(|e| format!("deploy/dashboard.json does not parse: {e}"))
    }

    /// Every widget with its series, over the trailing `minutes` in buckets of `period` seconds.
    pub async fn snapshot(&self, minutes: u64, period: i32) -> Result<Value, String> {
        let definition = self.definition()?;
        let end = SystemTime::now();
        let period_ms = i64::from(period.max(1)) * 1000;
        let start = millis(end - Duration::from_secs(minutes * 60)) / period_ms * period_ms;
        let thresholds: HashMap<&str, f64> =
            self.alarms.definitions().iter().map(|a| (a.name.as_str(), a.rule.threshold)).collect();
        let statuses = self.alarms.statuses();
        let state_of = |name: &str| statuses.iter().find(|s| s.name == name).map(|s| s.state.clone());
        let mut widgets = Vec::new();
        for widget in definition["widgets"].as_array().into_iter().flatten() {
            let properties = &widget["properties"];
            let default_stat = properties["stat"].as_str().unwrap_or("Average");
            let mut series = Vec::new();
            let mut by_id: HashMap<String, Points> = HashMap::new();
            let mut expressions = Vec::new();
            for row in widget_rows(widget) {
                match row {
                    Row::Metric(metric) => {
                        let (answer, points) = self.series(&metric, default_stat, start, millis(end), period).await?;
                        if let Some(id) = metric.options.get("id").and_then(Value::as_str) {
                            by_id.insert(id.to_owned(), points);
                        }
                        series.push(answer);
                    }
                    Row::Expression { expression, options } => {
                        expressions.push(series.len());
                        series.push(json!({
                            "label": options.get("label").and_then(Value::as_str).unwrap_or(&expression),
                            "expression": expression,
                            "visible": options.get("visible").and_then(Value::as_bool).unwrap_or(true),
                        }));
                    }
                }
            }
            for index in expressions {
                let expression = series[index]["expression"].as_str().unwrap_or_default().to_owned();
                match expression_points(&expression, &by_id, start, millis(end), period_ms) {
                    Ok(points) => {
                        series[index]["available"] = json!(true);
                        series[index]["points"] = json!(points.into_iter().collect::<Vec<_>>());
                    }
                    Err(error) => {
                        series[index]["available"] = json!(false);
                        series[index]["reason"] = json!(format!("metric math: {error}"));
                    }
                }
            }
            let annotations: Vec<Value> = properties["annotations"]["horizontal"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|line| {
                    let alarm = line["alarm"].as_str().unwrap_or_default();
                    json!({
                        "label": line["label"],
                        "alarm": alarm,
                        "value": line.get("value").and_then(Value::as_f64).or_else(|| thresholds.get(alarm).copied()),
                        "state": state_of(alarm),
                    })
                })
                .collect();
            widgets.push(json!({
                "type": widget["type"],
                "title": properties["title"],
                "x": widget["x"], "y": widget["y"], "width": widget["width"], "height": widget["height"],
                "series": series,
                "annotations": annotations,
            }));
        }
        let alarms: Vec<Value> = self
            .alarms
            .definitions()
            .iter()
            .zip(statuses.iter())
            .map(|(alarm, status)| {
                json!({
                    "name": alarm.name,
                    "description": alarm.description,
                    "threshold": alarm.rule.threshold,
                    "period": alarm.period,
                    "state": status.state,
                    "reason": status.reason,
                    "since": status.since,
                })
            })
            .collect();
        let names = self.metrics.names();
        Ok(json!({
            "namespace": names.namespace,
            "region": names.region,
            "period": period,
            "start": start,
            "end": millis(end),
            "widgets": widgets,
            "alarms": alarms,
        }))
    }

    async fn series(
        &self,
        row: &MetricRow,
        default_stat: &str,
        start: i64,
        end: i64,
        period: i32,
    ) -> Result<(Value, Points), String> {
        let stat = row.options.get("stat").and_then(Value::as_str).unwrap_or(default_stat).to_owned();
        let label = row.options.get("label").and_then(Value::as_str).unwrap_or(&row.name).to_owned();
        let mut answer = json!({
            "label": label,
            "namespace": row.namespace,
            "metric": row.name,
            "dimensions": row.dimensions,
            "stat": stat,
            "visible": row.options.get("visible").and_then(Value::as_bool).unwrap_or(true),
        });
        if row.dimensions.values().any(|v| v.contains("${")) {
            answer["available"] = json!(false);
            answer["reason"] = json!("a placeholder without a local name");
            return Ok((answer, Points::new()));
        }
        let period_ms = i64::from(period.max(1)) * 1000;
        let mut points = Points::new();
        if let Some(p) = percentile_of(&stat) {
            // The emulator computes no percentiles: the recorder kept the values.
            let series =
                Series { namespace: row.namespace.clone(), name: row.name.clone(), dimensions: row.dimensions.clone() };
            let periods = usize::try_from((end - start) / period_ms + 1).unwrap_or(0);
            for (i, value) in self.metrics.percentiles(&series, p, start, period_ms, periods).into_iter().enumerate() {
                if let Some(value) = value {
                    points.insert(start + period_ms * i as i64, value);
                }
            }
        } else {
            let dimensions = row
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect();
            let statistic = Statistic::from(stat.as_str());
            let statistics = self
                .cloudwatch
                .get_metric_statistics()
                .namespace(&row.namespace)
                .metric_name(&row.name)
                .set_dimensions(Some(dimensions))
                .start_time(DateTime::from_millis(start))
                .end_time(DateTime::from_millis(end))
                .period(period)
                .statistics(statistic.clone())
                .send()
                .await
                .map_err(|e| DisplayErrorContext(&e).to_string())?;
            for point in statistics.datapoints() {
                if let (Some(at), Some(value)) = (point_millis(point), value(point, &statistic)) {
                    // The emulator's buckets start at the first datapoint; align them.
                    points.insert(at.div_euclid(period_ms) * period_ms, value);
                }
            }
        }
        answer["available"] = json!(true);
        answer["points"] = json!(points.iter().map(|(at, v)| (*at, *v)).collect::<Vec<_>>());
        Ok((answer, points))
    }
}

/// A math expression's points over the aligned buckets from `start` to `end`.
fn expression_points(
    expression: &str,
    by_id: &HashMap<String, Points>,
    start: i64,
    end: i64,
    period_ms: i64,
) -> Result<Points, metric_math::MathError> {
    let expr = metric_math::parse(expression)?;
    let mut points = Points::new();
    let mut at = start;
    while at < end {
        let lookup = |id: &str| match by_id.get(id) {
            Some(points) => Ok(points.get(&at).copied()),
            None => Err(metric_math::MathError(format!("no row with id {id}"))),
        };
        if let Some(value) = expr.eval(&lookup)? {
            points.insert(at, value);
        }
        at += period_ms;
    }
    Ok(points)
}

fn millis(at: SystemTime) -> i64 {
    DateTime::from(at).to_millis().unwrap_or_default()
}

fn point_millis(point: &Datapoint) -> Option<i64> {
    point.timestamp().and_then(|t| t.to_millis().ok())
}

fn value(point: &Datapoint, statistic: &Statistic) -> Option<f64> {
    match statistic {
        Statistic::Maximum => point.maximum(),
        Statistic::Minimum => point.minimum(),
        Statistic::Sum => point.sum(),
        Statistic::SampleCount => point.sample_count(),
        _ => point.average(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_metrics_with_dimensions_and_expressions() {
        let metric = Row::parse(&json!(["NS", "TasksActive", "Status", "RECEIVED", {"label": "x"}])).unwrap();
        let Row::Metric(metric) = metric else { panic!("not a metric") };
        assert_eq!((metric.namespace.as_str(), metric.name.as_str()), ("NS", "TasksActive"));
        assert_eq!(metric.dimensions, BTreeMap::from([("Status".to_owned(), "RECEIVED".to_owned())]));
        assert!(matches!(Row::parse(&json!([{"expression": "a / b", "id": "r"}])), Some(Row::Expression { .. })));
        assert_eq!(Row::parse(&json!(["NS", "Name", "DimWithoutValue"])), None);
    }

    #[test]
    fn the_definition_parses_and_every_widget_has_rows_or_is_the_alarm_list() {
        let definition: Value = serde_json::from_str(DEFINITION).unwrap();
        for widget in definition["widgets"].as_array().unwrap() {
            assert!(widget["type"] == "alarm" || !widget_rows(widget).is_empty(), "{widget}");
        }
        let alarms: Value = serde_json::from_str(ALARMS).unwrap();
        assert!(alarms.as_object().is_some_and(|alarms| !alarms.is_empty()));
    }
}
