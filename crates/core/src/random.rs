//! Randomness as the domain sees it: where a use case draws its jitter, injected like the
//! [`crate::time::Clock`], so that tests can pin it.

/// A source of numbers uniform in [0, 1): the share of a backoff that is jitter.
pub trait Jitter: Send + Sync {
    /// A number in [0, 1).
    fn unit(&self) -> f64;
}

/// The system's: a fast non-cryptographic generator (jitter only spreads retries out).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemJitter;

impl Jitter for SystemJitter {
    fn unit(&self) -> f64 {
        fastrand::f64()
    }
}

/// A number is a draw that never changes (for tests), clamped into [0, 1); NaN reads as 0.
impl Jitter for f64 {
    fn unit(&self) -> f64 {
        if self.is_nan() { 0.0 } else { self.clamp(0.0, 1.0_f64.next_down()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_draw_stays_within_zero_and_one() {
        assert_eq!(0.25.unit(), 0.25);
        assert_eq!((-3.0).unit(), 0.0);
        assert_eq!(f64::NAN.unit(), 0.0);
        assert!(1.0.unit() < 1.0);
        assert!(f64::INFINITY.unit() < 1.0);
    }

    #[test]
    fn the_system_draws_within_zero_and_one() {
        assert!((0..1_000).map(|_| SystemJitter.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
