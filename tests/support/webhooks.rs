//! Completion webhooks in the end-to-end tests, through the API: a client's webhook secret, and
//! tasks with a `webhook_url` (the receiver is `taskfleet_testkit::receiver`).

use serde_json::{Value, json};

/// `POST /webhook-secret` as `key` against the fleet at `base`: the client's new secret
/// (`whsec_…`), as it is shown once.
pub async fn issue_secret(http: &reqwest::Client, base: &str, key: &str) -> String {
    let answer = http.post(format!("{base}/webhook-secret")).header("x-api-key", key).send().await.unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "POST /webhook-secret: {body}");
    let secret = body["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// `POST /tasks` as `key` with `payload` and a `webhook_url`; the task's id.
pub async fn submit_notifying(http: &reqwest::Client, base: &str, key: &str, payload: Value, url: &str) -> String {
    let task = json!({"payload": payload, "webhook_url": url});
    let answer = http.post(format!("{base}/tasks")).header("x-api-key", key).json(&task).send().await.unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "POST /tasks with a webhook_url: {body}");
    body["task_id"].as_str().expect("a task id").to_owned()
}
