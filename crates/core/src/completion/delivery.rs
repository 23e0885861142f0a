//! The rules of one task's completion webhook.
//!
//! - A task that ends with a `webhook_url` has a **pending** delivery whose first attempt is due
//!   at once (see [`crate::task::Task::delivery`]; nothing is written for it until then).
//! - Attempt n's result applies only while the delivery is pending with n − 1 attempts made, so
//!   a repeated or late result (a timer delivered twice) changes nothing.
//! - A 2xx answer makes it **delivered**. Any other answer, a timeout, a network error or a
//!   destination refused at delivery (see [`super::destination`]) counts as a failed attempt: the
//!   next one is due after the schedule's wait, and when the schedule has no attempt left the
//!   delivery is **failed**. Delivered and failed are final.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::schedule::DeliverySchedule;
use crate::time::Timestamp;

/// Where a delivery stands, as the task view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored state back.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|state| state.as_str() == text)
    }
}

/// A task's completion webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due; only while pending.
    pub next_at: Option<Timestamp>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Anything else; the reason goes to the task's history.
    Failed(String),
}

/// A result for an attempt that is not the one the delivery waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("attempt {attempt} does not apply to a {state:?} delivery with {made} attempts made")]
pub struct StaleAttempt {
    pub attempt: u32,
    pub state: DeliveryState,
    pub made: u32,
}

impl Delivery {
    /// The delivery of a task that ended at `ended_at`, before its first attempt.
    pub fn begin(ended_at: Timestamp) -> Self {
        Self { state: DeliveryState::Pending, attempts: 0, next_at: Some(ended_at) }
    }

    /// The delivery of a task: none unless it has a webhook and has `ended`; `stored` once an
    /// attempt was recorded, else pending with the first attempt due when it ended (`due_at`).
    pub fn of_task(ended: bool, has_webhook: bool, stored: Option<Self>, due_at: Timestamp) -> Option<Self> {
        (ended && has_webhook).then(|| stored.unwrap_or_else(|| Self::begin(due_at)))
    }

    /// The attempt a timer should make now, if the delivery is still pending.
    pub fn next_attempt(&self) -> Option<(u32, Timestamp)> {
        match (self.state, self.next_at) {
            (DeliveryState::Pending, Some(at)) => Some((self.attempts.saturating_add(1), at)),
            _ => None,
        }
    }

    /// The delivery after attempt `attempt` ended with `outcome` at `now`.
    pub fn after(
        &self,
        attempt: u32,
        outcome: &Outcome,
        now: Timestamp,
        schedule: &DeliverySchedule,
    ) -> Result<Self, StaleAttempt> {
        if self.state != DeliveryState::Pending || Some(attempt) != self.attempts.checked_add(1) {
            return Err(StaleAttempt { attempt, state: self.state, made: self.attempts });
        }
        Ok(match outcome {
            Outcome::Delivered => Self { state: DeliveryState::Delivered, attempts: attempt, next_at: None },
            Outcome::Failed(_) => match schedule.wait_after(attempt) {
                Some(wait) => Self { state: DeliveryState::Pending, attempts: attempt, next_at: Some(now.plus(wait)) },
                None => Self { state: DeliveryState::Failed, attempts: attempt, next_at: None },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn short() -> DeliverySchedule {
        DeliverySchedule::parse("5s,60s").unwrap()
    }

    fn failed() -> Outcome {
        Outcome::Failed("HTTP 500".into())
    }

    #[test]
    fn a_task_that_ends_is_delivered_at_once() {
        let delivery = Delivery::begin(at(100));
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(delivery.next_attempt(), Some((1, at(100))));
    }

    #[test]
    fn a_2xx_answer_delivers_it_for_good() {
        let delivered = Delivery::begin(at(100)).after(1, &Outcome::Delivered, at(101), &short()).unwrap();
        assert_eq!(delivered, Delivery { state: DeliveryState::Delivered, attempts: 1, next_at: None });
        assert_eq!(delivered.next_attempt(), None);
        assert!(delivered.after(2, &failed(), at(102), &short()).is_err(), "delivered is final");
    }

    #[test]
    fn a_failed_attempt_is_retried_after_the_schedules_wait_from_when_it_ended() {
        let delivery = Delivery::begin(at(100)).after(1, &failed(), at(102), &short()).unwrap();
        assert_eq!(delivery.next_attempt(), Some((2, at(107))));
        let delivery = delivery.after(2, &failed(), at(108), &short()).unwrap();
        assert_eq!(delivery.next_attempt(), Some((3, at(168))));
    }

    #[test]
    fn when_the_schedule_has_no_attempt_left_the_delivery_fails_for_good() {
        let schedule = short();
        let mut delivery = Delivery::begin(at(0));
        for attempt in 1..=3 {
            delivery = delivery.after(attempt, &failed(), at(i64::from(attempt) * 100), &schedule).unwrap();
        }
        assert_eq!(delivery, Delivery { state: DeliveryState::Failed, attempts: 3, next_at: None });
        assert!(delivery.after(4, &Outcome::Delivered, at(999), &schedule).is_err(), "failed is final");
    }

    #[test]
    fn a_result_for_another_attempt_changes_nothing() {
        let delivery = Delivery::begin(at(0)).after(1, &failed(), at(1), &short()).unwrap();
        let repeated = delivery.after(1, &Outcome::Delivered, at(2), &short());
        assert_eq!(repeated, Err(StaleAttempt { attempt: 1, state: DeliveryState::Pending, made: 1 }));
        assert!(delivery.after(3, &Outcome::Delivered, at(2), &short()).is_err(), "nor a later one");
    }

    #[test]
    fn the_default_schedule_gives_up_about_a_day_after_the_task_ended() {
        let schedule = DeliverySchedule::default();
        let mut delivery = Delivery::begin(at(0));
        while let Some((attempt, due)) = delivery.next_attempt() {
            delivery = delivery.after(attempt, &failed(), due, &schedule).unwrap();
        }
        assert_eq!(delivery.state, DeliveryState::Failed);
        assert_eq!(delivery.attempts, 8);
        assert_eq!(schedule.span(), Duration::from_secs(99_305));
    }

    #[test]
    fn the_state_is_stored_as_the_view_shows_it() {
        for state in [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed] {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(DeliveryState::parse("Pending"), None);
    }

    #[test]
    fn the_state_reads_as_the_view_shows_it() {
        assert_eq!(serde_json::to_value(DeliveryState::Pending).unwrap(), "pending");
        assert_eq!(serde_json::to_value(DeliveryState::Delivered).unwrap(), "delivered");
        assert_eq!(serde_json::to_value(DeliveryState::Failed).unwrap(), "failed");
    }
}
