//! Trace context ([W3C Trace Context](https://www.w3.org/TR/trace-context/)): a task keeps the
//! trace id of the request that submitted it, and every job the fleet sends for it carries a
//! `traceparent` with that trace id, so one id finds a task's whole path.
//!
//! `traceparent: 00-<32 hex: trace id>-<16 hex: parent id>-<2 hex: flags>`. Only version `00` is
//! read, lower-case hex only (as the specification requires), and neither id may be all zeros;
//! anything else is not a trace context and the fleet starts a new trace instead.

use std::fmt;

use crate::task::{Task, TaskId};

/// The HTTP header that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id: 16 bytes, not all zero, shown as 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    /// A new trace: 16 random bytes.
    pub fn generate() -> Self {
        Self(format!("{:032x}", random_nonzero_u128()))
    }

    /// 32 lower-case hex digits, not all zeros (the stored form, and the trace id of a
    /// `traceparent`).
    pub fn parse(raw: &str) -> Option<Self> {
        is_id(raw, 32).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `traceparent` of a new span in this trace (a job the fleet sends: one per attempt).
    /// The sampled flag is set: the fleet records every task's path in its logs.
    pub fn child(&self) -> String {
        format!("00-{}-{:016x}-01", self.0, random_nonzero_u64())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `traceparent` header that was read: the caller's trace and span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: String,
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` header value (surrounding spaces allowed); `None` when it is not a
    /// valid version-00 trace context.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim_matches([' ', '\t']);
        if header.len() != 55 {
            return None;
        }
        let mut parts = header.split('-');
        let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || !is_hex(flags, 2) || !is_id(parent_id, 16) {
            return None;
        }
        Some(Self {
            trace_id: TraceId::parse(trace_id)?,
            parent_id: parent_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }
}

/// The trace a request's `traceparent` header values name, if they are one valid trace context
/// (a header sent more than once is not).
pub fn parent_of<'a>(mut headers: impl Iterator<Item = &'a str>) -> Option<TraceId> {
    match (headers.next(), headers.next()) {
        (Some(only), None) => TraceParent::parse(only).map(|parent| parent.trace_id),
        _ => None,
    }
}

/// The trace a request belongs to: the one its `traceparent` header names if it is valid (see
/// [`parent_of`]), otherwise a new one.
pub fn trace_of<'a>(headers: impl Iterator<Item = &'a str>) -> TraceId {
    parent_of(headers).unwrap_or_else(TraceId::generate)
}

/// The span one task's handling runs in (a request about it, a timer, a callback): every line
/// logged inside carries the span's `task_id` and `trace_id` (top-level `task_id`, `trace_id`
/// fields in the functions' JSON logs: `taskfleet_adapters::logging`), so one query by trace id
/// finds a task's whole path (README). Either may be known only later: see [`note`].
pub fn task_span(task_id: Option<&TaskId>) -> tracing::Span {
    let span = tracing::info_span!("task", task_id = tracing::field::Empty, trace_id = tracing::field::Empty);
    if let Some(task_id) = task_id {
        span.record("task_id", task_id.as_str());
    }
    span
}

/// Names `task` and its trace on the current [`task_span`] (a no-op outside one).
pub fn note(task: &Task) {
    note_id(&task.task_id);
    if let Some(trace) = &task.trace_id {
        tracing::Span::current().record("trace_id", trace.as_str());
    }
}

/// Names the task on the current [`task_span`], before its trace is known.
pub fn note_id(task_id: &TaskId) {
    tracing::Span::current().record("task_id", task_id.as_str());
}

fn is_hex(raw: &str, len: usize) -> bool {
    raw.len() == len && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_id(raw: &str, len: usize) -> bool {
    is_hex(raw, len) && raw.bytes().any(|b| b != b'0')
}

fn random_nonzero_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Trace ids need not be secret: a weaker source is better than no trace.
        bytes = fastrand::u128(..).to_le_bytes();
    }
    u128::from_le_bytes(bytes).max(1)
}

fn random_nonzero_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fastrand::u64(..).to_le_bytes();
    }
    u64::from_le_bytes(bytes).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.trace_id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id, "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
        assert_eq!(TraceParent::parse(&format!(" {VALID}\t")).unwrap(), parent);
        assert_eq!(TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().flags, 0);
    }

    #[test]
    fn anything_else_is_not_a_trace_context() {
        for bad in [
            "",
            "00",
            // another version, or none
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // upper case, not hex, wrong lengths
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_without_a_valid_traceparent_starts_a_new_trace() {
        assert_eq!(trace_of([VALID].into_iter()).as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        for headers in [vec![], vec![invalid], vec![VALID, VALID]] {
            let trace = trace_of(headers.into_iter());
            assert!(TraceId::parse(trace.as_str()).is_some());
            assert_ne!(trace.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        assert_ne!(TraceId::generate(), TraceId::generate());
    }

    #[test]
    fn a_child_span_keeps_the_trace_and_gets_a_new_parent_id_each_time() {
        let trace = TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let (first, second) = (trace.child(), trace.child());
        for child in [&first, &second] {
            let parent = TraceParent::parse(child).unwrap();
            assert_eq!(parent.trace_id, trace);
            assert_eq!(parent.flags, 1);
        }
        assert_ne!(first, second);
    }

    #[test]
    fn stored_trace_ids_are_32_lower_case_hex_digits() {
        assert!(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").is_some());
        for bad in ["", "4bf92f35", "00000000000000000000000000000000", "4BF92F3577B34DA6A3CE929D0E0E4736"] {
            assert_eq!(TraceId::parse(bad), None, "{bad}");
        }
    }
}
