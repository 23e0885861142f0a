//! Timers, backpressure and fairness, end to end through the local fleet (issue "on-time
//! retries"): retries and timeouts fire when due with the sweeper on AWS's minute; the service
//! never sees more jobs at once than the fleet's bound, and a `429 Retry-After` holds the whole
//! fleet; one client's burst does not make another client wait behind it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use taskfleet_core::Timestamp;
use taskfleet_core::policy::Policies;
use taskfleet_core::retry::RetryPolicy;
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, Scenario, TestFleet};
use taskfleet_example_service::{Answer, Chaos, Throttle};
use taskfleet_localfleet::queue::EventSource;

/// One entry of a task's history as the API shows it.
#[derive(Debug, Clone)]
struct Step {
    status: String,
    attempt: u64,
    at: Timestamp,
    reason: String,
}

fn history(view: &Value) -> Vec<Step> {
    view["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| Step {
            status: entry["status"].as_str().unwrap_or_default().to_owned(),
            attempt: entry["attempt"].as_u64().unwrap_or_default(),
            at: Timestamp::parse_rfc3339(entry["at"].as_str().unwrap_or_default()).expect("an RFC 3339 time"),
            reason: entry["reason"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The 95th percentile (nearest rank) of some milliseconds.
fn p95(mut millis: Vec<i64>) -> i64 {
    millis.sort_unstable();
    let rank = (millis.len() * 95).div_ceil(100).max(1);
    millis[rank - 1]
}

/// A bound on the fleet: `pollers` caller invocations at once × `each` jobs per invocation.
fn bound(pollers: usize, each: usize) -> Option<(EventSource, usize)> {
    Some((EventSource { batch_size: 10, batch_window: Duration::ZERO, max_concurrency: pollers }, each))
}

const CALLBACK_TIMEOUT: Duration = Duration::from_secs(3);
/// Every backoff is between half of this and this (equal jitter, base = max).
const BACKOFF: Duration = Duration::from_millis(400);

/// These tests measure time on an emulator that serves one DynamoDB request at a time: they run
/// one after another, not alongside each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (bounded) until the service accepted a job with a callback for each task — reading the
/// service's journal, not polling the fleet, which would load the emulator the test measures.
async fn until_each_accepted(fleet: &TestFleet, ids: &[String], within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let accepted: HashSet<String> =
            fleet.stats.arrivals().into_iter().filter(|a| a.answer == Answer::Accepted).map(|a| a.task_id).collect();
        if ids.iter().all(|id| accepted.contains(id)) {
            return;
        }
        if start.elapsed() >= within {
            let missing: Vec<&String> = ids.iter().filter(|id| !accepted.contains(*id)).collect();
            let mut views = Vec::new();
            for id in &missing {
                views.push(fleet.status(KEY_ALPHA, id).await);
            }
            panic!(
                "not every task accepted within {within:?}: {} missing, as the API shows them: {views:?}",
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_timeouts_fire_when_due_with_the_sweeper_on_its_minute() {
    let scenario = Scenario {
        delay: Duration::from_millis(50),
        service: Chaos { refuse: 0.3, drop_callback: 0.15, ..Chaos::default() },
        // The sweeper on AWS's schedule with the default grace: it cannot be what moves tasks.
        sweep_interval: Some(Duration::from_secs(60)),
        policies: Some(Policies {
            // An attempt ends without a callback 40.5 % of the time (refused 30 %, or accepted
            // and its callback lost: 70 % × 15 %): with 10 attempts one task in ~8,000 would fail
            // before it is ever called back (0.7 % of runs); with 20, one in ~70 million.
            retry: RetryPolicy { max_attempts: 20, base_delay: BACKOFF, max_delay: BACKOFF },
            callback_timeout: CALLBACK_TIMEOUT,
            dispatch_grace: Policies::DEFAULT_DISPATCH_GRACE,
            ..Policies::default()
        }),
        ..Scenario::default()
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(scenario).await;
    // A steady stream of tasks (about 7 a second): what is measured is the timers, not how fast
    // the emulator absorbs a burst (it serves one DynamoDB request at a time).
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.extend(fleet.submit_many(KEY_ALPHA, 1).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    until_each_accepted(&fleet, &ids, Duration::from_secs(150)).await;
    let views = fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(30)).await;

    // From each task's history (the fleet's own clock): how late the next attempt started.
    let (mut after_refusal, mut after_deadline) = (Vec::new(), Vec::new());
    for view in views.values() {
        let steps = history(view);
        for (index, step) in steps.iter().enumerate() {
            if step.status != "RECEIVED" || step.attempt == 0 {
                continue;
            }
            let Some(next) = steps[index + 1..].iter().find(|s| s.status == "IN_PROGRESS") else { continue };
            assert_eq!(next.attempt, step.attempt + 1, "{steps:?}");
            if step.reason.contains("no callback within") {
                let started = steps[..index].iter().rev().find(|s| s.status == "IN_PROGRESS").expect("a start");
                let deadline = started.at.plus(CALLBACK_TIMEOUT);
                after_deadline.push(next.at.as_millis() - deadline.as_millis());
            } else {
                assert!(step.reason.contains("503"), "{steps:?}");
                let gap = next.at.as_millis() - step.at.as_millis();
                let shortest_backoff = i64::try_from(BACKOFF.as_millis() / 2).unwrap_or(0);
                assert!(gap >= shortest_backoff, "a retry started before its backoff ended: {steps:?}");
                // Lateness is at most the gap less the shortest backoff.
                after_refusal.push(gap - shortest_backoff);
            }
        }
    }
    println!(
        "refusal → next attempt, late by ≤ {} ms at p95 ({} samples); deadline → next attempt {} ms at p95 ({} samples)",
        p95(after_refusal.clone()),
        after_refusal.len(),
        p95(after_deadline.clone()),
        after_deadline.len()
    );
    assert!(after_refusal.len() >= 8 && after_deadline.len() >= 4, "{after_refusal:?} {after_deadline:?}");
    assert!(p95(after_refusal) <= 2_000, "retries start within 2 s of their backoff");
    assert!(after_deadline.iter().all(|late| *late >= 0), "never timed out early: {after_deadline:?}");
    assert!(p95(after_deadline) <= 2_000, "a lost callback's attempt is retried within 2 s of its deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_never_sees_more_than_the_bound_and_a_retry_after_holds_the_whole_fleet() {
    const HOLD: Duration = Duration::from_secs(5);
    let scenario = Scenario {
        delay: Duration::from_millis(10),
        service: Chaos {
            answer_after: Duration::from_millis(200),
            throttle: Some(Throttle { nth: 12, retry_after_seconds: HOLD.as_secs() }),
            ..Chaos::default()
        },
        caller: bound(2, 2),
        ..Scenario::default()
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(scenario).await;
    let ids = fleet.submit_many(KEY_ALPHA, 40).await;
    let views = fleet.wait_all(KEY_ALPHA, &ids, Duration::from_secs(90)).await;
    assert!(views.values().all(|v| v["status"] == "DONE"), "no task fails because of the hold");

    let most = fleet.stats.most_in_flight();
    assert!((2..=4).contains(&most), "the service saw {most} jobs at once; the bound is 4");

    let arrivals = fleet.stats.arrivals();
    let throttled = arrivals.iter().find(|a| a.answer == Answer::Throttled).expect("the 12th job was throttled");
    let (held_from, held_until) = (throttled.answered_at, throttled.answered_at.plus(HOLD));
    // Jobs already being handed over when the 429 came may still arrive; none started later.
    let started: HashMap<(String, u64), Timestamp> = views
        .iter()
        .flat_map(|(id, view)| {
            history(view)
                .into_iter()
                .filter(|s| s.status == "IN_PROGRESS")
                .map(move |s| ((id.clone(), s.attempt), s.at))
        })
        .collect();
    // Jobs already being handed over when the 429 came (at most the bound's other three) may
    // still arrive; once those are through, nothing reaches the service until the hold ends.
    let during: Vec<_> = arrivals.iter().filter(|a| a.at > held_from && a.at < held_until).collect();
    assert!(during.len() <= 3, "at most the other jobs in flight: {during:?}");
    for arrival in &during {
        let start = started[&(arrival.task_id.clone(), u64::from(arrival.attempt))];
        assert!(
            start.millis_since(held_from) < 250 && arrival.at.millis_since(held_from) < 1_000,
            "a job handed over {} ms into the hold reached the service",
            arrival.at.millis_since(held_from)
        );
    }
    assert!(arrivals.iter().any(|a| a.at >= held_until), "the fleet resumed by itself");
    let retried = &views[&throttled.task_id];
    assert_eq!(retried["status"], "DONE", "the throttled task was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_burst_does_not_make_another_client_wait_behind_it() {
    let scenario = Scenario {
        delay: Duration::from_millis(10),
        service: Chaos { answer_after: Duration::from_millis(250), ..Chaos::default() },
        caller: bound(2, 2),
        ..Scenario::default()
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(scenario).await;
    let burst = fleet.submit_many(KEY_ALPHA, 300).await;
    let few = fleet.submit_many(KEY_BETA, 10).await;
    let few_ids: HashSet<&String> = few.iter().collect();
    until_each_accepted(&fleet, &few, Duration::from_secs(60)).await;

    // The order in which first attempts reached the service.
    let order: Vec<bool> =
        fleet.stats.arrivals().iter().filter(|a| a.attempt == 1).map(|a| few_ids.contains(&a.task_id)).collect();
    let last_of_few = order.iter().rposition(|is_few| *is_few).expect("B's jobs reached the service");
    let burst_after = order[last_of_few..].iter().filter(|is_few| !**is_few).count();
    let burst_handed = order.iter().filter(|is_few| !**is_few).count();
    println!(
        "B's last job reached the service after {} of A's 300; {burst_after} of A's came later",
        burst_handed - burst_after
    );
    // A's jobs still waiting when B's were all handed over: those handed over later, and those
    // not handed over yet.
    let burst_waiting = burst_after + (burst.len() - burst_handed);
    assert!(burst_waiting >= 100, "B's 10 tasks waited behind A's burst: only {burst_waiting} of A's were left");
    until_each_accepted(&fleet, &burst, Duration::from_secs(120)).await;
}
