//! Completion webhooks (issue 12): `POST /webhook-secret`, and submissions with a `webhook_url`.
//! The clients' secret records are in a tasks table of the AWS emulator (moto server), through
//! the real SDK (needs `AWS_ENDPOINT_URL`, see `taskfleet_testkit`); each test has its own table.

use std::sync::atomic::{AtomicUsize, Ordering};

use taskfleet_adapters::{DynamoSecretRecords, table};
use taskfleet_core::completion::client_secret::SecretRecord;
use taskfleet_core::signing::SigningSecrets;

use super::features::{batch, item_error, results};
use super::*;

/// The emulator's records, counting the look-ups of a client's record.
struct Counted {
    records: DynamoSecretRecords,
    lookups: AtomicUsize,
}

impl SecretRecords for Counted {
    async fn secret_record(&self, client: &ClientId) -> Result<Option<SecretRecord>, taskfleet_core::StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.records.secret_record(client).await
    }

    async fn put_secret_record(
        &self,
        client: &ClientId,
        record: &SecretRecord,
        seen: Option<u32>,
    ) -> Result<bool, taskfleet_core::StoreError> {
        self.records.put_secret_record(client, record, seen).await
    }
}

type EmulatedApp = App<MemoryStore, FixedKeys, MemoryBlobs, Counted>;

/// An app whose secret records are in a fresh table of the emulator; tasks in memory.
async fn emulated() -> EmulatedApp {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("tasks");
    table::create(&client, &name).await.unwrap_or_else(|e| panic!("cannot create table {name}: {e:?}"));
    let records = Counted { records: DynamoSecretRecords::new(client, name), lookups: AtomicUsize::new(0) };
    App {
        store: MemoryStore::new(),
        keys: FixedKeys::parse(&format!("alpha:{ALPHA_KEY},beta:{BETA_KEY}")).unwrap(),
        blobs: Blobs::new(MemoryBlobs::new(), DEFAULT_INLINE_MAX_BYTES),
        ttl: TtlPolicy::new(TASK_TTL, RETENTION),
        events: Arc::new(RecordedEvents::default()),
        webhooks: webhooks_over(records),
    }
}

fn lookups(app: &EmulatedApp) -> usize {
    app.webhooks.records.lookups.load(Ordering::SeqCst)
}

/// `POST /webhook-secret` as `api_key` (no body: none is read).
fn secret_request(api_key: Option<&str>) -> Request {
    let mut event: Value = serde_json::from_str(POST_TASKS_EVENT).unwrap();
    event["routeKey"] = json!("POST /webhook-secret");
    event["requestContext"]["routeKey"] = json!("POST /webhook-secret");
    event["rawPath"] = json!("/webhook-secret");
    event["requestContext"]["http"]["path"] = json!("/webhook-secret");
    event["headers"]["content-length"] = json!("0");
    if let Some(key) = api_key {
        event["headers"]["x-api-key"] = json!(key);
    }
    into_request(event)
}

/// A secret issued to `api_key`'s client: the 200 answer's body, checked to be uncached.
async fn issued(app: &EmulatedApp, api_key: &str) -> Value {
    let response = handle(app, secret_request(Some(api_key))).await;
    assert_eq!(response.status().as_u16(), 200, "{}", body_json(&response));
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    body_json(&response)
}

fn alpha() -> ClientId {
    ClientId::parse("alpha").unwrap()
}

/// Whether a delivery the notifier signs for alpha at `now` (with the secrets its record gives)
/// verifies with `shown`, the secret alpha was shown.
async fn verifies(app: &EmulatedApp, shown: &str, now: Timestamp) -> bool {
    let record = app.webhooks.records.secret_record(&alpha()).await.unwrap().unwrap();
    let body = br#"{"task_id":"x","status":"DONE"}"#;
    let signed = record.signing_secrets(&master(), &alpha(), now).sign("msg_1", now, body);
    SigningSecrets::parse(shown).unwrap().verify(&signed, body, now).is_ok()
}

async fn task_of(app: &EmulatedApp, response: &Response<Body>) -> Task {
    let task_id = TaskId::parse(body_json(response)["task_id"].as_str().unwrap()).unwrap();
    app.store.get(&task_id).await.unwrap().unwrap()
}

// ---------------------------------------------------------------------------------------------
// POST /webhook-secret

#[tokio::test]
async fn the_first_call_creates_the_clients_secret_and_shows_it_once() {
    let app = emulated().await;
    let body = issued(&app, ALPHA_KEY).await;
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["secret", "version"], "no previous secret to mention: {keys:?}");
    assert_eq!(body["version"], 1);
    let secret = body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && SigningSecrets::parse(secret).is_ok(), "a Standard Webhooks secret");
    // Only a version and a salt are stored: the secret is derived again when it signs.
    let record = app.webhooks.records.secret_record(&alpha()).await.unwrap().unwrap();
    assert_eq!((record.current.number, record.previous), (1, None));
    assert!(verifies(&app, secret, Timestamp::now()).await, "the notifier's signature verifies with it");
}

#[tokio::test]
async fn a_second_call_rotates_and_the_previous_secret_signs_alongside_for_the_grace_period() {
    let app = emulated().await;
    let first = issued(&app, ALPHA_KEY).await;
    let before = Timestamp::now();
    let second = issued(&app, ALPHA_KEY).await;
    let after = Timestamp::now();
    assert_eq!(second["version"], 2);
    let (old, new) = (first["secret"].as_str().unwrap(), second["secret"].as_str().unwrap());
    assert_ne!(old, new);
    let until = Timestamp::parse_rfc3339(second["previous_secret_valid_until"].as_str().unwrap()).unwrap();
    assert!(before.plus(DEFAULT_GRACE) <= until && until <= after.plus(DEFAULT_GRACE), "{until:?}");

    let now = Timestamp::now();
    assert!(verifies(&app, old, now).await && verifies(&app, new, now).await, "both during the grace period");
    let later = until.plus(Duration::from_secs(1));
    assert!(!verifies(&app, old, later).await, "the old one no longer after it");
    assert!(verifies(&app, new, later).await);
}

#[tokio::test]
async fn each_client_has_its_own_secret() {
    let app = emulated().await;
    let alpha = issued(&app, ALPHA_KEY).await;
    let beta = issued(&app, BETA_KEY).await;
    assert_ne!(alpha["secret"], beta["secret"]);
    assert_eq!((alpha["version"].as_u64(), beta["version"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn a_secret_is_issued_only_to_an_authenticated_client() {
    let app = emulated().await;
    assert_error(&handle(&app, secret_request(None)).await, 401, "unauthorized");
    assert_error(&handle(&app, secret_request(Some("not-a-key-0123456789"))).await, 401, "unauthorized");
    assert_eq!(app.webhooks.records.secret_record(&alpha()).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// POST /tasks with a webhook_url

fn with_url(url: &str) -> String {
    json!({"payload": {"n": 1}, "webhook_url": url}).to_string()
}

#[tokio::test]
async fn a_webhook_url_needs_the_clients_secret_first() {
    let app = emulated().await;
    let response = handle(&app, json_post(&with_url("http://127.0.0.1:9000/hook"))).await;
    let message = assert_error(&response, 409, "webhook_secret_missing");
    assert!(message.contains("POST /webhook-secret"), "{message}");
    assert_eq!(stored_count_in(&app).await, 0);

    issued(&app, ALPHA_KEY).await;
    let response = handle(&app, json_post(&with_url("http://LOCALHOST:9000/hook?x=1"))).await;
    assert_eq!(response.status().as_u16(), 202, "{}", body_json(&response));
    let task = task_of(&app, &response).await;
    assert_eq!(task.webhook_url.as_deref(), Some("http://localhost:9000/hook?x=1"), "kept as normalised");
    let view = serde_json::to_value(TaskView::from(&task)).unwrap();
    assert_eq!(view["webhook_url"], "http://localhost:9000/hook?x=1");
}

#[tokio::test]
async fn a_task_without_a_webhook_url_needs_no_secret_and_looks_nothing_up() {
    let app = emulated().await;
    let response = handle(&app, json_post(r#"{"payload":{}}"#)).await;
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(task_of(&app, &response).await.webhook_url, None);
    assert_eq!(lookups(&app), 0);
}

#[tokio::test]
async fn a_webhook_url_the_rules_refuse_is_a_400_with_the_reason() {
    let app = emulated().await;
    issued(&app, ALPHA_KEY).await;
    for (url, reason) in [
        ("http://hooks.example.com/", "`webhook_url` must use https"),
        ("hooks.example.com/done", "`webhook_url` is not an absolute URL"),
        ("https://169.254.169.254/latest/meta-data/", "non-public address (169.254.169.254)"),
        ("https://10.0.0.1/hook", "non-public address (10.0.0.1)"),
        ("https://[::ffff:127.0.0.1]/", "non-public address"),
        ("https://no-such-host.invalid/hook", "names a host that does not resolve"),
    ] {
        let message = assert_error(&handle(&app, json_post(&with_url(url))).await, 400, "invalid_webhook_url");
        assert!(message.contains(reason), "{url}: {message}");
    }
    let long = format!("https://hooks.example.com/{}", "a".repeat(1_024));
    assert_error(&handle(&app, json_post(&with_url(&long))).await, 400, "invalid_webhook_url");
    let not_a_string = r#"{"payload":{},"webhook_url":7}"#;
    assert_error(&handle(&app, json_post(not_a_string)).await, 400, "invalid_request");
    assert_eq!(stored_count_in(&app).await, 0);
}

#[test]
fn a_resolver_that_is_down_answers_503_and_a_name_that_does_not_exist_400() {
    use taskfleet_adapters::completion::SubmitCheckError;
    let down = crate::webhooks::refusal(SubmitCheckError::Unresolved("Temporary failure in name resolution".into()));
    assert_eq!((down.status().as_u16(), down.code()), (503, "webhook_host_unresolved"));
    let unknown = crate::webhooks::refusal(SubmitCheckError::UnknownHost);
    assert_eq!((unknown.status().as_u16(), unknown.code()), (400, "invalid_webhook_url"));
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_the_webhook_url() {
    let app = emulated().await;
    issued(&app, ALPHA_KEY).await;
    let first = handle(&app, keyed_post(ALPHA_KEY, "k-1", &with_url("http://127.0.0.1:9000/a"))).await;
    assert_eq!(first.status().as_u16(), 202);
    let again = handle(&app, keyed_post(ALPHA_KEY, "k-1", &with_url("http://127.0.0.1:9000/a"))).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(body_json(&again)["task_id"], body_json(&first)["task_id"]);
    let other = handle(&app, keyed_post(ALPHA_KEY, "k-1", &with_url("http://127.0.0.1:9000/b"))).await;
    assert_error(&other, 409, "idempotency_conflict");
    let none = handle(&app, keyed_post(ALPHA_KEY, "k-1", r#"{"payload":{"n":1}}"#)).await;
    assert_error(&none, 409, "idempotency_conflict");
}

// ---------------------------------------------------------------------------------------------
// POST /tasks/batch with webhook_urls

#[tokio::test]
async fn in_a_batch_each_item_is_checked_on_its_own_and_the_secret_is_looked_up_once() {
    let app = emulated().await;
    let body = json!({"tasks": [
        {"payload": {"n": 0}, "webhook_url": "http://127.0.0.1:9000/a"},
        {"payload": {"n": 1}, "webhook_url": "http://hooks.example.com/"},
        {"payload": {"n": 2}},
        {"payload": {"n": 3}, "webhook_url": "http://localhost:9000/b"},
    ]})
    .to_string();
    let answered = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    let codes: Vec<&str> =
        answered.iter().map(|r| if r.get("error").is_some() { item_error(r) } else { "stored" }).collect();
    assert_eq!(codes, ["webhook_secret_missing", "invalid_webhook_url", "stored", "webhook_secret_missing"]);
    assert_eq!(lookups(&app), 1, "one look-up for the whole batch");

    issued(&app, ALPHA_KEY).await;
    let before = lookups(&app);
    let answered = results(&handle(&app, batch(Some(ALPHA_KEY), &[], &body)).await);
    let stored: Vec<bool> = answered.iter().map(|r| r.get("task_id").is_some()).collect();
    assert_eq!(stored, [true, false, true, true]);
    assert_eq!(lookups(&app) - before, 1);
    let task_id = TaskId::parse(answered[3]["task_id"].as_str().unwrap()).unwrap();
    let task = app.store.get(&task_id).await.unwrap().unwrap();
    assert_eq!(task.webhook_url.as_deref(), Some("http://localhost:9000/b"));
}

#[tokio::test]
async fn a_batch_without_webhook_urls_looks_nothing_up() {
    let app = emulated().await;
    let answered = results(&handle(&app, batch(Some(ALPHA_KEY), &[], r#"{"tasks":[{"payload":{}}]}"#)).await);
    assert!(answered[0]["task_id"].is_string());
    assert_eq!(lookups(&app), 0);
}

/// How many tasks the emulated app's store holds for alpha.
async fn stored_count_in(app: &EmulatedApp) -> usize {
    app.store.list(&alpha(), None, 1_000, None, Timestamp::now()).await.unwrap().tasks.len()
}
