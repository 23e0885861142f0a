//! The lifecycle's tunables, read once per cold start.

use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::ttl::TtlPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    pub ttl: TtlPolicy,
    pub retry: RetryPolicy,
    /// How long an attempt may wait for its callback before the sweeper retries or fails it.
    pub callback_timeout: Duration,
    /// How long a RECEIVED task may be due without being started before the sweeper dispatches it
    /// again (covers lost dispatches and delayed retries; the dispatcher handles the rest at once).
    pub dispatch_grace: Duration,
}

impl Policies {
    pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(15 * 60);
    pub const DEFAULT_DISPATCH_GRACE: Duration = Duration::from_secs(60);
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            ttl: TtlPolicy::default(),
            retry: RetryPolicy::default(),
            callback_timeout: Self::DEFAULT_CALLBACK_TIMEOUT,
            dispatch_grace: Self::DEFAULT_DISPATCH_GRACE,
        }
    }
}
