//! Idempotency keys in the DynamoDB store against the AWS emulator (moto server) through the
//! real SDK: a claim is one conditional PutItem of its own item, so the first claim of a
//! client's key wins (also when claims race) and every later one answers the first record.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test creates its own table.

mod common;

use std::sync::Arc;

use common::{T0, all_items, at, fresh_store, n, names, raw_item_at, s};
use taskfleet_adapters::table;
use taskfleet_core::ports::{IdempotencyRecord, TaskStore};
use taskfleet_core::token::digest;
use taskfleet_core::{ClientId, TaskId, TaskStatus};

fn record(client: &ClientId, key: &str, payload: &str, offset_ms: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        client_id: client.clone(),
        key_digest: digest(key),
        request_digest: digest(payload),
        task_id: TaskId::generate(),
        created_at: at(offset_ms),
        expires_at: at(offset_ms).as_epoch_seconds() + 90_000,
    }
}

#[tokio::test]
async fn the_first_claim_of_a_clients_key_wins_and_later_ones_answer_it() {
    let store = fresh_store().await;
    let client = common::client_id();
    let first = record(&client, "order-17", r#"{"a":1}"#, 0);

    assert_eq!(store.claim(&first).await.unwrap(), None, "a new key is the claimer's");

    // The record is an item of its own, keyed by client and key digest; the key itself is not stored.
    let pk = format!("IDEMPOTENCY#acme-corp_1.eu#{}", digest("order-17"));
    assert_eq!(pk, table::idempotency_key(client.as_str(), &first.key_digest));
    let item = raw_item_at(&store, pk.clone()).await.expect("the record is stored");
    assert_eq!(names(&item), ["claimed_at", "expires_at", "owner", "pk", "request_digest", "task_id"]);
    assert_eq!(item.get("pk"), Some(&s(&pk)));
    assert_eq!(item.get("owner"), Some(&s("acme-corp_1.eu")));
    assert_eq!(item.get("request_digest"), Some(&s(&digest(r#"{"a":1}"#))));
    assert_eq!(item.get("task_id"), Some(&s(first.task_id.as_str())));
    assert_eq!(item.get("claimed_at"), Some(&n(T0)));
    assert_eq!(item.get("expires_at"), Some(&n(T0 / 1000 + 90_000)));

    // The same key again, by the same client, with another payload and task: the first record.
    let second = record(&client, "order-17", r#"{"a":2}"#, 5_000);
    assert_eq!(store.claim(&second).await.unwrap(), Some(first.clone()));
    // And with the same payload (a retried submission).
    let retried = record(&client, "order-17", r#"{"a":1}"#, 9_000);
    assert_eq!(store.claim(&retried).await.unwrap(), Some(first.clone()));
    assert_eq!(raw_item_at(&store, pk).await, Some(item), "a lost claim changes nothing");

    // The same key for another client is that client's own.
    let other = ClientId::parse("other-client").unwrap();
    let others = record(&other, "order-17", r#"{"a":1}"#, 1_000);
    assert_eq!(store.claim(&others).await.unwrap(), None);
    assert_eq!(store.claim(&record(&other, "order-17", "{}", 2_000)).await.unwrap(), Some(others.clone()));
    // And another key of the same client is a new key.
    let next = record(&client, "order-18", r#"{"a":1}"#, 3_000);
    assert_eq!(store.claim(&next).await.unwrap(), None);
    assert_eq!(store.claim(&record(&client, "order-18", "{}", 4_000)).await.unwrap(), Some(next));
    assert_eq!(store.claim(&record(&client, "order-17", "{}", 4_000)).await.unwrap(), Some(first.clone()));

    // Claims are not tasks: no task item, nothing in the status index.
    assert_eq!(all_items(&store).await.len(), 3, "one item per claimed key");
    assert_eq!(store.get(&first.task_id).await.unwrap(), None);
    for status in TaskStatus::ALL {
        assert_eq!(store.count(status, None, None).await.unwrap(), 0, "{status}");
        assert_eq!(store.earliest_due(status).await.unwrap(), None, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_claims_of_one_key_exactly_one_wins() {
    let store = Arc::new(fresh_store().await);
    let client = common::client_id();
    for round in 0..10 {
        let key = format!("race-{round}");
        let claims: Vec<IdempotencyRecord> =
            (0..6).map(|i| record(&client, &key, &format!("{{\"claimer\":{i}}}"), i)).collect();
        let handles: Vec<_> = claims
            .iter()
            .cloned()
            .map(|claim| {
                let store = store.clone();
                tokio::spawn(async move { store.claim(&claim).await })
            })
            .collect();
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap().unwrap());
        }

        let winners: Vec<usize> = (0..claims.len()).filter(|&i| answers[i].is_none()).collect();
        let [winner] = winners.as_slice() else { panic!("round {round}: winners {winners:?}: {answers:?}") };
        let winning = &claims[*winner];
        for (i, answer) in answers.iter().enumerate() {
            if i != *winner {
                assert_eq!(answer.as_ref(), Some(winning), "round {round}: claimer {i} sees the winner");
            }
        }
        let stored = raw_item_at(&store, table::idempotency_key(client.as_str(), &digest(&key)))
            .await
            .expect("the winning record is stored");
        assert_eq!(stored.get("task_id"), Some(&s(winning.task_id.as_str())), "round {round}");
        assert_eq!(stored.get("request_digest"), Some(&s(&winning.request_digest)), "round {round}");
    }
}

#[tokio::test]
async fn an_expired_record_is_replaced_by_the_next_claim_and_racing_claims_agree() {
    let store = Arc::new(fresh_store().await);
    let client = common::client_id();
    let mut old = record(&client, "order-19", r#"{"a":1}"#, 0);
    old.expires_at = at(10_000).as_epoch_seconds();
    assert_eq!(store.claim(&old).await.unwrap(), None);
    // Alive until its expiry second: a claim a second before it answers the old record.
    assert_eq!(store.claim(&record(&client, "order-19", "{}", 9_000)).await.unwrap(), Some(old.clone()));

    // From its expiry on the key is free again; of racing claims exactly one wins.
    let claims: Vec<IdempotencyRecord> =
        (0..4).map(|i| record(&client, "order-19", &format!("{{\"claimer\":{i}}}"), 10_000 + i)).collect();
    let handles: Vec<_> = claims
        .iter()
        .cloned()
        .map(|claim| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&claim).await })
        })
        .collect();
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap().unwrap());
    }
    let winners: Vec<usize> = (0..claims.len()).filter(|&i| answers[i].is_none()).collect();
    let [winner] = winners.as_slice() else { panic!("winners {winners:?}: {answers:?}") };
    for (i, answer) in answers.iter().enumerate() {
        if i != *winner {
            assert_eq!(answer.as_ref(), Some(&claims[*winner]), "claimer {i} sees the winner, not the expired record");
        }
    }
    let stored = raw_item_at(&store, table::idempotency_key(client.as_str(), &digest("order-19"))).await.unwrap();
    assert_eq!(stored.get("task_id"), Some(&s(claims[*winner].task_id.as_str())));
}
