//! The signing secrets in Secrets Manager, through the real SDK against the emulator: a rotation
//! (PutSecretValue) reaches the caller's signatures and the webhook's verification within the
//! refresh interval, without a restart or a deploy; a secret that cannot be read fails the cold
//! start, and one that cannot be read later keeps the secrets read last.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use taskfleet_adapters::{ConfigError, HttpExternalService, SecretsManagerStore, config};
use taskfleet_core::Timestamp;
use taskfleet_core::ports::{ExternalService, Job};
use taskfleet_core::secrets::{LoadError, ReadError, RefreshingSecrets, SecretSource, SecretStore};
use taskfleet_core::signing::{self, SignatureError, Signed, SigningSecrets};

const V1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const V2: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";

/// How often the sources under test read the secret again (a minute in AWS).
const REFRESH: Duration = Duration::from_millis(300);

async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&taskfleet_testkit::sdk_config().await)
}

/// A new secret holding `value`; its ARN.
async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let name = taskfleet_testkit::unique_name("taskfleet/test/webhook-signing-secrets");
    let created = client.create_secret().name(&name).secret_string(value).send().await.expect("CreateSecret");
    created.arn().expect("an ARN").to_owned()
}

async fn put(client: &aws_sdk_secretsmanager::Client, arn: &str, value: &str) {
    client.put_secret_value().secret_id(arn).secret_string(value).send().await.expect("PutSecretValue");
}

fn parse(spec: &str) -> SigningSecrets {
    SigningSecrets::parse(spec).unwrap()
}

/// A callback signed with `spec`, as the external service would send it.
fn callback(spec: &str, body: &[u8]) -> Signed {
    parse(spec).sign("cb_1", Timestamp::now(), body)
}

/// Waits a refresh interval and a little more, then asks once so the source reads again.
async fn after_refresh(source: &dyn SecretSource) {
    tokio::time::sleep(REFRESH + Duration::from_millis(50)).await;
    source.current().await;
}

#[tokio::test]
async fn a_rotation_reaches_verification_within_the_refresh_interval() {
    let client = client().await;
    let arn = secret(&client, V1).await;
    let store = SecretsManagerStore::new(client.clone(), &arn);
    let source = RefreshingSecrets::load(store, REFRESH).await.expect("load");
    let body = br#"{"status":"succeeded"}"#;
    let verify =
        |secrets: Arc<SigningSecrets>, spec: &str| secrets.verify(&callback(spec, body), body, Timestamp::now());

    assert_eq!(verify(source.current().await, V1), Ok(()));
    assert_eq!(verify(source.current().await, V2), Err(SignatureError::Mismatch));

    // Rotation begins: the new secret first, the old one still accepted.
    put(&client, &arn, &format!("{V2},{V1}")).await;
    after_refresh(&source).await;
    assert_eq!(verify(source.current().await, V2), Ok(()));
    assert_eq!(verify(source.current().await, V1), Ok(()));

    // Rotation ends: the old secret is refused.
    put(&client, &arn, V2).await;
    after_refresh(&source).await;
    assert_eq!(verify(source.current().await, V2), Ok(()));
    assert_eq!(verify(source.current().await, V1), Err(SignatureError::Mismatch));
}

/// A loopback external service that accepts every job and keeps its signature headers and body.
async fn recording_service() -> (String, Arc<Mutex<Vec<(Signed, Bytes)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let router = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let kept = kept.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let signed = Signed {
                id: header(signing::ID),
                timestamp: header(signing::TIMESTAMP),
                signature: header(signing::SIGNATURE),
            };
            kept.lock().unwrap().push((signed, body));
            StatusCode::ACCEPTED
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}/jobs"), seen)
}

#[tokio::test]
async fn after_a_rotation_the_caller_signs_jobs_with_the_new_secret() {
    let client = client().await;
    let arn = secret(&client, V1).await;
    let source: Arc<dyn SecretSource> =
        Arc::new(RefreshingSecrets::load(SecretsManagerStore::new(client.clone(), &arn), REFRESH).await.unwrap());
    let (url, seen) = recording_service().await;
    let service = HttpExternalService::new(url, Duration::from_secs(5), Some(source.clone())).unwrap();
    let payload = json!({"n": 1});
    let job = Job {
        task_id: "6f9619ff-8b86-4011-b42d-00c04fc964ff",
        payload: &payload,
        callback_url: "https://fleet.example/callbacks/6f9619ff-8b86-4011-b42d-00c04fc964ff?attempt=1&token=t",
        attempt: 1,
        traceparent: None,
    };
    // Which of the two secrets the last job's signature verifies with.
    let last_signed_with = || {
        let (signed, body) = seen.lock().unwrap().last().cloned().expect("a job arrived");
        let now = Timestamp::now();
        [V1, V2].map(|spec| parse(spec).verify(&signed, &body, now).is_ok())
    };

    service.submit(&job).await.unwrap();
    assert_eq!(last_signed_with(), [true, false]);
    put(&client, &arn, &format!("{V2},{V1}")).await;
    after_refresh(&*source).await;
    service.submit(&job).await.unwrap();
    assert_eq!(last_signed_with(), [true, true], "during the rotation a job verifies with either");
    put(&client, &arn, V2).await;
    after_refresh(&*source).await;
    service.submit(&job).await.unwrap();
    assert_eq!(last_signed_with(), [false, true]);
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_fails_the_cold_start_and_later_keeps_the_last_secrets() {
    let client = client().await;
    let missing = SecretsManagerStore::new(client.clone(), taskfleet_testkit::unique_name("no-such-secret"));
    let error = missing.read().await.unwrap_err();
    assert!(matches!(error, ReadError::Unavailable(_)), "{error:?}");
    let error = RefreshingSecrets::load(missing, REFRESH).await.unwrap_err();
    assert!(matches!(error, LoadError::Read(ReadError::Unavailable(_))), "{error:?}");

    // Not signing secrets: refused at load, without the value in the message.
    let arn = secret(&client, "not-a-whsec-secret").await;
    let error = RefreshingSecrets::load(SecretsManagerStore::new(client.clone(), &arn), REFRESH).await.unwrap_err();
    assert!(matches!(error, LoadError::Invalid(_)), "{error:?}");
    assert!(!error.to_string().contains("not-a-whsec"), "{error}");

    // Loaded, then the secret is deleted: the secrets read last stay in force.
    let arn = secret(&client, V1).await;
    let source = RefreshingSecrets::load(SecretsManagerStore::new(client.clone(), &arn), REFRESH).await.unwrap();
    client.delete_secret().secret_id(&arn).force_delete_without_recovery(true).send().await.expect("DeleteSecret");
    after_refresh(&source).await;
    let body = b"{}";
    assert_eq!(source.current().await.verify(&callback(V1, body), body, Timestamp::now()), Ok(()));
}

#[tokio::test]
async fn config_reads_the_secret_the_arn_variable_names_and_refuses_both_variables() {
    // One test changes the process's environment; nothing else in this binary reads it.
    let client = client().await;
    let arn = secret(&client, V1).await;
    let sdk = taskfleet_testkit::sdk_config().await;
    // SAFETY: the only test of this binary that touches these variables.
    unsafe {
        std::env::set_var(config::WEBHOOK_SIGNING_SECRET_ARN, &arn);
        std::env::remove_var(config::WEBHOOK_SIGNING_SECRETS);
    }
    let source = config::signing(&sdk).await.expect("signing").expect("a source");
    let body = b"{}";
    assert_eq!(source.current().await.verify(&callback(V1, body), body, Timestamp::now()), Ok(()));

    unsafe { std::env::set_var(config::WEBHOOK_SIGNING_SECRETS, V1) };
    assert!(matches!(config::signing(&sdk).await, Err(ConfigError::Invalid { .. })), "both set");

    unsafe {
        std::env::set_var(
            config::WEBHOOK_SIGNING_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf",
        )
    };
    unsafe { std::env::remove_var(config::WEBHOOK_SIGNING_SECRETS) };
    match config::signing(&sdk).await {
        Err(ConfigError::Secret { name, .. }) => assert_eq!(name, config::WEBHOOK_SIGNING_SECRET_ARN),
        other => panic!("a missing secret must fail the cold start: {other:?}"),
    }
    unsafe { std::env::remove_var(config::WEBHOOK_SIGNING_SECRET_ARN) };
    assert!(config::signing(&sdk).await.expect("no signing").is_none());
}

// ---- the completion-webhook master key (issue 12) ---------------------------------------------

#[tokio::test]
async fn the_master_key_is_read_when_first_needed_retried_after_a_failed_read_and_then_kept() {
    use taskfleet_adapters::config::MasterKeySource;
    let client = client().await;
    let name = taskfleet_testkit::unique_name("taskfleet/test/webhook-master-key");
    let source = MasterKeySource::Secret {
        store: SecretsManagerStore::new(client.clone(), &name),
        key: tokio::sync::OnceCell::new(),
    };
    // Not there yet: the call that needs it fails (ingest answers that route 503) ...
    assert!(matches!(source.get().await, Err(ConfigError::Secret { .. })));
    // ... and the next one reads it again.
    client.create_secret().name(&name).secret_string(V1).send().await.expect("CreateSecret");
    let first = format!("{:?}", source.get().await.expect("the key"));
    assert!(!first.contains("MfKQ"), "the key is never printed: {first}");
    // Kept for the instance's life: a later value is not read (the key is never rotated).
    put(&client, &name, "not a key").await;
    assert!(source.get().await.is_ok());
    // A value that is not a whsec_ key fails, naming the variable, not the value.
    let bad = MasterKeySource::Secret { store: SecretsManagerStore::new(client, &name), key: Default::default() };
    let error = bad.get().await.expect_err("not a key").to_string();
    assert!(error.contains("WEBHOOK_MASTER_KEY_ARN") && !error.contains("not a key"), "{error}");
}
