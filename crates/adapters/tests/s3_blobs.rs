//! S3Blobs against the AWS emulator (moto server) through the real SDK: large bodies round-trip
//! byte for byte, a missing key reads as `None`, and a presigned URL serves the object to a plain
//! HTTP client that holds no credentials.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test uses a bucket of its own.
//!
//! What the emulator does not check: moto 5.2.1 serves any GET whose query string carries a
//! `Signature=` parameter without verifying the signature or `X-Amz-Expires` (it verifies SigV4
//! only with `INITIAL_NO_AUTH_ACTION_COUNT` set, and then only `Authorization` headers, never
//! query-string signatures). So forged and expired URLs are not tested here; what is tested is
//! that the URL is a SigV4 query-string URL over the `host` header alone with the requested
//! lifetime, and that the emulator refuses the same GET without the signature.

use std::time::Duration;

use taskfleet_adapters::S3Blobs;
use taskfleet_adapters::blobs::{self, CONTENT_TYPE};
use taskfleet_core::StoreError;
use taskfleet_core::TaskId;
use taskfleet_core::blob::{BlobStore, payload_key};

/// A store over a freshly created bucket of its own, with the client the functions build.
async fn fresh_blobs() -> S3Blobs {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = blobs::client(&sdk);
    let bucket = taskfleet_testkit::unique_name("blobs");
    blobs::create_bucket(&client, &bucket).await.unwrap_or_else(|e| panic!("cannot create bucket {bucket}: {e}"));
    S3Blobs::new(client, bucket)
}

/// A key under `results/`, shaped like the ones the webhook writes (`blob::result_key`).
fn result_key(task_id: &TaskId, attempt: u32) -> String {
    format!("results/{task_id}/{attempt}/0123456789abcdef")
}

/// `len` bytes of compact JSON (a string of a repeating, non-uniform pattern), so a truncated,
/// shifted or re-encoded body cannot compare equal.
fn json_body(len: usize) -> Vec<u8> {
    assert!(len >= 2);
    let mut body = Vec::with_capacity(len);
    body.push(b'"');
    body.extend((0..len - 2).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7 + i / 13) % 36]));
    body.push(b'"');
    body
}

/// The decoded value of query parameter `name` of `url`.
fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url} is not a URL: {e}"));
    parsed.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn a_4_mib_body_round_trips_byte_for_byte_as_json() {
    let blobs = fresh_blobs().await;
    let key = payload_key(&TaskId::generate());
    let body = json_body(4 * 1024 * 1024);

    blobs.put(&key, body.clone()).await.expect("put");

    let read = blobs.get(&key).await.expect("get").expect("the object exists");
    assert_eq!(read.len(), body.len());
    assert!(read == body, "the body read back differs from the one written");
    let head = blobs.client().head_object().bucket(blobs.bucket()).key(&key).send().await.expect("HeadObject");
    assert_eq!(head.content_type(), Some(CONTENT_TYPE));
    assert_eq!(head.content_length(), Some(4 * 1024 * 1024));
}

#[tokio::test]
async fn a_put_overwrites_and_keys_stay_apart() {
    let blobs = fresh_blobs().await;
    let task_id = TaskId::generate();
    let (first, second) = (result_key(&task_id, 1), result_key(&task_id, 2));

    blobs.put(&first, br#"{"attempt":1}"#.to_vec()).await.expect("put 1");
    blobs.put(&second, br#"{"attempt":2}"#.to_vec()).await.expect("put 2");
    blobs.put(&first, br#"{"attempt":"1 again"}"#.to_vec()).await.expect("overwrite 1");

    assert_eq!(blobs.get(&first).await, Ok(Some(br#"{"attempt":"1 again"}"#.to_vec())));
    assert_eq!(blobs.get(&second).await, Ok(Some(br#"{"attempt":2}"#.to_vec())));
}

#[tokio::test]
async fn a_missing_key_reads_as_none() {
    let blobs = fresh_blobs().await;
    assert_eq!(blobs.get(&payload_key(&TaskId::generate())).await, Ok(None));
    assert_eq!(blobs.get("results/not-a-task/1").await, Ok(None));
}

#[tokio::test]
async fn a_missing_bucket_is_unavailable_storage_not_a_missing_object() {
    let sdk = taskfleet_testkit::sdk_config().await;
    let blobs = S3Blobs::new(blobs::client(&sdk), taskfleet_testkit::unique_name("missing"));
    let key = payload_key(&TaskId::generate());

    match blobs.get(&key).await {
        Err(StoreError::Unavailable(reason)) => assert!(reason.contains("NoSuchBucket"), "{reason}"),
        other => panic!("GetObject from a missing bucket answered {other:?}"),
    }
    match blobs.put(&key, b"{}".to_vec()).await {
        Err(StoreError::Unavailable(reason)) => assert!(reason.contains("NoSuchBucket"), "{reason}"),
        other => panic!("PutObject to a missing bucket answered {other:?}"),
    }
}

#[tokio::test]
async fn creating_the_bucket_again_is_a_no_op() {
    let blobs = fresh_blobs().await;
    blobs.put("payloads/kept", b"{}".to_vec()).await.expect("put");
    blobs::create_bucket(blobs.client(), blobs.bucket()).await.expect("create again");
    assert_eq!(blobs.get("payloads/kept").await, Ok(Some(b"{}".to_vec())));
}

#[tokio::test]
async fn a_presigned_url_serves_the_exact_bytes_to_a_plain_http_get() {
    let blobs = fresh_blobs().await;
    let key = result_key(&TaskId::generate(), 3);
    let body = json_body(1024 * 1024 + 17);
    blobs.put(&key, body.clone()).await.expect("put");

    let url = blobs.presign_get(&key, Duration::from_secs(300)).await.expect("presign");

    // Path style against the emulator: {endpoint}/{bucket}/{key}?X-Amz-…
    let expected_prefix = format!("{}/{}/{}?", taskfleet_testkit::endpoint(), blobs.bucket(), key);
    assert!(url.starts_with(&expected_prefix), "{url} does not start with {expected_prefix}");
    assert_eq!(query_param(&url, "X-Amz-Algorithm").as_deref(), Some("AWS4-HMAC-SHA256"));
    assert_eq!(query_param(&url, "X-Amz-Expires").as_deref(), Some("300"));
    // Signed over the host alone: a client that sends no headers of ours gets the object in AWS too.
    assert_eq!(query_param(&url, "X-Amz-SignedHeaders").as_deref(), Some("host"));
    assert!(query_param(&url, "X-Amz-Signature").is_some_and(|s| s.len() == 64), "{url}");

    let answer = reqwest::get(&url).await.expect("GET the presigned URL");
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let served = answer.bytes().await.expect("the body");
    assert_eq!(served.len(), body.len());
    assert!(served.as_ref() == body.as_slice(), "the presigned GET served other bytes");

    // The same GET without the signature is refused (the object is private). A forged or expired
    // signature is NOT refused by moto (see the top of this file), so that is not asserted.
    let unsigned = url.split_once('?').map(|(path, _)| path.to_owned()).expect("a query string");
    let refused = reqwest::get(&unsigned).await.expect("GET without a signature");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_presigned_url_of_a_missing_key_answers_404() {
    let blobs = fresh_blobs().await;
    let url = blobs.presign_get(&payload_key(&TaskId::generate()), Duration::from_secs(60)).await.expect("presign");
    let answer = reqwest::get(&url).await.expect("GET the presigned URL");
    assert_eq!(answer.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn presigning_longer_than_a_week_is_refused_before_any_request() {
    let blobs = fresh_blobs().await;
    let week = Duration::from_secs(7 * 24 * 3600);
    assert!(blobs.presign_get("payloads/x", week).await.is_ok());
    match blobs.presign_get("payloads/x", week + Duration::from_secs(1)).await {
        Err(StoreError::Unavailable(reason)) => assert!(reason.contains("604801 s"), "{reason}"),
        other => panic!("a presign for more than a week answered {other:?}"),
    }
}
