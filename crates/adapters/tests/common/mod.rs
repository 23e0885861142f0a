//! Shared setup for the adapter tests: everything runs against the AWS emulator named by
//! `AWS_ENDPOINT_URL`, through the real SDK, with resources no other test uses.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use taskfleet_adapters::{DynamoStore, table};
use taskfleet_core::{ClientId, Task, TaskStatus, Timestamp};

/// A store over a freshly created tasks table of its own.
pub async fn fresh_store() -> DynamoStore {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("tasks");
    table::create(&client, &name).await.unwrap_or_else(|e| panic!("cannot create table {name}: {e:?}"));
    DynamoStore::new(client, name)
}

pub fn client_id() -> ClientId {
    ClientId::parse("acme-corp_1.eu").unwrap()
}

/// A task in `status`, last updated at `updated_at` (ms), created a minute earlier.
pub fn task_in(status: TaskStatus, updated_at: i64, payload: Value) -> Task {
    let now = Timestamp::from_millis(updated_at);
    let mut task = Task::received(
        client_id(),
        payload,
        Timestamp::from_millis(updated_at - 60_000),
        now.as_epoch_seconds() + 3_600,
    );
    task.status = status;
    task.updated_at = now;
    task
}
