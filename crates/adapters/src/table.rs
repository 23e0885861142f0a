//! The table's layout: key and attribute names, the status index, item keys. Shared by the store,
//! the stream reader and whoever creates the table (the local fleet; serverless.yml in AWS).

/// Partition key of every item.
pub const PK: &str = "pk";
/// Global secondary index over (`status`, `updated_at`), keys only: counts and backlog age read
/// it per status, so they cost what the active tasks cost, not what all stored tasks cost.
pub const STATUS_INDEX: &str = "by_status";
pub const STATUS: &str = "status";
pub const UPDATED_AT: &str = "updated_at";
/// TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

const TASK_PREFIX: &str = "TASK#";

/// The partition key of a task item.
pub fn task_key(task_id: &str) -> String {
    format!("{TASK_PREFIX}{task_id}")
}

/// The task id of a task item's partition key; None for items that are not tasks.
pub fn task_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(TASK_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_round_trip_and_other_items_are_not_tasks() {
        assert_eq!(task_id_of(&task_key("abc")), Some("abc"));
        assert_eq!(task_id_of("IDEMPOTENCY#x"), None);
    }
}
