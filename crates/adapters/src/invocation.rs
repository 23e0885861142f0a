//! What every function's `main` wraps each invocation in: a span carrying the cold-start flag.
//! The runtime's own span adds the request id; handlers add task ids to their events.

use std::sync::atomic::{AtomicBool, Ordering};

static COLD: AtomicBool = AtomicBool::new(true);

/// The span of one invocation: `cold_start` is true for the first invocation of this instance.
pub fn span() -> tracing::Span {
    let cold_start = COLD.swap(false, Ordering::Relaxed);
    tracing::info_span!("invocation", cold_start)
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
