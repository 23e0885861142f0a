//! The fleet-wide hold on new jobs, stored in the tasks table of the AWS emulator through the
//! real SDK: absent until set, only ever lengthened, shared by every store on the table.

mod common;

use taskfleet_core::ports::HoldStore;

#[tokio::test]
async fn a_hold_is_shared_through_the_table_and_only_ever_lengthened() {
    let store = common::fresh_store().await;
    let other = common::store_over(&store, 1);
    assert_eq!(store.held_until().await.unwrap(), None, "no hold on a new table");

    store.hold_until(common::at(5_000)).await.unwrap();
    assert_eq!(other.held_until().await.unwrap(), Some(common::at(5_000)), "another instance reads it");

    other.hold_until(common::at(2_000)).await.unwrap();
    assert_eq!(store.held_until().await.unwrap(), Some(common::at(5_000)), "a shorter hold does not shorten it");

    other.hold_until(common::at(9_000)).await.unwrap();
    assert_eq!(store.held_until().await.unwrap(), Some(common::at(9_000)));
}
