//! Retry policy: which refusals are worth another attempt, how many attempts a series gets, and
//! how long to wait before the next one (exponential backoff with jitter, never sooner than the
//! service's `Retry-After`).

use std::time::Duration;

use crate::error::ExternalError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per series, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt (before jitter); doubles with each attempt.
    pub base_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(15 * 60);

    /// May the attempt after `attempt` (1-based, within its series) be made?
    pub fn allows_another(&self, attempt_in_series: u32) -> bool {
        attempt_in_series < self.max_attempts
    }

    /// How long to wait after attempt `attempt_in_series` failed. `random` is uniform in [0, 1):
    /// half of the exponential delay is fixed and half is jitter ("equal jitter"), so retries of
    /// many tasks that failed together spread out but still back off. A `Retry-After` from the
    /// service is a floor.
    pub fn delay(&self, attempt_in_series: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        let doublings = attempt_in_series.saturating_sub(1).min(30);
        let exponential = self.base_delay.saturating_mul(1u32 << doublings).min(self.max_delay);
        let jitter = exponential.mul_f64(random.clamp(0.0, 1.0) / 2.0);
        let delay = exponential / 2 + jitter;
        retry_after.map_or(delay, |floor| delay.max(floor.min(self.max_delay)))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }
}

/// Whether a refusal may succeed if tried again later.
pub fn is_retryable(error: &ExternalError) -> bool {
    match error {
        ExternalError::Rejected { status, .. } => matches!(status, 408 | 429) || *status >= 500,
        // A misconfiguration: trying again would meet the same redirect.
        ExternalError::Redirected { .. } => false,
        ExternalError::Timeout { .. } | ExternalError::Unreachable(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 5, base_delay: Duration::from_secs(10), max_delay: Duration::from_secs(100) }
    }

    fn rejected(status: u16) -> ExternalError {
        ExternalError::Rejected { status, retry_after_seconds: None }
    }

    #[test]
    fn server_errors_throttling_timeouts_and_network_failures_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(&rejected(status)), "{status}");
        }
        assert!(is_retryable(&ExternalError::Timeout { timeout_ms: 1 }));
        assert!(is_retryable(&ExternalError::Unreachable("refused".into())));
    }

    #[test]
    fn other_client_errors_fail_at_once() {
        for status in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!is_retryable(&rejected(status)), "{status}");
        }
    }

    #[test]
    fn a_redirect_is_a_misconfiguration_and_fails_at_once() {
        for status in [301, 302, 303, 307, 308] {
            assert!(!is_retryable(&ExternalError::Redirected { status }), "{status}");
        }
    }

    #[test]
    fn a_series_has_at_most_max_attempts() {
        let policy = policy();
        assert!(policy.allows_another(1));
        assert!(policy.allows_another(4));
        assert!(!policy.allows_another(5));
        assert!(!policy.allows_another(6));
    }

    #[test]
    fn the_delay_doubles_per_attempt_with_half_of_it_jitter() {
        let policy = policy();
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_secs(5));
        assert_eq!(policy.delay(1, None, 0.999_999).as_secs(), 9);
        assert_eq!(policy.delay(2, None, 0.0), Duration::from_secs(10));
        assert_eq!(policy.delay(3, None, 0.0), Duration::from_secs(20));
        assert_eq!(policy.delay(3, None, 0.5), Duration::from_secs(30));
    }

    #[test]
    fn the_delay_is_capped() {
        let policy = policy();
        assert_eq!(policy.delay(10, None, 0.0), Duration::from_secs(50));
        assert!(policy.delay(60, None, 1.0) <= Duration::from_secs(100));
    }

    #[test]
    fn retry_after_is_a_floor_within_the_cap() {
        let policy = policy();
        assert_eq!(policy.delay(1, Some(Duration::from_secs(42)), 0.0), Duration::from_secs(42));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(1)), 0.0), Duration::from_secs(5));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(10_000)), 0.0), Duration::from_secs(100));
    }
}
