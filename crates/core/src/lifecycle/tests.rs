use serde_json::json;

use super::*;
use crate::blob::Content;
use crate::task::ClientId;
use TaskStatus::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000)
}

fn task() -> Task {
    Task::received(ClientId::parse("alpha").unwrap(), at(100), 10_000)
}

fn ttl() -> TtlPolicy {
    TtlPolicy::new(3_600, 86_400)
}

#[test]
fn a_received_task_may_start_or_be_cancelled() {
    assert_eq!(check(Received, InProgress), Ok(()));
    assert_eq!(check(Received, Failed), Ok(()));
}

#[test]
fn a_received_task_cannot_finish_without_starting() {
    assert!(check(Received, Done).is_err());
}

#[test]
fn a_task_in_progress_may_finish_either_way_or_go_back_for_another_attempt() {
    assert_eq!(check(InProgress, Done), Ok(()));
    assert_eq!(check(InProgress, Failed), Ok(()));
    assert_eq!(check(InProgress, Received), Ok(()));
}

#[test]
fn a_done_task_never_changes_again() {
    for to in TaskStatus::ALL {
        assert_eq!(check(Done, to), Err(IllegalTransition { from: Done, to }));
    }
}

#[test]
fn a_failed_task_can_only_be_replayed() {
    for to in TaskStatus::ALL {
        assert_eq!(check(Failed, to).is_ok(), to == Received, "FAILED → {to}");
    }
}

#[test]
fn no_status_moves_to_itself() {
    for status in TaskStatus::ALL {
        assert!(check(status, status).is_err(), "{status} → {status}");
    }
}

#[test]
fn exactly_six_transitions_are_legal() {
    let legal: Vec<(TaskStatus, TaskStatus)> = TaskStatus::ALL
        .into_iter()
        .flat_map(|from| TaskStatus::ALL.into_iter().map(move |to| (from, to)))
        .filter(|&(from, to)| check(from, to).is_ok())
        .collect();
    assert_eq!(
        legal,
        [
            (Received, InProgress),
            (Received, Failed),
            (InProgress, Received),
            (InProgress, Done),
            (InProgress, Failed),
            (Failed, Received)
        ]
    );
}

#[test]
fn starting_attempt_n_needs_n_minus_one_attempts_and_sets_the_callback_deadline() {
    let task = task();
    let start = Transition::start(&task.task_id, 1, "d1".into(), (at(110), at(200)), &ttl());
    assert!(start.matches(&task));
    let started = start.applied_to(&task);
    assert_eq!((started.status, started.attempts), (InProgress, 1));
    assert_eq!(started.callback_tokens, [(1, "d1".to_owned())].into());
    assert_eq!(started.due_at, at(200));
    assert_eq!(started.expires_at, 110 + 3_600, "a started attempt gets a new task TTL from its start");
    assert_eq!(started.history.last().map(|e| (e.status, e.attempt)), Some((InProgress, 1)));
    assert!(!start.matches(&started), "the same start again does not apply");
    assert!(!Transition::start(&task.task_id, 2, "d2".into(), (at(110), at(200)), &ttl()).matches(&task));
}

#[test]
fn finishing_needs_the_current_attempt_and_its_token() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let ok = Outcome::Succeeded { result: Content::Inline(json!({"ok": true})) };
    let finish = Transition::finish(&task.task_id, 1, "d1".into(), ok.clone(), at(120), &ttl());
    assert!(finish.matches(&task));
    assert!(!Transition::finish(&task.task_id, 1, "forged".into(), ok.clone(), at(120), &ttl()).matches(&task));
    assert!(!Transition::finish(&task.task_id, 2, "d1".into(), ok, at(120), &ttl()).matches(&task));

    let done = finish.applied_to(&task);
    assert_eq!(done.status, Done);
    assert_eq!(done.result, Some(Content::Inline(json!({"ok": true}))));
    assert_eq!(done.expires_at, 120 + 86_400, "a finished task keeps its result for the retention");
    assert_eq!(done.due_at, at(120), "due_at of a finished task is when it finished");
    assert!(!finish.matches(&done), "an attempt finishes once");
}

#[test]
fn an_earlier_attempt_cannot_finish_or_beat_while_a_later_one_runs() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let task = Transition::retry(&task.task_id, 1, "timed out", at(201), at(210)).applied_to(&task);
    let task = Transition::start(&task.task_id, 2, "d2".into(), (at(211), at(300)), &ttl()).applied_to(&task);
    assert_eq!((task.status, task.attempts), (InProgress, 2));
    assert_eq!(token_of(&task, 1).map(String::as_str), Some("d1"), "attempt 1's token is still kept");
    let ok = Outcome::Succeeded { result: Content::Inline(json!(1)) };
    assert!(!Transition::finish(&task.task_id, 1, "d1".into(), ok.clone(), at(220), &ttl()).matches(&task));
    assert!(!Transition::heartbeat(&task.task_id, 1, "d1".into(), (at(220), at(400)), &ttl()).matches(&task));
    assert!(Transition::finish(&task.task_id, 2, "d2".into(), ok, at(220), &ttl()).matches(&task));
}

#[test]
fn giving_up_keeps_the_task_for_the_result_retention_from_then() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    assert_eq!(task.expires_at, 110 + 3_600, "the task TTL from its start");
    let failed =
        Transition::give_up(&task.task_id, InProgress, Some(1), "gave up", at(250), &ttl()).unwrap().applied_to(&task);
    assert_eq!((failed.status, failed.error.as_deref()), (Failed, Some("gave up")));
    assert_eq!((failed.due_at, failed.expires_at), (at(250), 250 + 86_400));
    assert_eq!(failed.history.last().map(|e| (e.status, e.attempt)), Some((Failed, 1)));
}

#[test]
fn a_failure_callback_records_the_error_in_the_task_and_its_history() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let failed =
        Transition::finish(&task.task_id, 1, "d1".into(), Outcome::Failed { error: "boom".into() }, at(120), &ttl())
            .applied_to(&task);
    assert_eq!((failed.status, failed.error.as_deref(), failed.result.as_ref()), (Failed, Some("boom"), None));
    assert_eq!(failed.history.last().and_then(|e| e.reason.as_deref()), Some("boom"));
}

#[test]
fn a_retry_puts_the_task_back_until_its_retry_time() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let retry = Transition::retry(&task.task_id, 1, "service answered 503", at(120), at(150));
    assert!(retry.matches(&task));
    let waiting = retry.applied_to(&task);
    assert_eq!((waiting.status, waiting.attempts, waiting.due_at), (Received, 1, at(150)));
    assert_eq!(waiting.history.last().and_then(|e| e.reason.as_deref()), Some("service answered 503"));
    assert!(
        !Transition::finish(&task.task_id, 1, "d1".into(), Outcome::Failed { error: "late".into() }, at(130), &ttl())
            .matches(&waiting),
        "a callback for the retried attempt no longer applies"
    );
}

#[test]
fn a_sweep_loses_to_a_heartbeat_that_moved_the_deadline() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let timeout = Transition::retry(&task.task_id, 1, "callback timed out", at(201), at(230)).if_due_unchanged(at(200));
    assert!(timeout.matches(&task));
    let beat = Transition::heartbeat(&task.task_id, 1, "d1".into(), (at(199), at(400)), &ttl());
    assert!(beat.matches(&task));
    let extended = beat.applied_to(&task);
    assert_eq!(extended.due_at, at(400));
    assert!(!timeout.matches(&extended));
}

#[test]
fn a_heartbeat_needs_the_current_attempt_and_its_token() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let beat = |attempt, digest: &str| {
        Transition::heartbeat(&task.task_id, attempt, digest.into(), (at(150), at(300)), &ttl())
    };
    assert!(beat(1, "d1").matches(&task));
    assert!(!beat(1, "x").matches(&task));
    assert!(!beat(2, "d1").matches(&task));
    assert!(!beat(1, "d1").matches(&self::task()), "not before the attempt started");
}

#[test]
fn giving_up_is_refused_from_done_and_guarded_by_attempt_when_given() {
    let task = task();
    assert!(Transition::give_up(&task.task_id, Received, None, CANCELLED, at(101), &ttl()).unwrap().matches(&task));
    assert!(!Transition::give_up(&task.task_id, Received, Some(3), "x", at(101), &ttl()).unwrap().matches(&task));
    assert_eq!(
        Transition::give_up(&task.task_id, Done, None, "x", at(101), &ttl()),
        Err(IllegalTransition { from: Done, to: Failed })
    );
}

#[test]
fn a_cancel_marks_the_task_cancelled_and_keeps_it_for_the_result_retention() {
    let received = task();
    let running =
        Transition::start(&received.task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&received);
    for (task, from, attempts) in [(&received, Received, 0), (&running, InProgress, 1)] {
        let cancel = Transition::cancel(&task.task_id, from, attempts, at(150), &ttl()).unwrap();
        assert!(cancel.matches(task));
        assert!(cancel.writes().contains(&Write::Cancelled(true)));
        assert!(!Transition::cancel(&task.task_id, from, attempts + 1, at(150), &ttl()).unwrap().matches(task));
        let cancelled = cancel.applied_to(task);
        assert_eq!(
            (cancelled.status, cancelled.error.as_deref(), cancelled.cancelled),
            (Failed, Some(CANCELLED), true)
        );
        assert_eq!((cancelled.due_at, cancelled.expires_at), (at(150), 150 + 86_400), "{from}");
        let last = cancelled.history.last().map(|e| (e.status, e.attempt, e.reason.as_deref()));
        assert_eq!(last, Some((Failed, attempts, Some("cancelled"))));
        assert!(!cancel.matches(&cancelled), "a task is cancelled once");
    }
    for from in [Done, Failed] {
        assert_eq!(
            Transition::cancel(&received.task_id, from, 0, at(150), &ttl()),
            Err(IllegalTransition { from, to: Failed })
        );
    }
}

#[test]
fn a_failure_reported_in_the_word_cancelled_is_no_cancel() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let reported = Outcome::Failed { error: CANCELLED.into() };
    let failed = Transition::finish(&task.task_id, 1, "d1".into(), reported, at(120), &ttl()).applied_to(&task);
    assert_eq!((failed.status, failed.error.as_deref(), failed.cancelled), (Failed, Some(CANCELLED), false));
    let given_up = Transition::give_up(&task.task_id, InProgress, Some(1), CANCELLED, at(120), &ttl()).unwrap();
    assert!(!given_up.applied_to(&task).cancelled);
}

#[test]
fn a_replay_of_a_cancelled_task_is_no_longer_cancelled() {
    let task = task();
    let cancelled = Transition::cancel(&task.task_id, Received, 0, at(101), &ttl()).unwrap().applied_to(&task);
    let replay = Transition::replay(&task.task_id, 0, at(500), &ttl());
    assert!(replay.writes().contains(&Write::Cancelled(false)));
    let again = replay.applied_to(&cancelled);
    assert_eq!((again.status, again.error.as_ref(), again.cancelled), (Received, None, false));
}

#[test]
fn a_replay_starts_a_new_series_and_a_new_lifetime() {
    let task = task();
    let failed =
        Transition::give_up(&task.task_id, Received, None, CANCELLED, at(101), &ttl()).unwrap().applied_to(&task);
    let replay = Transition::replay(&task.task_id, failed.attempts, at(500), &ttl());
    assert!(replay.matches(&failed));
    let again = replay.applied_to(&failed);
    assert_eq!((again.status, again.error.as_ref(), again.due_at), (Received, None, at(500)));
    assert_eq!(again.series_start, failed.attempts);
    assert_eq!(again.expires_at, 500 + 3_600);
    assert_eq!(again.history.iter().map(|e| e.status).collect::<Vec<_>>(), [Received, Failed, Received]);
    assert!(!replay.matches(&again));
}

#[test]
fn a_heartbeat_moves_only_the_deadline_and_leaves_no_history() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let beaten = Transition::heartbeat(&task.task_id, 1, "d1".into(), (at(150), at(300)), &ttl()).applied_to(&task);
    assert_eq!((beaten.status, beaten.due_at, beaten.updated_at), (InProgress, at(300), at(150)));
    assert_eq!(beaten.history, task.history);
}

#[test]
fn every_kind_of_transition_makes_a_legal_status_change() {
    let id = task().task_id;
    let ok = Outcome::Succeeded { result: Content::Inline(json!(1)) };
    let kinds = [
        Transition::start(&id, 1, "d".into(), (at(1), at(2)), &ttl()),
        Transition::finish(&id, 1, "d".into(), ok, at(1), &ttl()),
        Transition::finish(&id, 1, "d".into(), Outcome::Failed { error: "e".into() }, at(1), &ttl()),
        Transition::retry(&id, 1, "r", at(1), at(2)),
        Transition::give_up(&id, Received, None, "e", at(1), &ttl()).unwrap(),
        Transition::give_up(&id, InProgress, Some(1), "e", at(1), &ttl()).unwrap(),
        Transition::cancel(&id, Received, 0, at(1), &ttl()).unwrap(),
        Transition::cancel(&id, InProgress, 1, at(1), &ttl()).unwrap(),
        Transition::replay(&id, 1, at(1), &ttl()),
    ];
    for transition in kinds {
        assert_eq!(check(transition.from(), transition.to()), Ok(()), "{transition:?}");
        assert!(transition.writes().contains(&Write::Status(transition.to())), "{transition:?}");
        assert!(transition.guards().contains(&Guard::Status(transition.from())), "{transition:?}");
    }
}

#[test]
fn every_transition_is_refused_by_an_expired_task() {
    let task = task();
    let late = at(10_000);
    assert!(!Transition::give_up(&task.task_id, Received, None, CANCELLED, late, &ttl()).unwrap().matches(&task));
    assert!(!Transition::start(&task.task_id, 1, "d".into(), (late, at(10_100)), &ttl()).matches(&task));
}

#[test]
fn only_the_tokens_of_the_latest_attempts_are_kept() {
    let mut task = task();
    for attempt in 1..=TOKENS_KEPT + 3 {
        task = Transition::start(&task.task_id, attempt, format!("d{attempt}"), (at(110), at(200)), &ttl())
            .applied_to(&task);
        task = Transition::retry(&task.task_id, attempt, "503", at(111), at(112)).applied_to(&task);
    }
    let kept: Vec<u32> = task.callback_tokens.keys().copied().collect();
    assert_eq!(kept, (4..=TOKENS_KEPT + 3).collect::<Vec<_>>());
    assert_eq!(token_of(&task, 3), None, "an attempt too old to authenticate");
    assert_eq!(token_of(&task, TOKENS_KEPT + 3).map(String::as_str), Some(format!("d{}", TOKENS_KEPT + 3).as_str()));
}

#[test]
fn history_keeps_the_latest_entries_and_counts_the_rest() {
    let mut task = task();
    for attempt in 1..=15 {
        task = Transition::start(&task.task_id, attempt, format!("d{attempt}"), (at(110), at(200)), &ttl())
            .applied_to(&task);
        task =
            Transition::retry(&task.task_id, attempt, format!("attempt {attempt}"), at(111), at(112)).applied_to(&task);
    }
    assert_eq!(task.history.len(), HISTORY_KEPT);
    assert_eq!(task.history_omitted, 1 + 30 - HISTORY_KEPT as u32);
    assert_eq!(task.history.last().and_then(|e| e.reason.as_deref()), Some("attempt 15"));
}

#[test]
fn a_task_is_replayed_at_most_max_replays_times() {
    let mut task = task();
    for replay in 0..=MAX_REPLAYS {
        task =
            Transition::give_up(&task.task_id, Received, None, CANCELLED, at(101), &ttl()).unwrap().applied_to(&task);
        let again = Transition::replay(&task.task_id, 0, at(102), &ttl());
        assert_eq!(again.matches(&task), replay < MAX_REPLAYS, "replay {}", replay + 1);
        task = again.applied_to(&task);
    }
    assert_eq!(task.replays, MAX_REPLAYS + 1, "applied_to does not check guards; the count still counts");
}

#[test]
fn a_heartbeat_moves_the_deadline_and_extends_the_task_ttl_so_a_long_job_is_not_lost() {
    let task = Transition::start(&task().task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task());
    let beaten = Transition::heartbeat(&task.task_id, 1, "d1".into(), (at(3_000), at(3_100)), &ttl()).applied_to(&task);
    assert_eq!((beaten.due_at, beaten.expires_at), (at(3_100), 3_000 + 3_600));
    assert_eq!((beaten.status, beaten.history.len()), (InProgress, task.history.len()), "not an event");
}

#[test]
fn a_redispatch_only_makes_a_waiting_task_due_again() {
    let waiting = task();
    let lease = Transition::redispatch(&waiting.task_id, 0, waiting.due_at, at(500));
    assert!(lease.matches(&waiting));
    let leased = lease.applied_to(&waiting);
    assert_eq!((leased.status, leased.attempts, leased.due_at), (Received, 0, at(500)));
    assert_eq!(leased.history, waiting.history);
    assert!(!lease.matches(&leased), "a second sweeper that read the old due time loses");
    let running = Transition::start(&waiting.task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&waiting);
    assert!(!Transition::redispatch(&waiting.task_id, 0, running.due_at, at(500)).matches(&running));
}

#[test]
fn only_an_expired_active_task_can_expire() {
    let waiting = task();
    let expire = Transition::expire(&waiting.task_id, Received, 0, at(10_000)).unwrap();
    assert!(
        !Transition::expire(&waiting.task_id, Received, 0, at(9_999)).unwrap().matches(&waiting),
        "not expired yet"
    );
    assert!(expire.matches(&waiting));
    let expired = expire.applied_to(&waiting);
    assert_eq!((expired.status, expired.error.as_deref()), (Failed, Some(EXPIRED)));
    assert!(Transition::expire(&waiting.task_id, Done, 0, at(10_000)).is_err());
}

mod completion_webhooks {
    use super::*;
    use crate::completion::delivery::{Delivery, DeliveryState, Outcome as Sent};
    use crate::completion::schedule::DeliverySchedule;

    fn schedule() -> DeliverySchedule {
        DeliverySchedule::parse("5s,200000s").unwrap()
    }

    /// A task with a webhook, done at 120 after one attempt.
    fn done() -> Task {
        let task = task().notifying(Some("https://hooks.example.com/".into()));
        let task = Transition::start(&task.task_id, 1, "d1".into(), (at(110), at(200)), &ttl()).applied_to(&task);
        let ok = Outcome::Succeeded { result: Content::Inline(json!(1)) };
        Transition::finish(&task.task_id, 1, "d1".into(), ok, at(120), &ttl()).applied_to(&task)
    }

    fn attempt(task: &Task, outcome: Sent, now: Timestamp) -> Transition {
        let (number, _) = task.delivery().and_then(|d| d.next_attempt()).expect("a pending delivery");
        let next = task.delivery().unwrap().after(number, &outcome, now, &schedule()).unwrap();
        Transition::deliver(task, next, "webhook", now, &ttl())
    }

    #[test]
    fn a_task_without_a_webhook_or_not_ended_has_no_delivery() {
        assert_eq!(task().delivery(), None);
        let mut waiting = done();
        waiting.status = Received;
        assert_eq!(waiting.delivery(), None);
        let mut plain = done();
        plain.webhook_url = None;
        assert_eq!(plain.delivery(), None);
    }

    #[test]
    fn a_task_that_ended_with_a_webhook_is_pending_its_first_attempt_due_when_it_ended() {
        assert_eq!(done().delivery(), Some(Delivery::begin(at(120))));
        assert_eq!(done().delivery().unwrap().next_attempt(), Some((1, at(120))));
    }

    #[test]
    fn an_attempt_is_recorded_in_the_delivery_and_the_history_and_changes_nothing_else() {
        let task = done();
        let delivered = attempt(&task, Sent::Delivered, at(121)).applied_to(&task);
        assert_eq!(delivered.webhook.as_ref().map(|d| (d.state, d.attempts)), Some((DeliveryState::Delivered, 1)));
        assert_eq!(delivered.history.last().map(|e| (e.status, e.attempt)), Some((Done, 1)));
        assert_eq!((delivered.status, delivered.due_at, delivered.expires_at), (Done, task.due_at, task.expires_at));
    }

    #[test]
    fn a_result_for_an_attempt_already_recorded_changes_nothing() {
        let task = done();
        let first = attempt(&task, Sent::Failed("HTTP 500".into()), at(121));
        let task = first.applied_to(&task);
        assert!(!first.matches(&task), "attempt 1 is recorded once");
        assert!(attempt(&task, Sent::Delivered, at(127)).matches(&task));
    }

    #[test]
    fn a_retry_due_after_the_retention_keeps_the_task_until_a_retention_after_it() {
        let task = attempt(&done(), Sent::Failed("HTTP 500".into()), at(121)).applied_to(&done());
        let task = attempt(&task, Sent::Failed("timeout".into()), at(130)).applied_to(&task);
        assert_eq!(task.delivery().unwrap().next_attempt(), Some((3, at(200_130))));
        assert_eq!(task.expires_at, 200_130 + 86_400);
    }

    #[test]
    fn a_replayed_task_forgets_its_delivery_and_a_late_attempt_of_it_changes_nothing() {
        let mut failed = done();
        failed.status = Failed;
        let late = attempt(&failed, Sent::Failed("HTTP 500".into()), at(121));
        let failed = late.applied_to(&failed);
        let replayed = Transition::replay(&failed.task_id, 1, at(130), &ttl()).applied_to(&failed);
        assert_eq!((replayed.webhook.clone(), replayed.delivery()), (None, None));
        let stale = Transition::deliver(&failed, failed.webhook.clone().unwrap(), "webhook", at(131), &ttl());
        assert!(!stale.matches(&replayed));
    }
}
