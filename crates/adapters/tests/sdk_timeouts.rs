//! A store whose DynamoDB never answers (a loopback server that accepts connections and stays
//! silent) fails within the SDK operation timeout as `StoreError::Unavailable`, well before an
//! API function's 10 s Lambda timeout. No emulator needed.

use std::time::{Duration, Instant};

use taskfleet_adapters::{DynamoStore, config};
use taskfleet_core::ports::TaskStore;
use taskfleet_core::{StoreError, TaskId};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_call_to_a_silent_dynamodb_ends_within_the_operation_timeout_as_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection); // accepted, never answered
        }
    });
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .endpoint_url(format!("http://{address}"));
    let sdk = config::aws_from(loader).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "tasks");

    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), store.get(&TaskId::generate()))
        .await
        .expect("the call ends by itself, within the SDK's timeouts");
    let took = started.elapsed();
    assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
    assert!(took >= config::SDK_ATTEMPT_TIMEOUT, "an attempt waits its timeout: {took:?}");
    assert!(took < config::SDK_OPERATION_TIMEOUT + Duration::from_millis(500), "took {took:?}");
    silent.abort();
}
