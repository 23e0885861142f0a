//! TTL policy: every task carries `expires_at`; finishing a task resets it to the retention.

use crate::time::Timestamp;

/// How long tasks live in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Seconds a task may live from creation while it is not finished.
    pub task_ttl_seconds: u64,
    /// Seconds a DONE or FAILED task (and its result) is kept after it finished.
    pub result_retention_seconds: u64,
}

impl TtlPolicy {
    pub const DEFAULT_TASK_TTL_SECONDS: u64 = 24 * 3_600;
    pub const DEFAULT_RESULT_RETENTION_SECONDS: u64 = 7 * 24 * 3_600;

    pub fn new(task_ttl_seconds: u64, result_retention_seconds: u64) -> Self {
        Self { task_ttl_seconds, result_retention_seconds }
    }

    /// `expires_at` of a task that may start at `start`: created then, or scheduled for then
    /// (`Task::starts_at`, the later of its creation and its `run_at`); also of a task that
    /// starts an attempt, or is replayed, at `start`.
    pub fn new_task_expiry(&self, start: Timestamp) -> i64 {
        start.plus_seconds(self.task_ttl_seconds).as_epoch_seconds()
    }

    /// Until when a task that may first start at `start` (`Task::starts_at`) may need its
    /// payload (and a submission's idempotency key its record): unfinished for the task TTL,
    /// then kept for the retention, in which its owner may replay it. A task replayed later than
    /// that fails for want of its payload.
    pub fn payload_expiry(&self, start: Timestamp) -> i64 {
        start.plus_seconds(self.task_ttl_seconds).plus_seconds(self.result_retention_seconds).as_epoch_seconds()
    }

    /// `expires_at` of a task that finished (DONE or FAILED) at `now`.
    pub fn finished_expiry(&self, now: Timestamp) -> i64 {
        now.plus_seconds(self.result_retention_seconds).as_epoch_seconds()
    }
}

impl Default for TtlPolicy {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TASK_TTL_SECONDS, Self::DEFAULT_RESULT_RETENTION_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_task_expires_task_ttl_after_creation() {
        let policy = TtlPolicy::new(60, 600);
        assert_eq!(policy.new_task_expiry(Timestamp::from_millis(10_500)), 70);
    }

    #[test]
    fn a_finished_task_expires_result_retention_after_finishing() {
        let policy = TtlPolicy::new(60, 600);
        assert_eq!(policy.finished_expiry(Timestamp::from_millis(10_500)), 610);
    }

    #[test]
    fn defaults_are_a_day_active_and_a_week_of_results() {
        let policy = TtlPolicy::default();
        assert_eq!(policy.task_ttl_seconds, 86_400);
        assert_eq!(policy.result_retention_seconds, 604_800);
    }
}
