//! Validation of what clients and the external service send. Payloads and results may be as
//! large as a Lambda invocation carries (6 MB, the request's JSON escaped inside the event):
//! large ones are kept in the blob store, so a task item stays under DynamoDB's 400 KB (the
//! worst case, with the largest inline limit a deployment may set, is ~286 KB: see
//! [`crate::blob::MAX_INLINE_MAX_BYTES`]).

use serde::Deserialize;
use serde_json::Value;

use crate::completion::destination::{Destination, Rules};
use crate::error::ValidationError;
use crate::lifecycle::Outcome;
use crate::time::Timestamp;

/// Largest accepted `payload`, serialized (compact JSON bytes).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Largest accepted `result`, serialized (compact JSON bytes): room for a service that hands a
/// whole payload back inside an envelope of its own.
pub const MAX_RESULT_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;
/// Longest accepted `error` text, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Largest accepted request body on any route (payload or result plus envelope and whitespace).
pub const MAX_BODY_BYTES: usize = MAX_RESULT_BYTES + 64 * 1024;

/// How far ahead a task may be scheduled (`run_at`): 7 days.
pub const MAX_RUN_AT_AHEAD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3_600);

/// One task as a client describes it: `POST /tasks`, or an item of `POST /tasks/batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// A JSON object.
    pub payload: Value,
    /// When to start, as asked (see [`check_run_at`]).
    pub run_at: Option<Timestamp>,
    /// Where to POST the task when it ends, as the destination rules normalised it (its host is
    /// not resolved here).
    pub webhook_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmissionBody {
    payload: Value,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
}

/// Parses `POST /tasks`: `{"payload": <JSON object>, "run_at"?: <RFC 3339 date-time>,
/// "webhook_url"?: <URL>}`, the URL checked against `rules`.
pub fn parse_submission(body: &[u8], rules: Rules) -> Result<Submission, ValidationError> {
    let submission: SubmissionBody = parse_json(body)?;
    submission_of(submission.payload, submission.run_at.as_deref(), submission.webhook_url.as_deref(), rules)
}

fn submission_of(
    payload: Value,
    run_at: Option<&str>,
    webhook_url: Option<&str>,
    rules: Rules,
) -> Result<Submission, ValidationError> {
    if !payload.is_object() {
        return Err(ValidationError::Schema("`payload` must be a JSON object".into()));
    }
    ensure_size("payload", &payload, MAX_PAYLOAD_BYTES)?;
    let run_at = run_at.map(parse_run_at).transpose()?;
    let webhook_url = webhook_url.map(|url| parse_webhook_url(url, rules)).transpose()?;
    Ok(Submission { payload, run_at, webhook_url })
}

/// A `webhook_url`: at most [`crate::completion::destination::MAX_URL_LEN`] characters, and a
/// URL the destination rules accept; normalised as the HTTP client reads it.
fn parse_webhook_url(url: &str, rules: Rules) -> Result<String, ValidationError> {
    Destination::parse(url, rules)
        .map(|destination| destination.as_str().to_owned())
        .map_err(|refused| ValidationError::WebhookUrl(refused.to_string()))
}

fn parse_run_at(raw: &str) -> Result<Timestamp, ValidationError> {
    Timestamp::parse_rfc3339(raw).ok_or_else(|| {
        ValidationError::Schema(
            "`run_at` must be an RFC 3339 date-time with an offset, e.g. 2026-11-27T00:13:25Z".into(),
        )
    })
}

/// A `run_at` may be at most [`MAX_RUN_AT_AHEAD`] after `now`; one in the past means now.
pub fn check_run_at(run_at: Option<Timestamp>, now: Timestamp) -> Result<(), ValidationError> {
    match run_at {
        Some(run_at) if run_at > now.plus(MAX_RUN_AT_AHEAD) => Err(ValidationError::RunAtTooFar),
        _ => Ok(()),
    }
}

/// Most tasks in one `POST /tasks/batch`.
pub const MAX_BATCH: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    tasks: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEntry {
    payload: Value,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
}

/// One item of a batch, read on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub submission: Submission,
    pub idempotency_key: Option<String>,
}

/// Parses `POST /tasks/batch`: `{"tasks": [<item>, …]}` with 1 to [`MAX_BATCH`] items, each
/// `{"payload", "run_at"?, "idempotency_key"?, "webhook_url"?}` (the URL checked against
/// `rules`). The request as a whole fails only if it is not that shape; each item is checked on
/// its own, in order, and a bad one does not spoil the rest.
pub fn parse_batch(body: &[u8], rules: Rules) -> Result<Vec<Result<BatchItem, ValidationError>>, ValidationError> {
    let batch: BatchBody = parse_json(body)?;
    if batch.tasks.is_empty() || batch.tasks.len() > MAX_BATCH {
        return Err(ValidationError::Schema(format!("`tasks` must hold 1 to {MAX_BATCH} tasks")));
    }
    Ok(batch.tasks.into_iter().map(|item| batch_item(item, rules)).collect())
}

fn batch_item(item: Value, rules: Rules) -> Result<BatchItem, ValidationError> {
    let entry: BatchEntry = serde_json::from_value(item).map_err(|error| ValidationError::Schema(describe(&error)))?;
    let idempotency_key = match entry.idempotency_key {
        Some(key) if parse_idempotency_key(&key).is_err() => {
            return Err(ValidationError::Schema(format!(
                "`idempotency_key` must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            )));
        }
        key => key,
    };
    let submission = submission_of(entry.payload, entry.run_at.as_deref(), entry.webhook_url.as_deref(), rules)?;
    Ok(BatchItem { submission, idempotency_key })
}

/// The longest `GET /tasks/{task_id}?wait=` (seconds).
pub const MAX_WAIT_SECONDS: u64 = 20;

/// Parses `?wait=N`: a whole number of seconds from 0 to [`MAX_WAIT_SECONDS`]; absent is 0.
pub fn parse_wait(raw: Option<&str>) -> Result<std::time::Duration, ValidationError> {
    let Some(raw) = raw else { return Ok(std::time::Duration::ZERO) };
    raw.parse::<u64>()
        .ok()
        .filter(|seconds| raw.bytes().all(|b| b.is_ascii_digit()) && *seconds <= MAX_WAIT_SECONDS)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| {
            ValidationError::Parameter(format!("`wait` must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"))
        })
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase", deny_unknown_fields)]
enum Callback {
    Succeeded { result: Value },
    Failed { error: String },
}

/// Parses a callback: `{"status":"succeeded","result":…}` or `{"status":"failed","error":"…"}`.
pub fn parse_callback(body: &[u8]) -> Result<Outcome, ValidationError> {
    match parse_json::<Callback>(body)? {
        Callback::Succeeded { result } => {
            ensure_size("result", &result, MAX_RESULT_BYTES)?;
            Ok(Outcome::Succeeded { result: crate::blob::Content::Inline(result) })
        }
        Callback::Failed { error } => {
            if error.trim().is_empty() {
                return Err(ValidationError::Schema("`error` must not be empty".into()));
            }
            if error.len() > MAX_ERROR_BYTES {
                return Err(ValidationError::TooLarge { field: "error", limit: MAX_ERROR_BYTES });
            }
            Ok(Outcome::Failed { error })
        }
    }
}

/// Page sizes of `GET /tasks`.
pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

/// What `GET /tasks` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<crate::TaskStatus>,
    pub limit: usize,
    pub after: Option<crate::ports::ListPosition>,
}

/// Parses `GET /tasks?status=&limit=&cursor=` (each optional).
pub fn parse_list_query(
    status: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<ListQuery, ValidationError> {
    let status = status.map(str::parse).transpose()?;
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ValidationError::Parameter(format!("`limit` must be a whole number from 1 to {MAX_PAGE}"))
        })?,
    };
    let after = cursor.map(decode_cursor).transpose()?;
    Ok(ListQuery { status, limit, after })
}

/// The opaque cursor of a listing position.
pub fn encode_cursor(position: &crate::ports::ListPosition) -> String {
    use base64::Engine;
    let raw = format!("{}.{}", position.created_at.as_millis(), position.task_id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<crate::ports::ListPosition, ValidationError> {
    use base64::Engine;
    let invalid = || ValidationError::Parameter("`cursor` is not a cursor this API returned".into());
    if cursor.len() > 128 {
        return Err(invalid());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (millis, task_id) = raw.split_once('.').ok_or_else(invalid)?;
    let millis = millis.parse::<i64>().ok().filter(|m| *m >= 0).ok_or_else(invalid)?;
    let task_id = crate::TaskId::parse(task_id).map_err(|_| invalid())?;
    Ok(crate::ports::ListPosition { created_at: crate::Timestamp::from_millis(millis), task_id })
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// An `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn parse_idempotency_key(raw: &str) -> Result<&str, ValidationError> {
    if raw.is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::Header(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(raw)
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ValidationError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ValidationError::EmptyBody);
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationError::TooLarge { field: "body", limit: MAX_BODY_BYTES });
    }
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ValidationError::Schema(describe(&error)),
        _ => ValidationError::MalformedJson(describe(&error)),
    })
}

/// What is wrong with a body that serde_json refused, in words that never quote the body.
///
/// A syntax or end-of-input message names what the parser expected and where, never the input.
/// A schema (data) message can quote what the caller sent — an unknown field's name, an unknown
/// `status`, a string given where an object belongs — so only its kind, what was expected and
/// where are kept: `unknown field, expected `payload` at line 1 column 20`. A missing or
/// repeated field is one of the schema's own names and is kept.
pub(crate) fn describe(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if error.classify() != serde_json::error::Category::Data
        || message.starts_with("missing field `")
        || message.starts_with("duplicate field `")
    {
        return message;
    }
    let kind = ["unknown field", "unknown variant", "invalid type", "invalid value", "invalid length"]
        .into_iter()
        .find(|kind| message.starts_with(kind))
        .unwrap_or("unexpected content");
    // What was expected comes last and is the schema's: the quoted input is before it.
    match message.rfind(", expected ") {
        Some(at) => format!("{kind}{}", &message[at..]),
        None => format!("{kind} at line {} column {}", error.line(), error.column()),
    }
}

fn ensure_size(field: &'static str, value: &Value, limit: usize) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(value).map(|bytes| bytes.len()).unwrap_or(usize::MAX);
    if size > limit { Err(ValidationError::TooLarge { field, limit }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::destination::MAX_URL_LEN;
    use serde_json::json;

    /// The rules in AWS, and in local runs (`make dev`).
    const AWS: Rules = Rules { allow_loopback: false };
    const LOCAL: Rules = Rules { allow_loopback: true };

    fn payload_of(body: &[u8]) -> Result<Value, ValidationError> {
        parse_submission(body, AWS).map(|submission| submission.payload)
    }

    #[test]
    fn a_submission_is_an_object_payload() {
        assert_eq!(payload_of(br#"{"payload":{"n":1}}"#), Ok(json!({"n": 1})));
        assert_eq!(payload_of(br#" {"payload":{}} "#), Ok(json!({})));
        assert_eq!(parse_submission(br#"{"payload":{}}"#, AWS).unwrap().run_at, None);
    }

    #[test]
    fn a_submission_must_be_json() {
        assert_eq!(parse_submission(b"", AWS), Err(ValidationError::EmptyBody));
        assert_eq!(parse_submission(b"  \n", AWS), Err(ValidationError::EmptyBody));
        assert!(matches!(parse_submission(b"{", AWS), Err(ValidationError::MalformedJson(_))));
        assert!(matches!(parse_submission(b"payload=1", AWS), Err(ValidationError::MalformedJson(_))));
    }

    #[test]
    fn a_submission_payload_must_be_an_object() {
        for body in [r#"{"payload":[1]}"#, r#"{"payload":"x"}"#, r#"{"payload":null}"#, r#"{"payload":3}"#] {
            assert!(matches!(parse_submission(body.as_bytes(), AWS), Err(ValidationError::Schema(_))), "{body}");
        }
    }

    #[test]
    fn a_submission_has_the_payload_field_and_maybe_run_at_and_webhook_url_and_nothing_else() {
        assert!(matches!(parse_submission(br#"{}"#, AWS), Err(ValidationError::Schema(m)) if m.contains("payload")));
        assert_eq!(
            parse_submission(br#"{"payload":{},"x":1}"#, AWS),
            Err(ValidationError::Schema(
                "unknown field, expected one of `payload`, `run_at`, `webhook_url` at line 1 column 17".into()
            ))
        );
        assert!(matches!(parse_submission(br#"[]"#, AWS), Err(ValidationError::Schema(_))));
    }

    /// The message is shown to the caller: it says what is wrong and where, never what was sent.
    #[test]
    fn error_messages_never_echo_the_input() {
        const SENT: &str = "<script>sent-by-caller</script>";
        let submissions = [
            format!(r#"{{"payload":{{}},"{SENT}":1}}"#),
            format!(r#""{SENT}""#),
            format!(r#"{{"payload":{{}},"payload":"{SENT}"}}"#),
            format!(r#"{{"{SENT}"}}"#),
            format!(r#"{{"payload":{{"a":"{SENT}}}"#),
        ];
        let callbacks = [
            format!(r#"{{"status":"{SENT}"}}"#),
            format!(r#"{{"status":"failed","error":"x","{SENT}":1}}"#),
            format!(r#"{{"status":"succeeded","result":1,"{SENT}":1}}"#),
            format!(r#"{{"status":"failed","error":["{SENT}"]}}"#),
            format!(r#"["{SENT}"]"#),
            format!(r#"{{"status":"failed","error":"x"}} "{SENT}""#),
        ];
        let errors = submissions.iter().map(|body| parse_submission(body.as_bytes(), AWS).unwrap_err());
        let errors = errors.chain(callbacks.iter().map(|body| parse_callback(body.as_bytes()).unwrap_err()));
        for error in errors {
            let message = error.to_string();
            assert!(!message.contains("sent-by-caller"), "{message}");
        }
        assert_eq!(
            parse_callback(format!(r#"{{"status":"{SENT}"}}"#).as_bytes()).unwrap_err().to_string(),
            "the request body does not match the schema: unknown variant, expected `succeeded` or `failed` \
             at line 1 column 43"
        );
    }

    #[test]
    fn a_payload_over_the_limit_is_refused() {
        let big = "a".repeat(MAX_PAYLOAD_BYTES);
        let body = serde_json::to_vec(&json!({"payload": {"s": big}})).unwrap();
        assert_eq!(
            parse_submission(&body, AWS),
            Err(ValidationError::TooLarge { field: "payload", limit: MAX_PAYLOAD_BYTES })
        );
        let fits = "a".repeat(MAX_PAYLOAD_BYTES - 10);
        let body = serde_json::to_vec(&json!({"payload": {"s": fits}})).unwrap();
        assert!(parse_submission(&body, AWS).is_ok());
    }

    #[test]
    fn a_submission_may_say_when_to_start_in_rfc3339() {
        let submission = parse_submission(br#"{"payload":{},"run_at":"2026-11-27T01:13:25.216+01:00"}"#, AWS).unwrap();
        assert_eq!(submission.run_at, Timestamp::parse_rfc3339("2026-11-27T00:13:25.216Z"));
        assert_eq!(parse_submission(br#"{"payload":{},"run_at":null}"#, AWS).unwrap().run_at, None);
        for bad in [r#""tomorrow""#, r#""2026-11-27""#, r#""2026-11-27T00:13:25""#, r#""""#] {
            let body = format!(r#"{{"payload":{{}},"run_at":{bad}}}"#);
            assert!(
                matches!(parse_submission(body.as_bytes(), AWS), Err(ValidationError::Schema(m)) if m.contains("run_at")),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_submission(br#"{"payload":{},"run_at":1764201387}"#, AWS),
            Err(ValidationError::Schema(_))
        ));
    }

    fn webhook_url_of(url: &str, rules: Rules) -> Result<Option<String>, ValidationError> {
        let body = serde_json::to_vec(&json!({"payload": {}, "webhook_url": url})).unwrap();
        parse_submission(&body, rules).map(|submission| submission.webhook_url)
    }

    fn refused_url(url: &str, rules: Rules) -> String {
        match webhook_url_of(url, rules) {
            Err(ValidationError::WebhookUrl(message)) => message,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn a_submission_may_name_a_webhook_url_kept_as_the_http_client_reads_it() {
        assert_eq!(
            webhook_url_of("https://Hooks.Example.com/done?x=1", AWS),
            Ok(Some("https://hooks.example.com/done?x=1".into()))
        );
        assert_eq!(parse_submission(br#"{"payload":{}}"#, AWS).unwrap().webhook_url, None);
        assert_eq!(parse_submission(br#"{"payload":{},"webhook_url":null}"#, AWS).unwrap().webhook_url, None);
    }

    #[test]
    fn a_webhook_url_must_be_a_string() {
        for bad in ["7", "{}", r#"["https://hooks.example.com/"]"#, "true"] {
            let body = format!(r#"{{"payload":{{}},"webhook_url":{bad}}}"#);
            assert!(matches!(parse_submission(body.as_bytes(), AWS), Err(ValidationError::Schema(_))), "{bad}");
        }
    }

    #[test]
    fn in_aws_a_webhook_url_is_https_to_a_public_host_and_anything_else_is_refused_with_the_reason() {
        assert_eq!(refused_url("http://hooks.example.com/", AWS), "`webhook_url` must use https");
        assert_eq!(refused_url("hooks.example.com/done", AWS), "`webhook_url` is not an absolute URL");
        assert_eq!(refused_url("", AWS), "`webhook_url` is not an absolute URL");
        assert_eq!(
            refused_url("https://u:p@hooks.example.com/", AWS),
            "`webhook_url` must not carry a user name or password"
        );
        assert_eq!(refused_url("https://localhost/", AWS), "`webhook_url` points at a local host name");
        assert_eq!(
            refused_url("https://169.254.169.254/latest/meta-data/", AWS),
            "`webhook_url` points at a non-public address (169.254.169.254)"
        );
        assert_eq!(refused_url("http://127.0.0.1:9000/hook", AWS), "`webhook_url` must use https");
    }

    #[test]
    fn a_webhook_url_is_at_most_max_url_len_characters() {
        let fits =
            format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN - "https://hooks.example.com/".len()));
        assert_eq!(fits.len(), MAX_URL_LEN);
        assert_eq!(webhook_url_of(&fits, AWS), Ok(Some(fits.clone())));
        let over = format!("{fits}a");
        assert_eq!(refused_url(&over, AWS), format!("`webhook_url` is longer than {MAX_URL_LEN} characters"));
    }

    #[test]
    fn local_runs_also_accept_loopback_receivers_over_http() {
        assert_eq!(webhook_url_of("http://127.0.0.1:9000/hook", LOCAL), Ok(Some("http://127.0.0.1:9000/hook".into())));
        assert_eq!(webhook_url_of("http://localhost:9000/hook", LOCAL), Ok(Some("http://localhost:9000/hook".into())));
        assert_eq!(refused_url("http://hooks.example.com/", LOCAL), "`webhook_url` must use https");
        assert!(refused_url("https://10.0.0.1/", LOCAL).contains("non-public"));
    }

    #[test]
    fn each_batch_item_may_name_its_own_webhook_url_and_a_bad_one_spoils_only_itself() {
        let items = parse_batch(
            br#"{"tasks":[
                {"payload":{},"webhook_url":"https://hooks.example.com/a"},
                {"payload":{},"webhook_url":"http://hooks.example.com/b"},
                {"payload":{}}
            ]}"#,
            AWS,
        )
        .unwrap();
        assert_eq!(items[0].as_ref().unwrap().submission.webhook_url.as_deref(), Some("https://hooks.example.com/a"));
        assert_eq!(items[1], Err(ValidationError::WebhookUrl("`webhook_url` must use https".into())));
        assert_eq!(items[2].as_ref().unwrap().submission.webhook_url, None);
    }

    #[test]
    fn run_at_may_be_at_most_seven_days_ahead_and_any_past_time_means_now() {
        let now = Timestamp::from_millis(1_764_201_387_123);
        let week = now.plus(MAX_RUN_AT_AHEAD);
        assert_eq!(MAX_RUN_AT_AHEAD.as_secs(), 604_800);
        for fine in [None, Some(now), Some(week), Some(Timestamp::from_millis(0)), Some(now.plus_seconds(10))] {
            assert_eq!(check_run_at(fine, now), Ok(()), "{fine:?}");
        }
        assert_eq!(
            check_run_at(Some(week.plus(std::time::Duration::from_millis(1))), now),
            Err(ValidationError::RunAtTooFar)
        );
        assert_eq!(check_run_at(Some(now.plus_seconds(365 * 86_400)), now), Err(ValidationError::RunAtTooFar));
    }

    #[test]
    fn a_batch_is_1_to_100_items_each_judged_on_its_own() {
        let items = parse_batch(
            br#"{"tasks":[
                {"payload":{"n":1}},
                {"payload":[1]},
                {"payload":{"n":3},"run_at":"2026-11-27T00:13:25Z","idempotency_key":"k-3"},
                {"payload":{},"extra":1},
                {"payload":{},"idempotency_key":"a b"},
                {"payload":{},"run_at":"soon"},
                7
            ]}"#,
            AWS,
        )
        .unwrap();
        assert_eq!(items.len(), 7);
        assert_eq!(
            items[0],
            Ok(BatchItem {
                submission: Submission { payload: json!({"n": 1}), run_at: None, webhook_url: None },
                idempotency_key: None
            })
        );
        assert_eq!(
            items[2],
            Ok(BatchItem {
                submission: Submission {
                    payload: json!({"n": 3}),
                    run_at: Timestamp::parse_rfc3339("2026-11-27T00:13:25Z"),
                    webhook_url: None,
                },
                idempotency_key: Some("k-3".into())
            })
        );
        for (index, mentions) in [(1, "payload"), (3, ""), (4, "idempotency_key"), (5, "run_at"), (6, "")] {
            assert!(
                matches!(&items[index], Err(ValidationError::Schema(m)) if m.contains(mentions)),
                "{index}: {:?}",
                items[index]
            );
        }
        let big = json!({"tasks": [{"payload": {"s": "a".repeat(MAX_PAYLOAD_BYTES)}}, {"payload": {}}]});
        let items = parse_batch(&serde_json::to_vec(&big).unwrap(), AWS).unwrap();
        assert_eq!(items[0], Err(ValidationError::TooLarge { field: "payload", limit: MAX_PAYLOAD_BYTES }));
        assert!(items[1].is_ok());
    }

    #[test]
    fn a_batch_that_is_not_a_list_of_1_to_100_tasks_is_refused_whole() {
        assert_eq!(parse_batch(b"", AWS), Err(ValidationError::EmptyBody));
        assert!(matches!(parse_batch(b"{", AWS), Err(ValidationError::MalformedJson(_))));
        for body in [
            r#"{}"#.to_owned(),
            r#"[]"#.to_owned(),
            r#"{"tasks":{}}"#.to_owned(),
            r#"{"tasks":[],"x":1}"#.to_owned(),
            r#"{"tasks":[]}"#.to_owned(),
            serde_json::to_string(&json!({"tasks": vec![json!({"payload": {}}); MAX_BATCH + 1]})).unwrap(),
        ] {
            assert!(matches!(parse_batch(body.as_bytes(), AWS), Err(ValidationError::Schema(_))), "{body:.60}");
        }
        let full = serde_json::to_vec(&json!({"tasks": vec![json!({"payload": {}}); MAX_BATCH]})).unwrap();
        assert_eq!(parse_batch(&full, AWS).unwrap().len(), MAX_BATCH);
        let mut huge = vec![b' '; MAX_BODY_BYTES + 1];
        huge[0] = b'{';
        assert_eq!(parse_batch(&huge, AWS), Err(ValidationError::TooLarge { field: "body", limit: MAX_BODY_BYTES }));
    }

    #[test]
    fn wait_is_0_to_20_whole_seconds() {
        use std::time::Duration;
        assert_eq!(parse_wait(None), Ok(Duration::ZERO));
        assert_eq!(parse_wait(Some("0")), Ok(Duration::ZERO));
        assert_eq!(parse_wait(Some("20")), Ok(Duration::from_secs(20)));
        assert_eq!(parse_wait(Some("07")), Ok(Duration::from_secs(7)));
        for bad in ["", "21", "-1", "+5", "1.5", "5s", "ten", " 5", "99999999999999999999999"] {
            assert!(
                matches!(parse_wait(Some(bad)), Err(ValidationError::Parameter(m)) if m.contains("wait")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let mut body = body;
        body[0] = b'{';
        assert_eq!(
            parse_submission(&body, AWS),
            Err(ValidationError::TooLarge { field: "body", limit: MAX_BODY_BYTES })
        );
    }

    #[test]
    fn a_list_query_defaults_and_limits() {
        let query = parse_list_query(None, None, None).unwrap();
        assert_eq!((query.status, query.limit, query.after), (None, DEFAULT_PAGE, None));
        let query = parse_list_query(Some("DONE"), Some("100"), None).unwrap();
        assert_eq!((query.status, query.limit), (Some(crate::TaskStatus::Done), 100));
        for limit in ["0", "101", "-1", "ten", ""] {
            assert!(parse_list_query(None, Some(limit), None).is_err(), "{limit}");
        }
        assert_eq!(parse_list_query(Some("done"), None, None), Err(ValidationError::UnknownStatus));
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let position = crate::ports::ListPosition {
            created_at: crate::Timestamp::from_millis(1_234),
            task_id: crate::TaskId::generate(),
        };
        let cursor = encode_cursor(&position);
        assert_eq!(parse_list_query(None, None, Some(&cursor)).unwrap().after, Some(position));
        for bad in [
            "",
            "x",
            "%%%",
            &"A".repeat(500),
            "MTIzNC5ub3QtYS11dWlk",
            "LTEuNmY5NjE5ZmYtOGI4Ni1kMDExLWI0MmQtMDBjMDRmYzk2NGZm",
        ] {
            assert!(parse_list_query(None, None, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        assert_eq!(parse_idempotency_key("order-42/retry#1"), Ok("order-42/retry#1"));
        for raw in ["", " ", "a b", "é", "a\n"] {
            assert!(parse_idempotency_key(raw).is_err(), "{raw:?}");
        }
        assert!(parse_idempotency_key(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).is_ok());
        assert!(parse_idempotency_key(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn a_success_callback_carries_a_result() {
        assert_eq!(
            parse_callback(br#"{"status":"succeeded","result":{"v":2}}"#),
            Ok(Outcome::Succeeded { result: crate::blob::Content::Inline(json!({"v": 2})) })
        );
        assert!(matches!(parse_callback(br#"{"status":"succeeded"}"#), Err(ValidationError::Schema(_))));
    }

    #[test]
    fn a_failure_callback_carries_a_non_empty_error() {
        assert_eq!(
            parse_callback(br#"{"status":"failed","error":"no capacity"}"#),
            Ok(Outcome::Failed { error: "no capacity".into() })
        );
        assert!(matches!(parse_callback(br#"{"status":"failed","error":" "}"#), Err(ValidationError::Schema(_))));
        assert!(matches!(parse_callback(br#"{"status":"failed","error":7}"#), Err(ValidationError::Schema(_))));
        let long = serde_json::to_vec(&json!({"status": "failed", "error": "e".repeat(MAX_ERROR_BYTES + 1)})).unwrap();
        assert_eq!(parse_callback(&long), Err(ValidationError::TooLarge { field: "error", limit: MAX_ERROR_BYTES }));
    }

    fn failed_with(error: &str) -> Result<Outcome, ValidationError> {
        parse_callback(&serde_json::to_vec(&json!({"status": "failed", "error": error})).unwrap())
    }

    #[test]
    fn the_error_limit_counts_bytes_of_utf8_not_characters() {
        // 513 characters, 1,026 bytes: over the documented 1,024 bytes.
        let over = "é".repeat(513);
        assert_eq!((over.chars().count(), over.len()), (513, 1_026));
        assert_eq!(failed_with(&over), Err(ValidationError::TooLarge { field: "error", limit: 1_024 }));
        // Exactly 1,024 bytes is accepted, in two-byte characters or in one-byte ones.
        for fits in ["é".repeat(512), "e".repeat(1_024)] {
            assert_eq!(fits.len(), 1_024);
            assert_eq!(failed_with(&fits), Ok(Outcome::Failed { error: fits.clone() }));
        }
        assert!(failed_with(&"e".repeat(1_025)).is_err());
    }

    #[test]
    fn the_limits_are_the_documented_numbers() {
        // README and openapi.yaml: payload 4 MiB (4096 KiB), result 4160 KiB, error 1 KiB,
        // request body 4224 KiB.
        assert_eq!(MAX_PAYLOAD_BYTES, 4_194_304);
        assert_eq!(MAX_RESULT_BYTES, 4_259_840);
        assert_eq!(MAX_ERROR_BYTES, 1_024);
        assert_eq!(MAX_BODY_BYTES, 4_325_376);
        assert_eq!((MAX_PAYLOAD_BYTES / 1024, MAX_RESULT_BYTES / 1024, MAX_BODY_BYTES / 1024), (4_096, 4_160, 4_224));
    }

    #[test]
    fn a_callback_status_must_be_known() {
        for body in [r#"{"status":"done","result":{}}"#, r#"{"status":"SUCCEEDED","result":{}}"#, r#"{"result":{}}"#] {
            assert!(matches!(parse_callback(body.as_bytes()), Err(ValidationError::Schema(_))), "{body}");
        }
    }

    #[test]
    fn a_result_over_the_limit_is_refused() {
        let body = serde_json::to_vec(&json!({"status": "succeeded", "result": "r".repeat(MAX_RESULT_BYTES)})).unwrap();
        assert_eq!(parse_callback(&body), Err(ValidationError::TooLarge { field: "result", limit: MAX_RESULT_BYTES }));
    }
}
