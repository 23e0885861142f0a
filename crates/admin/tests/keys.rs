//! The admin commands against the emulator: a key issued here authenticates, a revoked one
//! does not, listings show ids and owners but never secrets.

use std::time::Duration;

use taskfleet_adapters::{DynamoKeyRecords, table};
use taskfleet_admin::{AdminError, Command, run};
use taskfleet_core::ClientId;
use taskfleet_core::auth::{CachedAuthenticator, KeyAuthenticator};

async fn keys() -> DynamoKeyRecords {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = taskfleet_testkit::unique_name("admin");
    table::create(&client, &name).await.unwrap();
    DynamoKeyRecords::new(client, name)
}

async fn admin(store: &DynamoKeyRecords, command: Command) -> Result<String, AdminError> {
    let mut out = Vec::new();
    run(command, store, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn an_issued_key_authenticates_its_client_until_revoked() {
    let store = keys().await;
    let printed = admin(&store, Command::Issue { client: "acme".into() }).await.unwrap();
    let key = printed.lines().nth(1).unwrap().to_owned();
    assert!(key.starts_with("tfk_") && key.len() == 56, "{printed}");

    let auth = CachedAuthenticator::new(store.clone(), Duration::ZERO);
    assert_eq!(auth.client_for_key(&key).await.unwrap(), Some(ClientId::parse("acme").unwrap()));
    let tampered = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(auth.client_for_key(&tampered).await.unwrap(), None);

    let key_id = &key[4..12];
    let listed = admin(&store, Command::List { client: Some("acme".into()) }).await.unwrap();
    assert!(listed.contains(key_id) && listed.contains("acme"), "{listed}");
    assert!(!listed.contains(&key[13..]), "a listing never shows the secret");
    let everyone = admin(&store, Command::List { client: None }).await.unwrap();
    assert_eq!(everyone.lines().count(), 2, "{everyone}");

    admin(&store, Command::Revoke { key_id: key_id.into() }).await.unwrap();
    assert_eq!(auth.client_for_key(&key).await.unwrap(), None);
    assert!(matches!(admin(&store, Command::Revoke { key_id: key_id.into() }).await, Err(AdminError::NoSuchKey(_))));
}

#[tokio::test]
async fn listings_are_per_client_and_bad_client_ids_are_refused() {
    let store = keys().await;
    for client in ["a", "a", "b"] {
        admin(&store, Command::Issue { client: client.into() }).await.unwrap();
    }
    let a = admin(&store, Command::List { client: Some("a".into()) }).await.unwrap();
    assert_eq!(a.lines().count(), 3, "{a}");
    assert!(matches!(
        admin(&store, Command::Issue { client: "no spaces".into() }).await,
        Err(AdminError::InvalidClient)
    ));
}
