//! How every function logs (`main` calls [`init`] once): what on-call needs, once per line.
//!
//! As deployed (`logFormat: JSON`, Lambda sets `AWS_LAMBDA_LOG_FORMAT=JSON`) each event is one
//! flat JSON line: `level`, `message`, the event's own fields, then the ids of the task it is
//! about from the enclosing spans (`task_id`, `trace_id`: [`taskfleet_core::trace::task_span`])
//! and `cold_start` on the first invocation of an instance — each field once, an event's own
//! value first. No time (Lambda stamps every line), no target, no list of spans: the runtime's
//! request span (request id, X-Ray header) is left out, as is anything else a span holds.
//! `level` is what Lambda's `applicationLogLevel` filters on. Otherwise (local runs) the lines
//! are tracing's plain text.
//!
//! The level is `AWS_LAMBDA_LOG_LEVEL` (set by Lambda from `applicationLogLevel`), else
//! `RUST_LOG`, else INFO; `RUST_LOG` directives (`hyper=debug`) apply on top.

use std::error::Error;
use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The span fields a line carries: the task's ids and whether the instance is cold.
pub const SPAN_FIELDS: [&str; 3] = ["task_id", "trace_id", "cold_start"];

/// Installs the fleet's subscriber as the global default, writing to stdout (a second call
/// keeps the first).
pub fn init() {
    let level = level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(), std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::builder().with_default_directive(level.into()).from_env_lossy();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let installed = if json {
        tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stdout))
    } else {
        let text = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .finish();
        tracing::subscriber::set_global_default(text)
    };
    // Only a second call fails: the first subscriber stays.
    let _ = installed;
}

/// The subscriber of the deployed JSON format: one [`FlatJson`] line per event to `writer`.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
        .finish()
}

/// The level of `AWS_LAMBDA_LOG_LEVEL` (Lambda's names: TRACE … FATAL), else of `RUST_LOG` when
/// it is a bare level, else INFO.
pub fn level(aws_lambda_log_level: Option<&str>, rust_log: Option<&str>) -> LevelFilter {
    let parse = |raw: &str| match raw.trim() {
        fatal if fatal.eq_ignore_ascii_case("fatal") => Some(LevelFilter::ERROR),
        other => other.parse::<LevelFilter>().ok(),
    };
    aws_lambda_log_level.and_then(parse).or_else(|| rust_log.and_then(parse)).unwrap_or(LevelFilter::INFO)
}

/// One flat JSON object per event (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Line(vec![("level".into(), Value::from(event.metadata().level().as_str()))]);
        let mut fields = Line::default();
        event.record(&mut fields);
        // The message first, then the event's fields in the order they were written.
        if let Some(at) = fields.0.iter().position(|(name, _)| name == "message") {
            let message = fields.0.remove(at);
            line.push(message.0, message.1);
        }
        for (name, value) in fields.0 {
            line.push(name, value);
        }
        for span in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()) {
            let extensions = span.extensions();
            let Some(recorded) = extensions.get::<FormattedFields<N>>() else { continue };
            let Ok(Value::Object(values)) = serde_json::from_str::<Value>(&recorded.fields) else { continue };
            for (name, value) in values {
                if SPAN_FIELDS.contains(&name.as_str()) {
                    line.push(name, value);
                }
            }
        }
        writeln!(writer, "{}", line.to_json())
    }
}

/// Named values in order, each name once (the first value written wins).
#[derive(Default)]
struct Line(Vec<(String, Value)>);

impl Line {
    fn push(&mut self, name: String, value: Value) {
        if !self.0.iter().any(|(present, _)| *present == name) {
            self.0.push((name, value));
        }
    }

    /// A JSON object with the values in their order (a `serde_json::Map` would sort them).
    fn to_json(&self) -> String {
        let members: Vec<String> =
            self.0.iter().map(|(name, value)| format!("{}:{value}", Value::from(name.as_str()))).collect();
        format!("{{{}}}", members.join(","))
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field.name().into(), Value::from(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name().into(), Value::from(value));
    }

    /// An error with its causes: `outer: cause: root cause`.
    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.push(field.name().into(), Value::from(text));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use taskfleet_core::trace::{self, TraceId};
    use taskfleet_core::{ClientId, Task, Timestamp};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `body` logs through the deployed JSON format at INFO, line by line.
    fn logged(body: impl FnOnce()) -> Vec<String> {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = json_subscriber(EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(subscriber, body);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// The spans a function's event is logged in: the runtime's request span, the invocation
    /// span (`crate::invocation::span`, here built alike: its cold flag is process-wide) and the
    /// task span.
    fn in_an_invocation(cold: bool, body: impl FnOnce()) {
        let request = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = "8f5b6f7e-0d1c-4a53-9f6e-3a0f4b5c6d7e",
            xrayTraceId = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        );
        request.in_scope(|| {
            let invocation = tracing::info_span!("invocation", cold_start = tracing::field::Empty);
            if cold {
                invocation.record("cold_start", true);
            }
            invocation.in_scope(|| trace::task_span(None).in_scope(body))
        });
    }

    fn task() -> Task {
        Task::received(ClientId::parse("alpha").unwrap(), Timestamp::from_millis(0), 9)
            .traced(Some(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()))
    }

    #[test]
    fn a_line_is_one_flat_json_object_with_the_task_s_ids_once_and_no_spans() {
        let task = task();
        let lines = logged(|| {
            in_an_invocation(false, || {
                trace::note(&task);
                tracing::info!(task_id = %task.task_id, attempt = 1, "job handed to the external service");
            })
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let id = task.task_id.as_str();
        assert_eq!(
            lines[0],
            format!(
                r#"{{"level":"INFO","message":"job handed to the external service","task_id":"{id}","attempt":1,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}}"#
            )
        );
        assert_eq!(lines[0].matches(id).count(), 1);
    }

    #[test]
    fn the_task_span_names_the_task_when_the_event_does_not() {
        let task = task();
        let lines = logged(|| {
            in_an_invocation(true, || {
                tracing::info!("before the task is known");
                trace::note(&task);
                tracing::warn!(attempt = 2, "callback overdue; attempt timed out, will retry");
            })
        });
        let lines: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0], json!({"level": "INFO", "message": "before the task is known", "cold_start": true}));
        assert_eq!(
            lines[1],
            json!({
                "level": "WARN",
                "message": "callback overdue; attempt timed out, will retry",
                "attempt": 2,
                "task_id": task.task_id.as_str(),
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "cold_start": true,
            })
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("hand-over failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn errors_keep_their_cause_and_levels_below_the_filter_are_not_written() {
        let error = Outer(std::io::Error::other("connection reset"));
        let lines = logged(|| {
            tracing::debug!("timer set");
            tracing::error!(error = &error as &(dyn Error + 'static), "timer not handled");
            tracing::error!(%error, "displayed");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            r#"{"level":"ERROR","message":"timer not handled","error":"hand-over failed: connection reset"}"#
        );
        assert_eq!(lines[1], r#"{"level":"ERROR","message":"displayed","error":"hand-over failed"}"#);
    }

    #[test]
    fn the_level_is_lambda_s_then_rust_log_s_then_info() {
        assert_eq!(level(Some("WARN"), Some("debug")), LevelFilter::WARN);
        assert_eq!(level(Some("debug"), None), LevelFilter::DEBUG);
        assert_eq!(level(Some("FATAL"), None), LevelFilter::ERROR);
        assert_eq!(level(None, Some("trace")), LevelFilter::TRACE);
        assert_eq!(level(Some("loud"), Some("info,hyper=debug")), LevelFilter::INFO);
        assert_eq!(level(None, None), LevelFilter::INFO);
    }
}
