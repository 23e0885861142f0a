//! Backpressure: the fleet-wide hold on new jobs. When the external service answers 429 or 503
//! with `Retry-After`, every caller stops handing over new jobs until then (tasks stay RECEIVED;
//! their messages are sent on to arrive when the hold ends), and resumes by itself.
//!
//! The hold is one small record ([`HoldStore`]). Each function instance reads it at most once
//! per [`HOLD_REFRESH`] and remembers what it read; the instance that sets a hold knows it at
//! once. So in AWS another instance may hand over a job up to [`HOLD_REFRESH`] after a hold
//! began (one read per instance per second keeps the record far below a key's read limit).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ExternalError, StoreError};
use crate::ports::HoldStore;
use crate::time::Timestamp;

/// How long an instance relies on the hold it read.
pub const HOLD_REFRESH: Duration = Duration::from_secs(1);

/// The longest hold the fleet honours, whatever the service asks (a misconfigured
/// `Retry-After` must not park the fleet for a day).
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// How long the service asks the whole fleet to back off: a 429 or 503 with `Retry-After`.
pub fn back_off_for(error: &ExternalError) -> Option<Duration> {
    match error {
        ExternalError::Rejected { status: 429 | 503, retry_after_seconds: Some(seconds) } if *seconds > 0 => {
            Some(Duration::from_secs(*seconds).min(MAX_HOLD))
        }
        _ => None,
    }
}

/// A [`HoldStore`] read through a per-instance memory.
pub struct HoldGate<H> {
    store: H,
    refresh: Duration,
    /// What was read, and when.
    read: Mutex<Option<(Instant, Option<Timestamp>)>>,
}

impl<H: HoldStore> HoldGate<H> {
    pub fn new(store: H) -> Self {
        Self::with_refresh(store, HOLD_REFRESH)
    }

    pub fn with_refresh(store: H, refresh: Duration) -> Self {
        Self { store, refresh, read: Mutex::new(None) }
    }

    fn remembered(&self) -> Option<Option<Timestamp>> {
        let read = self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        read.filter(|(at, _)| at.elapsed() < self.refresh).map(|(_, until)| until)
    }

    /// Remembers a hold read or set now; answers the hold known now.
    fn remember(&self, until: Option<Timestamp>) -> Option<Timestamp> {
        let mut read = self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = match (*read, until) {
            // A hold this instance set or read lately is not forgotten by a stale read.
            (Some((_, Some(known))), Some(read_now)) => Some(known.max(read_now)),
            (Some((_, known)), None) => known,
            (_, read_now) => read_now,
        };
        *read = Some((Instant::now(), until));
        until
    }

    /// Until when new jobs are held, if that is after `now`.
    pub async fn held_until(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let until = match self.remembered() {
            Some(until) => until,
            None => {
                let until = self.store.held_until().await?;
                self.remember(until)
            }
        };
        Ok(until.filter(|until| *until > now))
    }

    /// Holds new jobs, fleet-wide, until `until`.
    pub async fn hold(&self, until: Timestamp) -> Result<(), StoreError> {
        let _ = self.remember(Some(until));
        self.store.hold_until(until).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn rejected(status: u16, retry_after_seconds: Option<u64>) -> ExternalError {
        ExternalError::Rejected { status, retry_after_seconds }
    }

    #[test]
    fn only_429_and_503_with_retry_after_hold_the_fleet() {
        assert_eq!(back_off_for(&rejected(429, Some(5))), Some(Duration::from_secs(5)));
        assert_eq!(back_off_for(&rejected(503, Some(2))), Some(Duration::from_secs(2)));
        assert_eq!(back_off_for(&rejected(429, None)), None);
        assert_eq!(back_off_for(&rejected(500, Some(5))), None);
        assert_eq!(back_off_for(&rejected(429, Some(0))), None);
        assert_eq!(back_off_for(&ExternalError::Timeout { timeout_ms: 10 }), None);
    }

    #[test]
    fn a_hold_is_capped() {
        assert_eq!(back_off_for(&rejected(503, Some(86_400))), Some(MAX_HOLD));
    }

    #[tokio::test]
    async fn a_hold_set_here_holds_at_once_and_ends_by_itself() {
        let gate = HoldGate::new(MemoryStore::new());
        assert_eq!(gate.held_until(NOW).await.unwrap(), None);
        let until = NOW.plus_seconds(5);
        gate.hold(until).await.unwrap();
        assert_eq!(gate.held_until(NOW).await.unwrap(), Some(until));
        assert_eq!(gate.held_until(until).await.unwrap(), None, "the hold is over at its end");
    }

    #[tokio::test]
    async fn another_instance_sees_a_hold_once_its_memory_is_older_than_the_refresh() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let setter = HoldGate::with_refresh(store.clone(), Duration::ZERO);
        let reader = HoldGate::with_refresh(store.clone(), Duration::from_millis(50));
        assert_eq!(reader.held_until(NOW).await.unwrap(), None);
        setter.hold(NOW.plus_seconds(5)).await.unwrap();
        assert_eq!(reader.held_until(NOW).await.unwrap(), None, "still relying on what it read");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(reader.held_until(NOW).await.unwrap(), Some(NOW.plus_seconds(5)));
    }

    #[tokio::test]
    async fn a_shorter_hold_does_not_shorten_a_longer_one() {
        let gate = HoldGate::with_refresh(MemoryStore::new(), Duration::ZERO);
        gate.hold(NOW.plus_seconds(10)).await.unwrap();
        gate.hold(NOW.plus_seconds(3)).await.unwrap();
        assert_eq!(gate.held_until(NOW).await.unwrap(), Some(NOW.plus_seconds(10)));
    }
}
