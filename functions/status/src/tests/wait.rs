//! `GET /tasks/{task_id}?wait=N`: answers as soon as the task is DONE or FAILED, or after N
//! seconds as it is; N is 0 to 20 whole seconds. Time is tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn get_waiting(task_id: &str, wait: &str) -> Request {
    let mut event: Value = serde_json::from_str(GET_TASK_EVENT).unwrap();
    let path = format!("/tasks/{task_id}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"task_id": task_id});
    event["headers"]["x-api-key"] = json!(ALPHA_KEY);
    event["rawQueryString"] = json!(format!("wait={wait}"));
    event["queryStringParameters"] = json!({ "wait": wait });
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    Request::from(lambda)
}

/// A RECEIVED task of alpha's, stored.
async fn waiting_task(app: &TestApp) -> Task {
    let task = task_of("alpha", FAR_EXPIRY);
    stored(app, &task).await;
    task
}

/// Attempt 1 of `task` starts (the task lives on far beyond the test).
async fn started(app: &TestApp, task: &Task) {
    let far = TtlPolicy::new(100 * 365 * 86_400, 86_400);
    let start = Transition::start(&task.task_id, 1, token::digest("token-1"), (at(0), at(900_000)), &far);
    apply(app, start).await;
}

/// The task's attempt 1 starts, and after `after` its callback reports success.
async fn finishes_after(app: &TestApp, task: &Task, after: Duration) {
    started(app, task).await;
    tokio::time::sleep(after).await;
    let finish = Transition::finish(
        &task.task_id,
        1,
        token::digest("token-1"),
        Outcome::Succeeded { result: Content::Inline(json!({"ok": true})) },
        Timestamp::now(),
        &TtlPolicy::new(3_600, 86_400),
    );
    apply(app, expiring_at(finish, FAR_EXPIRY)).await;
}

#[tokio::test(start_paused = true)]
async fn a_waiting_read_answers_within_half_a_second_of_the_end() {
    let app = app();
    let task = waiting_task(&app).await;
    let started = Instant::now();
    let (response, ()) = tokio::join!(
        handle(&app, get_waiting(task.task_id.as_str(), "20")),
        finishes_after(&app, &task, Duration::from_millis(3_000))
    );
    let took = started.elapsed();
    assert_eq!(response.status().as_u16(), 200);
    let body = body_json(&response);
    assert_eq!((body["status"].as_str(), &body["result"]), (Some("DONE"), &json!({"ok": true})));
    assert!(took >= Duration::from_secs(3) && took <= Duration::from_millis(3_500), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_read_of_a_task_still_running_answers_it_as_it_is_after_the_wait() {
    let app = app();
    let task = waiting_task(&app).await;
    started(&app, &task).await;
    for (wait, seconds) in [("2", 2), ("20", 20)] {
        let started = Instant::now();
        let reads = app.store.reads();
        let response = handle(&app, get_waiting(task.task_id.as_str(), wait)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(seconds), "not cut short by the 8 s request deadline");
        assert_eq!(response.status().as_u16(), 200);
        let body = body_json(&response);
        assert_eq!(body, body_json(&handle(&app, get(task.task_id.as_str(), Some(ALPHA_KEY))).await));
        assert_eq!(body["status"], "IN_PROGRESS");
        let reads = app.store.reads() - reads;
        assert!(reads <= 2 + 2 * seconds as usize + 3, "{reads} reads in {seconds} s");
    }
}

#[tokio::test(start_paused = true)]
async fn a_finished_missing_or_unwaited_task_answers_at_once() {
    let app = app();
    let task = waiting_task(&app).await;
    // No wait, or wait=0: one read, at once.
    for request in [get(task.task_id.as_str(), Some(ALPHA_KEY)), get_waiting(task.task_id.as_str(), "0")] {
        let started = Instant::now();
        let reads = app.store.reads();
        let response = handle(&app, request).await;
        assert_eq!((response.status().as_u16(), started.elapsed()), (200, Duration::ZERO));
        assert_eq!(app.store.reads() - reads, 1);
    }
    // Not this client's, or no such task: 404 at once.
    let started = Instant::now();
    let unknown = handle(&app, get_waiting(TaskId::generate().as_str(), "20")).await;
    assert_error(&unknown, 404, "not_found");
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Finished already: at once.
    finishes_after(&app, &task, Duration::ZERO).await;
    let started = Instant::now();
    let done = handle(&app, get_waiting(task.task_id.as_str(), "20")).await;
    assert_eq!((body_json(&done)["status"].as_str(), started.elapsed()), (Some("DONE"), Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_is_not_0_to_20_whole_seconds_is_refused_with_400_before_any_read() {
    let app = app();
    let task = waiting_task(&app).await;
    for bad in ["21", "-1", "1.5", "ten", "", "+3", "100000000000000000000"] {
        let reads = app.store.reads();
        let response = handle(&app, get_waiting(task.task_id.as_str(), bad)).await;
        let body = assert_error(&response, 400, "invalid_request");
        assert!(body["error"]["message"].as_str().unwrap().contains("wait"), "{bad:?}: {body}");
        assert_eq!(app.store.reads(), reads, "{bad:?}");
    }
}
