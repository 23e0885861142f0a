//! The alarms of deploy/alarms.json (the one definition serverless.yml deploys), evaluated as
//! CloudWatch evaluates a metric alarm. Pure: no AWS calls; [`crate::alarms`] fetches the
//! datapoints and keeps the states.
//!
//! CloudWatch's rules (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-missing-data,
//! "How alarm state is evaluated when data is missing" and "Avoiding premature transitions to
//! alarm state"), as [`Rule::evaluate`] applies them:
//!
//! * CloudWatch reads an *evaluation range* of more periods than `EvaluationPeriods` (N): its
//!   examples read 5 for N = 3; here N + 2.
//! * At least N real datapoints in the range: the N most recent real ones are evaluated and the
//!   missing-data setting is not used. ALARM when at least `DatapointsToAlarm` (M) of them
//!   breach, else OK.
//! * None at all: `missing` → INSUFFICIENT_DATA, `ignore` → the state is kept, `breaching` →
//!   ALARM, `notBreaching` → OK.
//! * Some, fewer than N: every real datapoint is evaluated, and N − real ones are filled in as
//!   the setting says ("as few times as possible"): `breaching` counts them as breaching,
//!   `notBreaching` as not; `missing` and `ignore` count only the real ones, except for the
//!   premature-alarm rule: when the real datapoints all breach and the oldest breaching one of
//!   the last N periods is at least M periods old, `missing` goes to ALARM ("- - X - -" with
//!   M = N = 3; "- - - X -" with M = 2) and `ignore` keeps the state. "- - - - X" (M = 3) and
//!   "0 - X - -" (M = 2) go to OK: the documentation's tables are the reference here, where its
//!   prose is looser.
//! * Alarms on metrics of the `AWS/DynamoDB` namespace always ignore missing data (PutMetricAlarm
//!   reference, `TreatMissingData`).
//!
//! Metric math alarms evaluate the expression per period ([`crate::metric_math`]); the last row
//! (the one with `ReturnData`, as deploy/cloudwatch.js deploys it) gives the datapoints.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::dashboard::{MetricRow, Row};
use crate::metric_math::{self, Expr, MathError};

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanThreshold,
    GreaterThanOrEqualToThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "GreaterThanThreshold" => Self::GreaterThanThreshold,
            "GreaterThanOrEqualToThreshold" => Self::GreaterThanOrEqualToThreshold,
            "LessThanThreshold" => Self::LessThanThreshold,
            "LessThanOrEqualToThreshold" => Self::LessThanOrEqualToThreshold,
            _ => return None,
        })
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::GreaterThanThreshold => value > threshold,
            Self::GreaterThanOrEqualToThreshold => value >= threshold,
            Self::LessThanThreshold => value < threshold,
            Self::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::GreaterThanThreshold => "greater than",
            Self::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Self::LessThanThreshold => "less than",
            Self::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissing {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "missing" => Self::Missing,
            "ignore" => Self::Ignore,
            "breaching" => Self::Breaching,
            "notBreaching" => Self::NotBreaching,
            _ => return None,
        })
    }
}

/// How an alarm turns its datapoints into a state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub threshold: f64,
    pub comparison: Comparison,
    /// N.
    pub evaluation_periods: usize,
    /// M.
    pub datapoints_to_alarm: usize,
    pub treat_missing: TreatMissing,
}

/// One period's datapoint: when the period starts (ms since the epoch) and its value, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    pub at: i64,
    pub value: Option<f64>,
}

/// What an evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: State,
    pub reason: String,
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{value:.1}") } else { format!("{value}") }
}

fn clock(at: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%d/%m/%y %H:%M:%S").to_string())
        .unwrap_or_else(|| at.to_string())
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

impl Rule {
    /// Periods read per evaluation: the documented examples read N + 2.
    pub fn range(&self) -> usize {
        self.evaluation_periods + 2
    }

    /// The state the datapoints of the evaluation range (oldest first; only the last
    /// [`Rule::range`] are read) lead to, from `current`.
    pub fn evaluate(&self, datapoints: &[Datapoint], current: State) -> Decision {
        let n = self.evaluation_periods.max(1);
        let m = self.datapoints_to_alarm.clamp(1, n);
        let range = &datapoints[datapoints.len().saturating_sub(self.range())..];
        let breaches = |v: f64| self.comparison.breaches(v, self.threshold);
        let real: Vec<(usize, Datapoint)> =
            range.iter().copied().enumerate().filter(|(_, point)| point.value.is_some()).collect();
        let list = |points: &[(usize, Datapoint)]| {
            points
                .iter()
                .rev()
                .map(|(_, p)| format!("{} ({})", number(p.value.unwrap_or_default()), clock(p.at)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let crossed = |state: State, breaching: usize, out_of: usize, points: &[(usize, Datapoint)], filled: &str| {
            let shown = if points.is_empty() { String::new() } else { format!(": [{}]", list(points)) };
            Decision {
                state,
                reason: format!(
                    "Threshold Crossed: {breaching} out of the last {out_of} datapoints {} {} the threshold ({}) (minimum {m} {} for OK -> ALARM transition){shown}{filled}.",
                    plural(breaching, "was", "were"),
                    self.comparison.words(),
                    number(self.threshold),
                    plural(m, "datapoint", "datapoints"),
                ),
            }
        };
        let keep = |why: &str| Decision { state: current, reason: why.to_owned() };

        if real.len() >= n {
            let evaluated = &real[real.len() - n..];
            let breaching = evaluated.iter().filter(|(_, p)| p.value.is_some_and(breaches)).count();
            let state = if breaching >= m { State::Alarm } else { State::Ok };
            return crossed(state, breaching, n, evaluated, "");
        }
        let treat = self.treat_missing;
        if real.is_empty() {
            let periods = range.len();
            return match treat {
                TreatMissing::Missing => Decision {
                    state: State::InsufficientData,
                    reason: format!(
                        "Insufficient Data: no datapoint in the last {periods} periods (missing data treated as missing)."
                    ),
                },
                TreatMissing::Ignore => {
                    keep(&format!("no datapoint in the last {periods} periods; missing data is ignored: state kept"))
                }
                TreatMissing::Breaching => {
                    crossed(State::Alarm, n, n, &[], "; no datapoint, missing data treated as breaching")
                }
                TreatMissing::NotBreaching => {
                    crossed(State::Ok, 0, n, &[], "; no datapoint, missing data treated as not breaching")
                }
            };
        }
        let fills = n - real.len();
        let breaching = real.iter().filter(|(_, p)| p.value.is_some_and(breaches)).count();
        let filled = format!(
            " and {fills} missing {} {}",
            plural(fills, "datapoint", "datapoints"),
            match treat {
                TreatMissing::Breaching => "treated as breaching",
                TreatMissing::NotBreaching => "treated as not breaching",
                TreatMissing::Missing | TreatMissing::Ignore => "left out",
            }
        );
        match treat {
            TreatMissing::Breaching => {
                let count = breaching + fills;
                let state = if count >= m { State::Alarm } else { State::Ok };
                crossed(state, count, n, &real, &filled)
            }
            TreatMissing::NotBreaching => {
                let state = if breaching >= m { State::Alarm } else { State::Ok };
                crossed(state, breaching, n, &real, &filled)
            }
            TreatMissing::Missing | TreatMissing::Ignore => {
                if breaching >= m {
                    return crossed(State::Alarm, breaching, n, &real, &filled);
                }
                if self.premature(range, &real, breaches, m, n) {
                    return match treat {
                        TreatMissing::Missing => Decision {
                            state: State::Alarm,
                            reason: format!(
                                "Threshold Crossed: the oldest breaching datapoint of the last {n} periods is at least {m} periods old and every later one breaches or is missing [{}].",
                                list(&real)
                            ),
                        },
                        _ => keep(
                            "breaching datapoints with missing ones after them; missing data is ignored: state kept",
                        ),
                    };
                }
                crossed(State::Ok, breaching, n, &real, &filled)
            }
        }
    }

    /// CloudWatch's rule against premature ALARM read the other way round: with only some real
    /// datapoints, all breaching, the alarm fires once the oldest breaching one of the last N
    /// periods is M periods old (the later ones being missing or breaching).
    fn premature(
        &self,
        range: &[Datapoint],
        real: &[(usize, Datapoint)],
        breaches: impl Fn(f64) -> bool,
        m: usize,
        n: usize,
    ) -> bool {
        if !real.iter().all(|(_, p)| p.value.is_some_and(&breaches)) {
            return false;
        }
        let last_n = range.len().saturating_sub(n);
        real.iter().find(|(index, _)| *index >= last_n).is_some_and(|(index, _)| range.len() - index >= m)
    }
}

/// One metric an alarm reads, with its statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub id: String,
    pub metric: MetricRow,
    pub stat: String,
}

/// One alarm of deploy/alarms.json, placeholders filled in.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Its key in deploy/alarms.json (the CloudFormation logical id), e.g. `ExternalErrorRateAlarm`.
    pub name: String,
    pub description: String,
    pub metrics: Vec<MetricQuery>,
    /// Expressions in definition order; the last row's id is [`Alarm::returns`].
    pub expressions: Vec<(String, Expr)>,
    pub returns: String,
    /// Seconds.
    pub period: u32,
    pub rule: Rule,
}

impl Alarm {
    /// The alarm's datapoint per period from its metrics' (`values[id][period]`), over
    /// `periods` periods.
    pub fn datapoints(
        &self,
        values: &HashMap<String, Vec<Option<f64>>>,
        periods: usize,
    ) -> Result<Vec<Option<f64>>, MathError> {
        let mut series: HashMap<&str, Vec<Option<f64>>> = HashMap::new();
        for query in &self.metrics {
            let column = values.get(&query.id).cloned().unwrap_or_default();
            series.insert(&query.id, (0..periods).map(|i| column.get(i).copied().flatten()).collect());
        }
        for (id, expr) in &self.expressions {
            let mut column = Vec::with_capacity(periods);
            for i in 0..periods {
                let lookup = |name: &str| match series.get(name) {
                    Some(column) => Ok(column[i]),
                    None => Err(MathError(format!("{}: unknown id {name}", self.name))),
                };
                column.push(expr.eval(&lookup)?);
            }
            series.insert(id, column);
        }
        series.remove(self.returns.as_str()).ok_or_else(|| MathError(format!("{}: no row {}", self.name, self.returns)))
    }
}

/// The `params.default` of serverless.yml (`name: value`, as text), read without a YAML parser:
/// the block is flat `key: value` lines.
pub fn param_defaults(serverless_yml: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut in_params = false;
    let mut in_default = false;
    for line in serverless_yml.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_params = trimmed.starts_with("params:");
            in_default = false;
            continue;
        }
        if !in_params {
            continue;
        }
        if indent == 2 {
            in_default = trimmed.starts_with("default:");
            continue;
        }
        if in_default
            && indent == 4
            && let Some((key, value)) = trimmed.split_once(':')
        {
            let value = match value.find(" #") {
                Some(comment) => &value[..comment],
                None => value,
            };
            params.insert(key.trim().to_owned(), value.trim().trim_matches(['"', '\'']).to_owned());
        }
    }
    params
}

fn field<'a>(name: &str, alarm: &'a Value, key: &str) -> Result<&'a Value, String> {
    alarm.get(key).ok_or_else(|| format!("{name}: no {key}"))
}

fn whole(name: &str, alarm: &Value, key: &str) -> Result<usize, String> {
    field(name, alarm, key)?
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{name}: {key} is not a positive whole number"))
}

/// Reads deploy/alarms.json: `definition` with its placeholders already filled in, thresholds
/// given as `{"param": …}` from `params` (serverless.yml's defaults), and every period replaced
/// by `period_override` when set (`LOCAL_ALARM_PERIOD_SECONDS`).
pub fn load(
    definition: &str,
    params: &BTreeMap<String, String>,
    period_override: Option<u32>,
) -> Result<Vec<Alarm>, String> {
    let alarms: Value =
        serde_json::from_str(definition).map_err(|e| format!("deploy/alarms.json does not parse: {e}"))?;
    let alarms = alarms.as_object().ok_or("deploy/alarms.json: not an object of alarms")?;
    let mut loaded = Vec::new();
    for (name, alarm) in alarms {
        let threshold = match field(name, alarm, "threshold")? {
            Value::Object(param) => {
                let key = param.get("param").and_then(Value::as_str).ok_or_else(|| format!("{name}: threshold"))?;
                params
                    .get(key)
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("{name}: serverless.yml has no numeric param {key}"))?
            }
            value => value.as_f64().ok_or_else(|| format!("{name}: threshold is not a number"))?,
        };
        let comparison = field(name, alarm, "comparison")?
            .as_str()
            .and_then(Comparison::parse)
            .ok_or_else(|| format!("{name}: unsupported comparison"))?;
        let treat_missing = match alarm.get("treatMissingData") {
            None => TreatMissing::Missing,
            Some(value) => {
                value.as_str().and_then(TreatMissing::parse).ok_or_else(|| format!("{name}: bad treatMissingData"))?
            }
        };
        let evaluation_periods = whole(name, alarm, "evaluationPeriods")?;
        let datapoints_to_alarm = match alarm.get("datapointsToAlarm") {
            None => evaluation_periods,
            Some(_) => whole(name, alarm, "datapointsToAlarm")?,
        };
        let period = match period_override {
            Some(period) => period,
            None => u32::try_from(whole(name, alarm, "period")?).map_err(|_| format!("{name}: period"))?,
        };
        let mut metrics = Vec::new();
        let mut expressions = Vec::new();
        let mut returns = String::new();
        let rows = field(name, alarm, "metrics")?.as_array().ok_or_else(|| format!("{name}: metrics"))?;
        for (index, row) in rows.iter().enumerate() {
            let row = Row::parse(row).ok_or_else(|| format!("{name}: row {index} is not a metric row"))?;
            let id = match &row {
                Row::Metric(metric) => metric.options.get("id"),
                Row::Expression { options, .. } => options.get("id"),
            };
            let id = id.and_then(Value::as_str).map_or_else(|| format!("m{}", index + 1), str::to_owned);
            match row {
                Row::Metric(metric) => {
                    let stat = metric.options.get("stat").and_then(Value::as_str).unwrap_or("Average").to_owned();
                    metrics.push(MetricQuery { id: id.clone(), metric, stat });
                }
                Row::Expression { expression, .. } => {
                    let expr = metric_math::parse(&expression).map_err(|e| format!("{name}: {e}"))?;
                    expressions.push((id.clone(), expr));
                }
            }
            returns = id;
        }
        let dynamodb = metrics.iter().any(|q| q.metric.namespace == "AWS/DynamoDB");
        loaded.push(Alarm {
            name: name.clone(),
            description: alarm.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
            metrics,
            expressions,
            returns,
            period,
            rule: Rule {
                threshold,
                comparison,
                evaluation_periods,
                datapoints_to_alarm,
                treat_missing: if dynamodb { TreatMissing::Ignore } else { treat_missing },
            },
        });
    }
    Ok(loaded)
}
