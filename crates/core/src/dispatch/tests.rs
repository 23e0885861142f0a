use super::*;
use TaskStatus::*;

const NOW: Timestamp = Timestamp::from_millis(1_000_000);

fn snap(status: TaskStatus, attempts: u32) -> Option<Snapshot> {
    Some(Snapshot { status, attempts, due_at: NOW, client_id: "acme".into(), delivery: None })
}

fn step_of(old: Option<Snapshot>, new: Option<Snapshot>) -> Option<(u32, Step)> {
    dispatch_for(&TaskId::generate(), old, new).map(|(message, _)| (message.attempt, message.step))
}

#[test]
fn a_new_received_task_starts_attempt_one_now() {
    let id = TaskId::generate();
    let (message, group) = dispatch_for(&id, None, snap(Received, 0)).unwrap();
    assert_eq!(
        message,
        DispatchMessage { task_id: id.to_string(), attempt: 1, step: Step::Start, due_at: NOW.as_millis() }
    );
    assert_eq!(group, "acme", "the message group is the client");
}

#[test]
fn a_retry_starts_the_next_attempt_when_its_backoff_ends() {
    let later = Timestamp::from_millis(NOW.as_millis() + 30_000);
    let new = Some(Snapshot { status: Received, attempts: 2, due_at: later, client_id: "acme".into(), delivery: None });
    let (message, _) = dispatch_for(&TaskId::generate(), snap(InProgress, 2), new).unwrap();
    assert_eq!((message.attempt, message.step, message.due_at), (3, Step::Start, later.as_millis()));
}

#[test]
fn a_started_attempt_gets_a_deadline_timer_for_that_attempt() {
    assert_eq!(step_of(snap(Received, 0), snap(InProgress, 1)), Some((1, Step::Deadline)));
}

#[test]
fn a_heartbeat_that_moves_the_deadline_sets_a_new_timer() {
    let moved = Some(Snapshot {
        status: InProgress,
        attempts: 1,
        due_at: NOW.plus_seconds(60),
        client_id: "acme".into(),
        delivery: None,
    });
    assert_eq!(step_of(snap(InProgress, 1), moved), Some((1, Step::Deadline)));
}

#[test]
fn a_no_op_write_schedules_nothing() {
    assert_eq!(step_of(snap(Received, 0), snap(Received, 0)), None);
    assert_eq!(step_of(snap(InProgress, 1), snap(InProgress, 1)), None);
}

#[test]
fn finished_tasks_without_a_webhook_and_removals_schedule_nothing() {
    assert_eq!(step_of(snap(InProgress, 1), snap(Done, 1)), None);
    assert_eq!(step_of(snap(InProgress, 1), snap(Failed, 1)), None);
    assert_eq!(step_of(snap(Received, 0), None), None);
}

fn with_delivery(status: TaskStatus, delivery: Option<(u32, Timestamp)>) -> Option<Snapshot> {
    snap(status, 1).map(|s| Snapshot { delivery, ..s })
}

#[test]
fn a_task_that_ends_with_a_webhook_delivers_it_at_once() {
    let id = TaskId::generate();
    let (message, group) =
        dispatch_for(&id, snap(InProgress, 1), with_delivery(Done, Some((1, NOW)))).expect("a delivery timer");
    assert_eq!(
        message,
        DispatchMessage { task_id: id.to_string(), attempt: 1, step: Step::Deliver, due_at: NOW.as_millis() }
    );
    assert_eq!(group, "acme");
    assert!(message.step.is_delivery() && !Step::Start.is_delivery() && !Step::Deadline.is_delivery());
    assert_eq!(step_of(snap(InProgress, 1), with_delivery(Failed, Some((1, NOW)))), Some((1, Step::Deliver)));
}

#[test]
fn a_failed_delivery_attempt_sets_the_next_when_it_is_due() {
    let later = NOW.plus_seconds(300);
    let (message, _) =
        dispatch_for(&TaskId::generate(), with_delivery(Done, Some((1, NOW))), with_delivery(Done, Some((2, later))))
            .unwrap();
    assert_eq!((message.attempt, message.step, message.due_at), (2, Step::Deliver, later.as_millis()));
}

#[test]
fn a_delivered_or_given_up_webhook_and_other_writes_to_an_ended_task_schedule_nothing() {
    assert_eq!(step_of(with_delivery(Done, Some((2, NOW))), with_delivery(Done, None)), None);
    let trimmed = with_delivery(Done, Some((2, NOW))).map(|s| Snapshot { due_at: NOW.plus_seconds(1), ..s });
    assert_eq!(step_of(with_delivery(Done, Some((2, NOW))), trimmed), None, "the delivery did not change");
}

#[test]
fn a_replayed_task_starts_the_attempt_after_its_last() {
    assert_eq!(step_of(snap(Failed, 4), snap(Received, 4)), Some((5, Step::Start)));
}

fn message_due(due_at: i64) -> DispatchMessage {
    DispatchMessage { task_id: TaskId::generate().to_string(), attempt: 1, step: Step::Start, due_at }
}

#[test]
fn the_delay_is_whole_seconds_rounded_down_so_a_message_is_never_late_by_rounding() {
    let at = |millis| Dispatch::new(message_due(NOW.as_millis() + millis), "c", NOW).delay_seconds;
    assert_eq!(at(0), 0);
    assert_eq!(at(999), 0);
    assert_eq!(at(1_000), 1);
    assert_eq!(at(5_999), 5);
    assert_eq!(at(-5_000), 0, "a message already due goes at once");
}

#[test]
fn a_delay_longer_than_the_queue_takes_is_capped_and_the_message_sent_on_later() {
    let far = Dispatch::new(message_due(NOW.as_millis() + 3_600_000), "c", NOW);
    assert_eq!(far.delay_seconds, MAX_DELAY_SECONDS);
}

#[test]
fn the_message_is_plain_json_and_parses_back() {
    let id = TaskId::generate();
    let message = DispatchMessage { task_id: id.to_string(), attempt: 2, step: Step::Deadline, due_at: 1_234 };
    let json = serde_json::to_string(&message).unwrap();
    assert_eq!(json, format!(r#"{{"task_id":"{id}","attempt":2,"step":"deadline","due_at":1234}}"#));
    let timer = DispatchMessage::parse(&json).unwrap();
    assert_eq!(timer, Timer { task_id: id, attempt: 2, step: Step::Deadline, due_at: Timestamp::from_millis(1_234) });
    assert_eq!(timer.message(Timestamp::from_millis(1_234)), message);
}

#[test]
fn a_bad_message_is_refused() {
    let id = TaskId::generate();
    assert!(DispatchMessage::parse("").is_err());
    assert!(DispatchMessage::parse(r#"{"task_id":"x","attempt":1,"step":"start","due_at":0}"#).is_err());
    assert!(DispatchMessage::parse(&format!(r#"{{"task_id":"{id}","attempt":0,"step":"start","due_at":0}}"#)).is_err());
    assert!(DispatchMessage::parse(&format!(r#"{{"task_id":"{id}","attempt":1,"step":"later","due_at":0}}"#)).is_err());
    assert!(DispatchMessage::parse(&format!(r#"{{"task_id":"{id}","attempt":1}}"#)).is_err());
}

#[test]
fn a_timer_acts_when_due_waits_out_a_second_early_and_sends_on_anything_earlier() {
    let timer = |millis: i64| {
        DispatchMessage::parse(&serde_json::to_string(&message_due(NOW.as_millis() + millis)).unwrap()).unwrap()
    };
    assert_eq!(timer(0).when(NOW), When::Now);
    assert_eq!(timer(-30_000).when(NOW), When::Now, "late timers act at once");
    assert_eq!(timer(400).when(NOW), When::After(Duration::from_millis(400)));
    assert_eq!(timer(1_000).when(NOW), When::After(EARLY_WAIT));
    assert_eq!(timer(1_001).when(NOW), When::SendOn);
    assert_eq!(timer(3_600_000).when(NOW), When::SendOn, "a wait longer than the queue's delay is sent on");
}
