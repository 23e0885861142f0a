//! The ops dashboard, locally: `GET /_local/dashboard` draws the widgets of the CloudWatch
//! dashboard that serverless.yml deploys (`deploy/dashboard.json`, the one definition) from the
//! emulator's CloudWatch, so the picture ops see in AWS can be seen under `make dev`.
//!
//! `GET /_local/dashboard/data` answers every widget with its series' datapoints, read with
//! GetMetricStatistics (not GetMetricData: the emulator's GetMetricData ignores the namespace
//! when dimensions are given). Rows the emulator cannot have — AWS/Lambda, AWS/SQS and
//! AWS/ApiGateway metrics, which AWS itself produces — and metric math are listed, not queried;
//! percentiles, which the emulator does not compute, are drawn from the average or maximum.
//! The page itself (`deploy/local-dashboard.html`) draws the answer as SVG charts.

use std::collections::BTreeMap;
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

/// Where the page is served.
pub const PATH: &str = "/_local/dashboard";
/// Where the page reads its data.
pub const DATA_PATH: &str = "/_local/dashboard/data";

/// The dashboard serverless.yml deploys (CloudWatch dashboard body, with `${…}` placeholders).
pub const DEFINITION: &str = include_str!("../../../deploy/dashboard.json");
/// The alarms serverless.yml deploys; listed on the page (CloudWatch evaluates them in AWS).
pub const ALARMS: &str = include_str!("../../../deploy/alarms.json");
const PAGE: &str = include_str!("../../../deploy/local-dashboard.html");

/// Default trailing window and bucket of the charts. The local metrics schedule runs every
/// `METRICS_INTERVAL_SECONDS` (10 s by default), so buckets are finer than AWS's 60 s.
const DEFAULT_MINUTES: u64 = 30;
const DEFAULT_PERIOD_SECONDS: i32 = 10;

/// What the dashboard reads from.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The fleet's metrics namespace (`${Namespace}` in the definition).
    pub namespace: String,
    pub region: String,
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

impl Dashboard {
    /// The definition with this fleet's namespace and region filled in.
    fn definition(&self) -> Result<Value, String> {
        let text = DEFINITION.replace("${Namespace}", &self.namespace).replace("${AWS::Region}", &self.region);
        serde_json::from_str(&text).map_err(|e| format!("deploy/dashboard.json does not parse: {e}"))
    }

    /// Every widget with its series, over the trailing `minutes` in buckets of `period` seconds.
    pub async fn snapshot(&self, minutes: u64, period: i32) -> Result<Value, String> {
        let definition = self.definition()?;
        let end = SystemTime::now();
        let start = end - Duration::from_secs(minutes * 60);
        let mut widgets = Vec::new();
        for widget in definition["widgets"].as_array().into_iter().flatten() {
            let properties = &widget["properties"];
            let default_stat = properties["stat"].as_str().unwrap_or("Average");
            let mut series = Vec::new();
            for row in widget_rows(widget) {
                series.push(match row {
                    Row::Metric(metric) => self.series(&metric, default_stat, start, end, period).await?,
                    Row::Expression { expression, options } => json!({
                        "label": options.get("label").and_then(Value::as_str).unwrap_or(&expression),
                        "expression": expression,
                        "available": false,
                        "reason": "metric math: computed by CloudWatch in AWS",
                    }),
                });
            }
            widgets.push(json!({
                "type": widget["type"],
                "title": properties["title"],
                "x": widget["x"], "y": widget["y"], "width": widget["width"], "height": widget["height"],
                "series": series,
            }));
        }
        let alarms: Value =
            serde_json::from_str(ALARMS).map_err(|e| format!("deploy/alarms.json does not parse: {e}"))?;
        let alarms: Vec<Value> = alarms
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, alarm)| json!({"name": name, "description": alarm["description"]}))
            .collect();
        Ok(json!({
            "namespace": self.namespace,
            "region": self.region,
            "period": period,
            "start": millis(start),
            "end": millis(end),
            "widgets": widgets,
            "alarms": alarms,
        }))
    }

    async fn series(
        &self,
        row: &MetricRow,
        default_stat: &str,
        start: SystemTime,
        end: SystemTime,
        period: i32,
    ) -> Result<Value, String> {
        let stat = row.options.get("stat").and_then(Value::as_str).unwrap_or(default_stat).to_owned();
        let label = row.options.get("label").and_then(Value::as_str).unwrap_or(&row.name).to_owned();
        let mut answer = json!({
            "label": label,
            "namespace": row.namespace,
            "metric": row.name,
            "dimensions": row.dimensions,
            "stat": stat,
        });
        if row.namespace != self.namespace || row.dimensions.values().any(|v| v.contains("${")) {
            answer["available"] = json!(false);
            answer["reason"] = json!(format!("{} metric: produced by AWS, not by the emulator", row.namespace));
            return Ok(answer);
        }
        let dimensions =
            row.dimensions.iter().map(|(name, value)| Dimension::builder().name(name).value(value).build()).collect();
        // The emulator computes no percentiles: a percentile is drawn from the average (p50 and
        // below) or the maximum, and says so.
        let (statistic, stand_in) = match Statistic::try_parse(&stat) {
            Ok(statistic) => (statistic, None),
            Err(_) if percentile(&stat).is_some_and(|p| p <= 50.0) => (Statistic::Average, Some("average")),
            Err(_) => (Statistic::Maximum, Some("maximum")),
        };
        let statistics = self
            .cloudwatch
            .get_metric_statistics()
            .namespace(&row.namespace)
            .metric_name(&row.name)
            .set_dimensions(Some(dimensions))
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .period(period)
            .statistics(statistic.clone())
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        let mut points: Vec<(i64, f64)> = statistics
            .datapoints()
            .iter()
            .filter_map(|point| Some((point_millis(point)?, value(point, &statistic)?)))
            .collect();
        points.sort_by_key(|(at, _)| *at);
        answer["available"] = json!(true);
        answer["points"] = json!(points);
        if let Some(stand_in) = stand_in {
            answer["reason"] = json!(format!("the emulator computes no percentiles: drawn from the {stand_in}"));
        }
        Ok(answer)
    }
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

/// The percentile of a `pNN` statistic.
fn percentile(stat: &str) -> Option<f64> {
    stat.strip_prefix('p')?.parse().ok()
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
