//! Validation of what clients and the external service send. Payloads and results may be as
//! large as a Lambda invocation carries (6 MB, the request's JSON escaped inside the event):
//! large ones are kept in the blob store, so a task item stays under DynamoDB's 400 KB (the
//! worst case, with the largest inline limit a deployment may set, is ~286 KB: see
//! [`crate::blob::MAX_INLINE_MAX_BYTES`]).

use serde::Deserialize;
use serde_json::Value;

use crate::error::ValidationError;
use crate::lifecycle::Outcome;

/// Largest accepted `payload`, serialized (compact JSON bytes).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Largest accepted `result`, serialized (compact JSON bytes): room for a service that hands a
/// whole payload back inside an envelope of its own.
pub const MAX_RESULT_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;
/// Longest accepted `error` text, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Largest accepted request body on any route (payload or result plus envelope and whitespace).
pub const MAX_BODY_BYTES: usize = MAX_RESULT_BYTES + 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    payload: Value,
}

/// Parses `POST /tasks`: `{"payload": <JSON object>}`. Returns the payload.
pub fn parse_submission(body: &[u8]) -> Result<Value, ValidationError> {
    let submission: Submission = parse_json(body)?;
    if !submission.payload.is_object() {
        return Err(ValidationError::Schema("`payload` must be a JSON object".into()));
    }
    ensure_size("payload", &submission.payload, MAX_PAYLOAD_BYTES)?;
    Ok(submission.payload)
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
    use serde_json::json;

    #[test]
    fn a_submission_is_an_object_payload() {
        assert_eq!(parse_submission(br#"{"payload":{"n":1}}"#), Ok(json!({"n": 1})));
        assert_eq!(parse_submission(br#" {"payload":{}} "#), Ok(json!({})));
    }

    #[test]
    fn a_submission_must_be_json() {
        assert_eq!(parse_submission(b""), Err(ValidationError::EmptyBody));
        assert_eq!(parse_submission(b"  \n"), Err(ValidationError::EmptyBody));
        assert!(matches!(parse_submission(b"{"), Err(ValidationError::MalformedJson(_))));
        assert!(matches!(parse_submission(b"payload=1"), Err(ValidationError::MalformedJson(_))));
    }

    #[test]
    fn a_submission_payload_must_be_an_object() {
        for body in [r#"{"payload":[1]}"#, r#"{"payload":"x"}"#, r#"{"payload":null}"#, r#"{"payload":3}"#] {
            assert!(matches!(parse_submission(body.as_bytes()), Err(ValidationError::Schema(_))), "{body}");
        }
    }

    #[test]
    fn a_submission_has_exactly_the_payload_field() {
        assert!(matches!(parse_submission(br#"{}"#), Err(ValidationError::Schema(m)) if m.contains("payload")));
        assert_eq!(
            parse_submission(br#"{"payload":{},"x":1}"#),
            Err(ValidationError::Schema("unknown field, expected `payload` at line 1 column 17".into()))
        );
        assert!(matches!(parse_submission(br#"[]"#), Err(ValidationError::Schema(_))));
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
        let errors = submissions.iter().map(|body| parse_submission(body.as_bytes()).unwrap_err());
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
            parse_submission(&body),
            Err(ValidationError::TooLarge { field: "payload", limit: MAX_PAYLOAD_BYTES })
        );
        let fits = "a".repeat(MAX_PAYLOAD_BYTES - 10);
        let body = serde_json::to_vec(&json!({"payload": {"s": fits}})).unwrap();
        assert!(parse_submission(&body).is_ok());
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let mut body = body;
        body[0] = b'{';
        assert_eq!(parse_submission(&body), Err(ValidationError::TooLarge { field: "body", limit: MAX_BODY_BYTES }));
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
