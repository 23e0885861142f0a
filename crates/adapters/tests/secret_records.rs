//! Clients' completion-webhook secret records in the tasks table, against the AWS emulator
//! (moto server) through the real SDK: one item per client with no secret in it, created once,
//! rotated only from the version the writer read.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use taskfleet_adapters::{DynamoSecretRecords, table};
use taskfleet_core::ClientId;
use taskfleet_core::completion::client_secret::SecretRecord;
use taskfleet_core::ports::SecretRecords;

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_record_is_created_once_rotated_from_the_version_read_and_holds_no_secret() {
    let (client, name) = common::fresh_table().await;
    let records = DynamoSecretRecords::new(client.clone(), &name);
    let alpha = ClientId::parse("alpha").unwrap();
    assert_eq!(records.secret_record(&alpha).await.unwrap(), None);

    let first = SecretRecord::create([1; 16]);
    assert!(records.put_secret_record(&alpha, &first, None).await.unwrap());
    assert!(!records.put_secret_record(&alpha, &SecretRecord::create([2; 16]), None).await.unwrap(), "created once");
    assert_eq!(records.secret_record(&alpha).await.unwrap(), Some(first.clone()));

    let rotated = first.rotate([3; 16], common::at(5_000), DAY);
    assert!(!records.put_secret_record(&alpha, &rotated, Some(7)).await.unwrap(), "from another version");
    assert!(records.put_secret_record(&alpha, &rotated, Some(1)).await.unwrap());
    assert_eq!(records.secret_record(&alpha).await.unwrap(), Some(rotated));
    assert_eq!(records.secret_record(&ClientId::parse("beta").unwrap()).await.unwrap(), None);

    let item = client
        .get_item()
        .table_name(&name)
        .key(table::PK, AttributeValue::S(table::webhook_secret_key("alpha")))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut attributes: Vec<&str> = item.keys().map(String::as_str).collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["pk", "previous_salt", "previous_until", "previous_version", "salt", "version"]);
}
