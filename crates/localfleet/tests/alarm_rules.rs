//! The local alarm evaluation against CloudWatch's documented rules: "How alarm state is
//! evaluated when data is missing" and "Avoiding premature transitions to alarm state" in
//! https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-missing-data
//! (every row of both tables, M = N = 3 and M = 2 of N = 3, in the four missing-data modes),
//! M of N, the threshold's boundary for each comparison, and the deployed alarms' metric math
//! (FILL) read from deploy/alarms.json with the thresholds of serverless.yml. Pure: no emulator.

use std::collections::HashMap;

use taskfleet_localfleet::alarm_rules::{self, Alarm, Comparison, Datapoint, Rule, State, TreatMissing};
use taskfleet_localfleet::alarms::SERVERLESS;
use taskfleet_localfleet::dashboard::ALARMS;
use taskfleet_localfleet::local_names::LocalNames;
use taskfleet_localfleet::resources::Names;

use State::{Alarm as ALARM, InsufficientData as INSUFFICIENT, Ok as OK};

const MODES: [TreatMissing; 4] =
    [TreatMissing::Missing, TreatMissing::Ignore, TreatMissing::Breaching, TreatMissing::NotBreaching];

/// A rule breaching above 0.5: `X` is 1 (breaching), `0` is 0, `-` is missing.
fn rule(m: usize, n: usize, treat_missing: TreatMissing) -> Rule {
    Rule {
        threshold: 0.5,
        comparison: Comparison::GreaterThanThreshold,
        evaluation_periods: n,
        datapoints_to_alarm: m,
        treat_missing,
    }
}

/// Datapoints as the documentation writes them, oldest first: "0 - X - X".
fn points(pattern: &str) -> Vec<Datapoint> {
    pattern
        .split_whitespace()
        .enumerate()
        .map(|(i, p)| Datapoint {
            at: 1_700_000_000_000 + 60_000 * i as i64,
            value: match p {
                "X" => Some(1.0),
                "0" => Some(0.0),
                "-" => None,
                other => panic!("not a datapoint: {other}"),
            },
        })
        .collect()
}

fn state(m: usize, n: usize, treat: TreatMissing, pattern: &str, current: State) -> State {
    rule(m, n, treat).evaluate(&points(pattern), current).state
}

/// One documented row: the state in each mode (MISSING, IGNORE, BREACHING, NOT BREACHING);
/// None where the documentation says "Retain current state".
fn check_row(m: usize, n: usize, pattern: &str, expected: [Option<State>; 4]) {
    for (treat, expected) in MODES.iter().zip(expected) {
        for current in [OK, ALARM, INSUFFICIENT] {
            let got = state(m, n, *treat, pattern, current);
            let want = expected.unwrap_or(current);
            assert_eq!(got, want, "{m} of {n}, {treat:?}, \"{pattern}\" from {current:?}");
        }
    }
}

#[test]
fn the_evaluation_range_is_n_plus_two() {
    assert_eq!(rule(3, 3, TreatMissing::Missing).range(), 5);
    assert_eq!(rule(3, 5, TreatMissing::Missing).range(), 7);
}

#[test]
fn first_table_three_of_three() {
    check_row(3, 3, "0 - X - X", [Some(OK), Some(OK), Some(OK), Some(OK)]);
    check_row(3, 3, "0 - - - -", [Some(OK), Some(OK), Some(OK), Some(OK)]);
    check_row(3, 3, "- - - - -", [Some(INSUFFICIENT), None, Some(ALARM), Some(OK)]);
    check_row(3, 3, "0 X X - X", [Some(ALARM), Some(ALARM), Some(ALARM), Some(ALARM)]);
    check_row(3, 3, "- - X - -", [Some(ALARM), None, Some(ALARM), Some(OK)]);
}

#[test]
fn second_table_two_of_three() {
    check_row(2, 3, "0 - X - X", [Some(ALARM), Some(ALARM), Some(ALARM), Some(ALARM)]);
    check_row(2, 3, "0 0 X 0 X", [Some(ALARM), Some(ALARM), Some(ALARM), Some(ALARM)]);
    check_row(2, 3, "0 - X - -", [Some(OK), Some(OK), Some(ALARM), Some(OK)]);
    check_row(2, 3, "- - - - 0", [Some(OK), Some(OK), Some(ALARM), Some(OK)]);
    check_row(2, 3, "- - - X -", [Some(ALARM), None, Some(ALARM), Some(OK)]);
}

#[test]
fn a_recent_breach_among_missing_data_is_not_a_premature_alarm() {
    // "the alarm does not go immediately into ALARM state when the data is either - - - - X or
    // - - - X - and Datapoints to Alarm is 3".
    for pattern in ["- - - - X", "- - - X -"] {
        assert_ne!(state(3, 3, TreatMissing::Missing, pattern, OK), ALARM, "{pattern}");
        assert_eq!(state(3, 3, TreatMissing::Ignore, pattern, OK), OK, "{pattern}");
    }
    // Once the next datapoint is not breaching, there is nothing to alarm on.
    assert_eq!(state(3, 3, TreatMissing::Missing, "- - - X 0", OK), OK);
    assert_eq!(state(3, 3, TreatMissing::Missing, "- - X - 0", OK), OK);
}

#[test]
fn with_enough_real_datapoints_the_missing_data_setting_is_not_used() {
    // Three real datapoints in the range: the three most recent are evaluated, gaps skipped.
    for treat in MODES {
        assert_eq!(state(3, 3, treat, "X - X - X", OK), ALARM, "{treat:?}");
        assert_eq!(state(3, 3, treat, "X - X 0 X", ALARM), OK, "{treat:?}");
    }
}

#[test]
fn breaching_fills_only_the_shortfall() {
    // Three gaps but two real datapoints: one fill, as breaching, makes 2 of 3 — not 3.
    assert_eq!(state(3, 3, TreatMissing::Breaching, "0 - X - -", OK), OK);
    assert_eq!(state(2, 3, TreatMissing::Breaching, "0 - X - -", OK), ALARM);
}

#[test]
fn m_of_n_counts_breaching_datapoints_anywhere_in_the_last_n() {
    let three_of_five = |pattern: &str| state(3, 5, TreatMissing::NotBreaching, pattern, OK);
    assert_eq!(three_of_five("0 0 X 0 X 0 X"), ALARM);
    assert_eq!(three_of_five("X X 0 0 X 0 X"), OK, "only two of the last five breach");
    assert_eq!(three_of_five("0 0 X X X 0 0"), ALARM);
    assert_eq!(three_of_five("0 0 0 X X 0 0"), OK);
    // Back from ALARM as soon as fewer than M of the last N breach.
    assert_eq!(state(3, 5, TreatMissing::NotBreaching, "X X X X X 0 0", ALARM), ALARM);
    assert_eq!(state(3, 5, TreatMissing::NotBreaching, "X X X X 0 0 0", ALARM), OK);
    // Five of five (JobsBacklog, StuckTasks): one good period holds it off.
    assert_eq!(state(5, 5, TreatMissing::NotBreaching, "0 0 X X X X X", OK), ALARM);
    assert_eq!(state(5, 5, TreatMissing::NotBreaching, "0 0 X X 0 X X", OK), OK);
}

#[test]
fn the_threshold_itself_breaches_only_with_or_equal() {
    let at = |comparison: Comparison, value: f64| {
        let rule = Rule {
            threshold: 5.0,
            comparison,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            treat_missing: TreatMissing::Missing,
        };
        rule.evaluate(&[Datapoint { at: 0, value: Some(value) }], INSUFFICIENT).state
    };
    assert_eq!(at(Comparison::GreaterThanThreshold, 5.0), OK);
    assert_eq!(at(Comparison::GreaterThanThreshold, 5.000_001), ALARM);
    assert_eq!(at(Comparison::GreaterThanOrEqualToThreshold, 5.0), ALARM);
    assert_eq!(at(Comparison::GreaterThanOrEqualToThreshold, 4.999_999), OK);
    assert_eq!(at(Comparison::LessThanThreshold, 5.0), OK);
    assert_eq!(at(Comparison::LessThanThreshold, 4.999_999), ALARM);
    assert_eq!(at(Comparison::LessThanOrEqualToThreshold, 5.0), ALARM);
}

#[test]
fn the_reason_says_what_was_evaluated() {
    let decision = rule(3, 3, TreatMissing::Missing).evaluate(&points("0 X X - X"), OK);
    assert_eq!(decision.state, ALARM);
    let reason = &decision.reason;
    assert!(
        reason.starts_with("Threshold Crossed: 3 out of the last 3 datapoints were greater than the threshold (0.5)"),
        "{reason}"
    );
    assert!(reason.contains("(minimum 3 datapoints for OK -> ALARM transition): [1.0 ("), "{reason}");
    let partial = rule(2, 3, TreatMissing::Breaching).evaluate(&points("- - - - 0"), OK);
    assert!(partial.reason.starts_with("Threshold Crossed: 2 out of the last 3 datapoints were"), "{}", partial.reason);
    assert!(partial.reason.ends_with("and 2 missing datapoints treated as breaching."), "{}", partial.reason);
    let none = rule(3, 3, TreatMissing::Missing).evaluate(&points("- - - - -"), OK);
    assert!(none.reason.starts_with("Insufficient Data"), "{}", none.reason);
}

// The deployed alarms, as the local fleet loads them.

fn deployed(period: Option<u32>) -> HashMap<String, Alarm> {
    let names = LocalNames::new(&Names::with_prefix("taskfleet-dev"), "TaskFleet", "us-east-1");
    let params = alarm_rules::param_defaults(SERVERLESS);
    alarm_rules::load(&names.substitute(ALARMS), &params, period)
        .expect("deploy/alarms.json loads")
        .into_iter()
        .map(|alarm| (alarm.name.clone(), alarm))
        .collect()
}

/// An alarm's decision over `periods` periods of metric values (`id` → one value per period).
fn decide(alarm: &Alarm, columns: &[(&str, Vec<Option<f64>>)], current: State) -> State {
    let periods = columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let values: HashMap<String, Vec<Option<f64>>> =
        columns.iter().map(|(id, c)| ((*id).to_owned(), c.clone())).collect();
    let datapoints = alarm.datapoints(&values, periods).expect("the expression evaluates");
    let datapoints: Vec<Datapoint> =
        datapoints.into_iter().enumerate().map(|(i, value)| Datapoint { at: i as i64 * 10_000, value }).collect();
    alarm.rule.evaluate(&datapoints, current).state
}

#[test]
fn thresholds_come_from_serverless_params_and_the_local_period_replaces_every_period() {
    let params = alarm_rules::param_defaults(SERVERLESS);
    assert_eq!(params.get("externalErrorRateAlarmPercent").map(String::as_str), Some("5"));
    assert_eq!(params.get("metricsNamespace").map(String::as_str), Some("TaskFleet"));
    let alarms = deployed(Some(10));
    assert_eq!(alarms["ExternalErrorRateAlarm"].rule.threshold, 5.0);
    assert_eq!(alarms["BacklogAgeAlarm"].rule.threshold, 300.0);
    assert_eq!(alarms["LambdaErrorsAlarm"].rule.threshold, 0.0);
    assert!(alarms.values().all(|alarm| alarm.period == 10));
    let as_deployed = deployed(None);
    assert_eq!(as_deployed["TaskFailureRateAlarm"].period, 300);
    assert_eq!(as_deployed["ExternalErrorRateAlarm"].period, 60);
    let rule = as_deployed["ExternalErrorRateAlarm"].rule;
    assert_eq!(
        (rule.datapoints_to_alarm, rule.evaluation_periods, rule.treat_missing),
        (3, 5, TreatMissing::NotBreaching)
    );
}

#[test]
fn alarms_on_dynamodb_metrics_always_ignore_missing_data() {
    let alarms = deployed(None);
    assert_eq!(alarms["TableWriteThrottlesAlarm"].rule.treat_missing, TreatMissing::Ignore);
    assert_eq!(alarms["BacklogAgeAlarm"].rule.treat_missing, TreatMissing::Breaching);
}

#[test]
fn the_external_error_rate_fills_missing_counts_with_zero() {
    let alarm = &deployed(Some(10))["ExternalErrorRateAlarm"];
    let calls = |v: &[Option<f64>]| ("calls", v.to_vec());
    let errors = |v: &[Option<f64>]| ("errors", v.to_vec());
    // No calls at all: FILL makes every period 0 %, not missing — OK, not INSUFFICIENT_DATA.
    assert_eq!(decide(alarm, &[calls(&[None; 7]), errors(&[None; 7])], INSUFFICIENT), OK);
    // 10 % errors in three of the last five periods: ALARM; no errors reported is 0 %.
    let c = [Some(10.0); 7];
    let e = [None, None, Some(1.0), None, Some(1.0), None, Some(1.0)];
    assert_eq!(decide(alarm, &[calls(&c), errors(&e)], OK), ALARM);
    // Two of five: OK.
    let e = [Some(1.0), Some(1.0), None, None, Some(1.0), None, Some(1.0)];
    assert_eq!(decide(alarm, &[calls(&c), errors(&e)], OK), OK);
    // Exactly the threshold (5 %) does not breach "greater than".
    let c = [Some(20.0); 7];
    let e = [Some(1.0); 7];
    assert_eq!(decide(alarm, &[calls(&c), errors(&e)], OK), OK);
    // Errors without any calls reported in the period: the rate is 0, not a division by zero.
    assert_eq!(decide(alarm, &[calls(&[None; 7]), errors(&[Some(3.0); 7])], ALARM), OK);
}

#[test]
fn the_stuck_tasks_alarm_multiplies_overdue_tasks_while_the_sweeper_does_not_sweep() {
    let alarm = &deployed(Some(10))["StuckTasksAlarm"];
    let overdue = ("overdue", vec![Some(3.0); 7]);
    // Sweeping, without errors: 3 overdue is not more than sweepBatch (500).
    let runs = ("runs", vec![Some(1.0); 7]);
    let errors = ("errors", vec![Some(0.0); 7]);
    assert_eq!(decide(alarm, &[overdue.clone(), runs, errors], OK), OK);
    // No sweeper run at all (missing, filled with 0): 3 × 10^6 breaches, 5 of 5 periods.
    let runs = ("runs", vec![None; 7]);
    let errors = ("errors", vec![None; 7]);
    assert_eq!(decide(alarm, &[overdue.clone(), runs, errors], OK), ALARM);
    // Sweeping but failing.
    let runs = ("runs", vec![Some(1.0); 7]);
    let errors = ("errors", vec![Some(1.0); 7]);
    assert_eq!(decide(alarm, &[overdue, runs, errors], OK), ALARM);
    // No gauge at all: the expression has no datapoint (not filled): notBreaching → OK.
    let none = ("overdue", vec![None; 7]);
    assert_eq!(decide(alarm, &[none, ("runs", vec![None; 7]), ("errors", vec![None; 7])], ALARM), OK);
}

#[test]
fn the_backlog_alarm_fires_when_its_gauge_stops() {
    let alarm = &deployed(Some(10))["BacklogAgeAlarm"];
    assert_eq!(decide(alarm, &[("m1", vec![Some(1.0); 7])], INSUFFICIENT), OK);
    // Missing data is breaching: no gauge in the range is ALARM (the metrics cron stopped).
    assert_eq!(decide(alarm, &[("m1", vec![None; 7])], OK), ALARM);
    // Two gauges of the last seven periods, young: 3 fills as breaching → ALARM.
    let two = vec![None, None, None, None, Some(1.0), None, Some(1.0)];
    assert_eq!(decide(alarm, &[("m1", two)], OK), ALARM);
    // Five real ones, even with gaps: the setting is not used.
    let five = vec![Some(1.0), None, Some(1.0), Some(1.0), None, Some(1.0), Some(1.0)];
    assert_eq!(decide(alarm, &[("m1", five)], ALARM), OK);
}

#[test]
fn the_task_failure_rate_counts_failures_without_completions_as_one_hundred_percent() {
    let alarm = &deployed(Some(10))["TaskFailureRateAlarm"];
    // 2 of 3 periods: failures and no completion.
    let done = ("done", vec![None, None, Some(5.0), None, None]);
    let failed = ("failed", vec![None, None, None, Some(1.0), Some(1.0)]);
    assert_eq!(decide(alarm, &[done, failed], OK), ALARM);
    let done = ("done", vec![Some(100.0); 5]);
    let failed = ("failed", vec![Some(1.0); 5]);
    assert_eq!(decide(alarm, &[done, failed], ALARM), OK);
}

#[test]
fn every_deployed_alarm_evaluates_with_no_data() {
    for (name, alarm) in deployed(Some(10)) {
        let range = alarm.rule.range();
        let columns: Vec<(&str, Vec<Option<f64>>)> =
            alarm.metrics.iter().map(|q| (q.id.as_str(), vec![None; range])).collect();
        let state = decide(&alarm, &columns, INSUFFICIENT);
        // Breaching: ALARM. The others: OK, the sums and rates being FILLed with 0 (even the
        // DynamoDB alarm, which ignores missing data, has datapoints then).
        let expected = if alarm.rule.treat_missing == TreatMissing::Breaching { ALARM } else { OK };
        assert_eq!(state, expected, "{name}");
    }
}
