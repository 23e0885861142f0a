//! What every function's `main` wraps each invocation in: a span carrying the cold-start flag,
//! on the first invocation of an instance only (the lines of every later one stay without it:
//! see [`crate::logging`]). Handlers add the task's ids (a task span) to their events.

use std::sync::atomic::{AtomicBool, Ordering};

static COLD: AtomicBool = AtomicBool::new(true);

/// The span of one invocation: `cold_start = true` on the first invocation of this instance,
/// unset on the others.
pub fn span() -> tracing::Span {
    let span = tracing::info_span!("invocation", cold_start = tracing::field::Empty);
    if COLD.swap(false, Ordering::Relaxed) {
        span.record("cold_start", true);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_invocation_is_cold() {
        let first = COLD.load(Ordering::Relaxed);
        let _ = span();
        assert!(first, "nothing ran before this test in this process");
        assert!(!COLD.load(Ordering::Relaxed));
        let _ = span();
        assert!(!COLD.load(Ordering::Relaxed));
    }
}
