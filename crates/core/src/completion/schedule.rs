//! When each delivery attempt of a completion webhook is due: Svix's schedule — the first at
//! once when the task ends, then retries 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after the
//! attempt before — so a delivery is given up about 27.6 hours after the task ended. Tests and
//! local runs set a shorter schedule (the retry waits only: the first attempt is always at once).

use std::time::Duration;

use thiserror::Error;

/// A schedule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    #[error("`{0}` is not a duration such as 0s, 5s, 5m, 2h")]
    Step(String),
    #[error("a delivery schedule has at most {MAX_RETRIES} retries")]
    TooLong,
}

/// Most retries a schedule may have.
pub const MAX_RETRIES: usize = 20;

/// The wait before each retry, counted from the attempt before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySchedule(Vec<Duration>);

impl Default for DeliverySchedule {
    fn default() -> Self {
        Self::parse(Self::SVIX).unwrap_or_else(|_| unreachable!("the default schedule parses"))
    }
}

impl DeliverySchedule {
    /// Svix's schedule.
    pub const SVIX: &'static str = "5s,5m,30m,2h,5h,10h,10h";

    /// Parses retry waits separated by commas, each a number with a unit: `s`, `m` or `h`. An
    /// empty list: one attempt, no retry.
    pub fn parse(spec: &str) -> Result<Self, ScheduleError> {
        let waits = spec
            .split(',')
            .map(str::trim)
            .filter(|step| !step.is_empty())
            .map(|step| parse_wait(step).ok_or_else(|| ScheduleError::Step(step.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if waits.len() > MAX_RETRIES {
            return Err(ScheduleError::TooLong);
        }
        Ok(Self(waits))
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len() + 1).unwrap_or(u32::MAX)
    }

    /// How long after failed attempt `made` (1-based) attempt `made + 1` is due; `None` once
    /// every attempt was made.
    pub fn wait_after(&self, made: u32) -> Option<Duration> {
        let index = usize::try_from(made.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }

    /// From the first attempt to the last.
    pub fn span(&self) -> Duration {
        self.0.iter().sum()
    }
}

fn parse_wait(step: &str) -> Option<Duration> {
    let unit = step.chars().last()?;
    let number: u64 = step[..step.len() - unit.len_utf8()].parse().ok()?;
    let seconds = match unit {
        's' => number,
        'm' => number.checked_mul(60)?,
        'h' => number.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 3600;

    #[test]
    fn the_default_is_svix_schedule_given_up_after_about_a_day() {
        let schedule = DeliverySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        let waits: Vec<u64> = (1..schedule.attempts()).map(|n| schedule.wait_after(n).unwrap().as_secs()).collect();
        assert_eq!(waits, [5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR]);
        assert_eq!(schedule.wait_after(8), None, "eight attempts, then it is given up");
        let hours = schedule.span().as_secs_f64() / 3600.0;
        assert!((27.0..28.0).contains(&hours), "{hours}");
    }

    #[test]
    fn a_short_schedule_for_tests_is_a_list_of_retry_waits() {
        let schedule = DeliverySchedule::parse(" 1s,2s").unwrap();
        assert_eq!(schedule.attempts(), 3);
        assert_eq!(schedule.wait_after(1), Some(Duration::from_secs(1)));
        assert_eq!(schedule.wait_after(2), Some(Duration::from_secs(2)));
        assert_eq!(schedule.wait_after(3), None);
        assert_eq!(DeliverySchedule::parse("").unwrap().attempts(), 1, "no retry");
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        assert_eq!(DeliverySchedule::parse("5"), Err(ScheduleError::Step("5".into())));
        assert_eq!(DeliverySchedule::parse("5d"), Err(ScheduleError::Step("5d".into())));
        assert_eq!(DeliverySchedule::parse("-1s"), Err(ScheduleError::Step("-1s".into())));
        assert_eq!(DeliverySchedule::parse("5é"), Err(ScheduleError::Step("5é".into())));
        assert_eq!(DeliverySchedule::parse(&["1s"; 21].join(",")), Err(ScheduleError::TooLong));
    }
}
