//! Strangers at the door, end to end: clients probing each other's tasks, forged and replayed
//! callbacks, and hostile input. Every probe gets a clear 4xx JSON error and changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use taskfleet_adapters::SecretsManagerStore;
use taskfleet_core::secrets::RefreshingSecrets;
use taskfleet_core::signing::SigningSecrets;
use taskfleet_core::{Timestamp, signing};
use taskfleet_e2e::{KEY_ALPHA, KEY_BETA, Scenario, TestFleet};

const WITHIN: Duration = Duration::from_secs(30);

async fn call(fleet: &TestFleet, method: Method, path: &str, key: &str) -> (u16, Value) {
    let answer = fleet.http.request(method, fleet.url(path)).header("x-api-key", key).send().await.unwrap();
    let code = answer.status().as_u16();
    (code, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_task_is_exactly_as_missing_as_a_task_that_does_not_exist() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_secs(60))).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({"secret": "alpha's"})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let nobody = "6f9619ff-8b86-4011-b42d-00c04fc964ff";
    for (method, path) in [(Method::GET, "/tasks/{}"), (Method::DELETE, "/tasks/{}"), (Method::POST, "/tasks/{}/retry")]
    {
        let theirs = call(&fleet, method.clone(), &path.replace("{}", &id), KEY_BETA).await;
        let missing = call(&fleet, method.clone(), &path.replace("{}", nobody), KEY_BETA).await;
        assert_eq!(theirs.0, 404, "{method} {path}: {theirs:?}");
        assert_eq!(theirs, missing, "{method} {path}");
    }
    let (code, listing) = call(&fleet, Method::GET, "/tasks", KEY_BETA).await;
    assert_eq!(code, 200);
    assert_eq!(listing["tasks"], json!([]), "beta lists none of alpha's tasks");
    let (_, own) = call(&fleet, Method::GET, "/tasks", KEY_ALPHA).await;
    assert_eq!(own["tasks"][0]["task_id"], id.as_str());
    let (_, view) = fleet.status(KEY_ALPHA, &id).await;
    assert!(matches!(view["status"].as_str(), Some("RECEIVED" | "IN_PROGRESS")), "alpha's task is untouched: {view}");
    assert!(view.get("error").is_none(), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_pages_newest_first_with_an_opaque_cursor_and_filters_by_status() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    // Beta's one task is older than all of alpha's: any position in alpha's listing is before it.
    let (_, body) = fleet.submit(KEY_BETA, json!({"n": "beta"})).await;
    let beta_id = body["task_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, body) = fleet.submit(KEY_ALPHA, json!({"n": n})).await;
        ids.push(body["task_id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in &ids {
        fleet.wait_finished(KEY_ALPHA, id, WITHIN).await;
    }
    ids.reverse();
    let (_, first) = call(&fleet, Method::GET, "/tasks?limit=3", KEY_ALPHA).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = call(&fleet, Method::GET, &format!("/tasks?limit=3&cursor={cursor}"), KEY_ALPHA).await;
    let listed: Vec<&str> = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["tasks"].as_array().unwrap())
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(second["next_cursor"], Value::Null);
    let (_, done) = call(&fleet, Method::GET, "/tasks?status=DONE&limit=100", KEY_ALPHA).await;
    assert_eq!(done["tasks"].as_array().unwrap().len(), 5);
    let (_, failed) = call(&fleet, Method::GET, "/tasks?status=FAILED", KEY_ALPHA).await;
    assert_eq!(failed["tasks"], json!([]));
    let (code, theirs) = call(&fleet, Method::GET, &format!("/tasks?cursor={cursor}"), KEY_BETA).await;
    assert_eq!(code, 200, "{theirs}");
    let listed: Vec<&str> =
        theirs["tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [beta_id.as_str()], "a cursor is only a position: beta still sees only beta's tasks");
    assert!(ids.iter().all(|id| !theirs.to_string().contains(id.as_str())), "none of alpha's tasks: {theirs}");
    assert_eq!(theirs["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_callbacks_are_refused_and_change_nothing() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_secs(60))).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let start = std::time::Instant::now();
    while !fleet.stats.callback_urls().contains_key(&id) {
        assert!(start.elapsed() < WITHIN, "the job never reached the service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let real = fleet.callback_url(&id);
    let token = real.split("token=").nth(1).unwrap().to_owned();
    let base = fleet.url(&format!("/callbacks/{id}"));
    // The real token with its last character changed (to one it does not already end with).
    let forged_token = format!("{}{}", &token[..42], if token.ends_with('A') { 'B' } else { 'A' });
    let ok = json!({"status": "succeeded", "result": "forged"});
    for url in [
        base.clone(),
        format!("{base}?attempt=1"),
        format!("{base}?token={token}"),
        format!("{base}?attempt=1&token={forged_token}"),
        format!("{base}?attempt=2&token={token}"),
        format!("{base}?attempt=0&token={token}"),
        format!("{base}?attempt=x&token={token}"),
        format!("{base}?attempt=1&token=short"),
        format!("{base}/heartbeat?attempt=1&token={forged_token}"),
    ] {
        let answer = fleet.http.post(&url).json(&ok).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{url}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_callback_token", "{url}");
    }
    // A task that does not exist answers exactly like a wrong token: status, type and bytes.
    let exactly = |url: String| {
        let request = fleet.http.post(url).json(&ok);
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let content_type = answer.headers().get("content-type").cloned();
            (status, content_type, answer.bytes().await.unwrap())
        }
    };
    let nobody = fleet.url("/callbacks/6f9619ff-8b86-4011-b42d-00c04fc964ff");
    for suffix in ["", "/heartbeat"] {
        let wrong_token = exactly(format!("{base}{suffix}?attempt=1&token={forged_token}")).await;
        let unknown_task = exactly(format!("{nobody}{suffix}?attempt=1&token={forged_token}")).await;
        assert_eq!(wrong_token.0, 401, "{suffix}");
        assert_eq!(unknown_task, wrong_token, "{suffix}");
    }
    let (_, view) = fleet.status(KEY_ALPHA, &id).await;
    assert_eq!((view["status"].as_str(), view.get("result")), (Some("IN_PROGRESS"), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_signing_secret_callbacks_need_a_fresh_valid_signature_over_their_body() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let scenario = Scenario {
        delay: Duration::from_secs(60),
        signing: Some(SigningSecrets::parse(secret).unwrap()),
        ..Scenario::default()
    };
    let fleet = TestFleet::start(scenario).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let start = std::time::Instant::now();
    while !fleet.stats.callback_urls().contains_key(&id) {
        assert!(start.elapsed() < WITHIN, "the signed job never reached the service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = fleet.callback_url(&id);
    let body = json!({"status": "succeeded", "result": {"ok": true}}).to_string();
    let send = |signed: Option<signing::Signed>, body: String| {
        let mut request = fleet.http.post(&url).header("content-type", "application/json").body(body);
        if let Some(signed) = signed {
            request = request
                .header(signing::ID, signed.id)
                .header(signing::TIMESTAMP, signed.timestamp)
                .header(signing::SIGNATURE, signed.signature);
        }
        request.send()
    };
    let right = SigningSecrets::parse(secret).unwrap();
    let wrong = SigningSecrets::parse("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").unwrap();
    let now = Timestamp::now();
    let stale = Timestamp::from_millis(now.as_millis() - 301_000);
    for (signed, sent) in [
        (None, body.clone()),
        (Some(wrong.sign("m1", now, body.as_bytes())), body.clone()),
        (Some(right.sign("m1", stale, body.as_bytes())), body.clone()),
        (Some(right.sign("m1", now, body.as_bytes())), body.replace("true", "false")),
    ] {
        let answer = send(signed, sent).await.unwrap();
        assert_eq!(answer.status().as_u16(), 401);
        assert_eq!(answer.json::<Value>().await.unwrap()["error"]["code"], "invalid_signature");
    }
    let (_, view) = fleet.status(KEY_ALPHA, &id).await;
    assert_eq!(view["status"], "IN_PROGRESS");
    let signed = right.sign("m1", now, body.as_bytes());
    assert_eq!(send(Some(signed.clone()), body.clone()).await.unwrap().status().as_u16(), 200);
    assert_eq!(send(Some(signed), body).await.unwrap().status().as_u16(), 200, "a replay changes nothing");
    let (_, view) = fleet.status(KEY_ALPHA, &id).await;
    assert_eq!((view["status"].as_str(), &view["result"]), (Some("DONE"), &json!({"ok": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotated_in_secrets_manager_is_in_force_within_the_refresh_interval_without_a_restart() {
    const V1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const V2: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    // A minute in AWS; here short enough for a test.
    const REFRESH: Duration = Duration::from_millis(500);
    let sdk = taskfleet_testkit::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("taskfleet/e2e/webhook-signing-secrets");
    let created = secrets.create_secret().name(&name).secret_string(V1).send().await.expect("CreateSecret");
    let arn = created.arn().expect("ARN").to_owned();
    let source = RefreshingSecrets::load(SecretsManagerStore::new(secrets.clone(), &arn), REFRESH).await.expect("load");
    let scenario =
        Scenario { delay: Duration::from_secs(60), secret_source: Some(Arc::new(source)), ..Scenario::default() };
    let fleet = TestFleet::start(scenario).await;
    let (_, body) = fleet.submit(KEY_ALPHA, json!({})).await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    while !fleet.stats.callback_urls().contains_key(&id) {
        assert!(start.elapsed() < WITHIN, "the job never reached the service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = fleet.callback_url(&id);
    let (path, query) = url.split_once('?').expect("a query");
    let heartbeat_url = format!("{path}/heartbeat?{query}");
    // A heartbeat signed with `spec`: its status.
    let heartbeat = |spec: &'static str| {
        let signed = SigningSecrets::parse(spec).unwrap().sign("hb", Timestamp::now(), b"");
        let request = fleet
            .http
            .post(&heartbeat_url)
            .header(signing::ID, signed.id)
            .header(signing::TIMESTAMP, signed.timestamp)
            .header(signing::SIGNATURE, signed.signature);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Waits, a few refresh intervals at most, until a heartbeat signed with `spec` answers `code`.
    let answers = |spec: &'static str, code: u16| async move {
        let start = Instant::now();
        loop {
            let got = heartbeat(spec).await;
            if got == code {
                return;
            }
            assert!(start.elapsed() < 10 * REFRESH, "a heartbeat signed with {spec} still answers {got}, not {code}");
            tokio::time::sleep(REFRESH / 5).await;
        }
    };
    assert_eq!((heartbeat(V1).await, heartbeat(V2).await), (200, 401));

    let put = |value: String| secrets.put_secret_value().secret_id(&arn).secret_string(value).send();
    put(format!("{V2},{V1}")).await.expect("PutSecretValue");
    answers(V2, 200).await;
    assert_eq!(heartbeat(V1).await, 200, "during the rotation the old secret still verifies");

    put(V2.to_owned()).await.expect("PutSecretValue");
    answers(V1, 401).await;
    assert_eq!(heartbeat(V2).await, 200);

    let result = json!({"status": "succeeded", "result": {"ok": true}}).to_string();
    let signed = SigningSecrets::parse(V2).unwrap().sign("cb", Timestamp::now(), result.as_bytes());
    let answer = fleet
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header(signing::ID, signed.id)
        .header(signing::TIMESTAMP, signed.timestamp)
        .header(signing::SIGNATURE, signed.signature)
        .body(result)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let (_, view) = fleet.status(KEY_ALPHA, &id).await;
    assert_eq!(view["status"], "DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_precise_4xx_json_error() {
    let fleet = TestFleet::start(Scenario::calm(Duration::from_millis(10))).await;
    // One byte over the documented limits: a payload of 4096 KiB of compact JSON, a body of 4224 KiB.
    let big = format!(r#"{{"payload":{{"s":"{}"}}}}"#, "a".repeat(4096 * 1024 + 1 - r#"{"s":""}"#.len()));
    let huge = "x".repeat(4224 * 1024 + 1);
    let cases: Vec<(Method, String, &str, String, u16, &str)> = vec![
        (Method::POST, "/tasks".into(), "application/json", "{".into(), 400, "malformed_json"),
        (Method::POST, "/tasks".into(), "application/json", "".into(), 400, "malformed_json"),
        (Method::POST, "/tasks".into(), "application/json", "[]".into(), 400, "invalid_request"),
        (Method::POST, "/tasks".into(), "application/json", r#"{"payload":"x"}"#.into(), 400, "invalid_request"),
        (
            Method::POST,
            "/tasks".into(),
            "application/json",
            r#"{"payload":{},"extra":1}"#.into(),
            400,
            "invalid_request",
        ),
        (Method::POST, "/tasks".into(), "application/json", r#"{"payload":{"a":1e999}}"#.into(), 400, "malformed_json"),
        (Method::POST, "/tasks".into(), "application/json", big, 413, "too_large"),
        (Method::POST, "/tasks".into(), "application/json", huge, 413, "too_large"),
        (Method::POST, "/tasks".into(), "text/plain", r#"{"payload":{}}"#.into(), 415, "unsupported_media_type"),
        (
            Method::POST,
            "/tasks".into(),
            "application/x-www-form-urlencoded",
            "payload=1".into(),
            415,
            "unsupported_media_type",
        ),
        (Method::GET, "/tasks/not-a-uuid".into(), "", "".into(), 400, "invalid_task_id"),
        (Method::GET, format!("/tasks/{}", "9".repeat(5000)), "", "".into(), 400, "invalid_task_id"),
        (Method::GET, "/tasks/..%2F..%2Fetc%2Fpasswd".into(), "", "".into(), 400, "invalid_task_id"),
        (Method::GET, "/tasks?limit=0".into(), "", "".into(), 400, "invalid_request"),
        (Method::GET, "/tasks?limit=1000000".into(), "", "".into(), 400, "invalid_request"),
        (Method::GET, "/tasks?status=PAUSED".into(), "", "".into(), 400, "invalid_request"),
        (Method::GET, "/tasks?cursor=%00%00".into(), "", "".into(), 400, "invalid_request"),
        (Method::GET, format!("/tasks?cursor={}", "A".repeat(4000)), "", "".into(), 400, "invalid_request"),
    ];
    for (method, path, content_type, body, code, error) in cases {
        let mut request = fleet.http.request(method.clone(), fleet.url(&path)).header("x-api-key", KEY_ALPHA);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let answer = request.body(body).send().await.unwrap();
        let status = answer.status().as_u16();
        let json: Value = answer.json().await.unwrap_or(Value::Null);
        let label = format!("{method} {}", &path[..path.len().min(60)]);
        assert_eq!(status, code, "{label}: {json}");
        assert_eq!(json["error"]["code"], error, "{label}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{label}");
    }
    let (code, listing) = call(&fleet, Method::GET, "/tasks", KEY_ALPHA).await;
    assert_eq!((code, listing["tasks"].as_array().map(Vec::len)), (200, Some(0)), "no hostile request created a task");
}
