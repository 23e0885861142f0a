//! Time as the domain sees it: UTC instants with millisecond precision.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A UTC instant, truncated to whole milliseconds (what storage keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (what a DynamoDB TTL attribute holds).
    pub fn as_epoch_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus_seconds(self, seconds: u64) -> Self {
        let millis = i64::try_from(seconds).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Self(self.0.saturating_add(millis))
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }

    pub fn minus(self, duration: std::time::Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// RFC 3339 with milliseconds and a `Z`, e.g. `2026-11-26T23:56:27.123Z`.
    pub fn to_rfc3339(self) -> String {
        let datetime: DateTime<Utc> = Utc.timestamp_millis_opt(self.0).single().unwrap_or(DateTime::<Utc>::MIN_UTC);
        datetime.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Reads an RFC 3339 date-time with an offset (any precision; below a millisecond is
    /// dropped).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text).ok().map(|datetime| Self(datetime.timestamp_millis()))
    }
}

/// Where a use case that waits on the network reads the time: before and after the wait.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A time is a clock that stands still (for tests, and for callers that read the time once).
impl Clock for Timestamp {
    fn now(&self) -> Timestamp {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_millis_and_z() {
        assert_eq!(Timestamp::from_millis(1_764_201_387_123).to_rfc3339(), "2025-11-26T23:56:27.123Z");
    }

    #[test]
    fn parses_rfc3339_back_with_any_offset() {
        let at = Timestamp::from_millis(1_764_201_387_123);
        assert_eq!(Timestamp::parse_rfc3339(&at.to_rfc3339()), Some(at));
        assert_eq!(Timestamp::parse_rfc3339("2025-11-27T00:56:27.123+01:00"), Some(at));
        assert_eq!(Timestamp::parse_rfc3339("2025-11-26T23:56:27.1234567Z"), Some(at));
        assert_eq!(Timestamp::parse_rfc3339("2025-11-26 23:56:27"), None);
        assert_eq!(Timestamp::parse_rfc3339(""), None);
    }

    #[test]
    fn epoch_seconds_round_down() {
        assert_eq!(Timestamp::from_millis(1_999).as_epoch_seconds(), 1);
        assert_eq!(Timestamp::from_millis(-1).as_epoch_seconds(), -1);
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(Timestamp::from_millis(i64::MAX).plus_seconds(10).as_millis(), i64::MAX);
        assert_eq!(Timestamp::from_millis(5).millis_since(Timestamp::from_millis(10)), 0);
        assert_eq!(Timestamp::from_millis(10).millis_since(Timestamp::from_millis(4)), 6);
    }
}
