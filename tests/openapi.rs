//! `openapi.yaml` describes exactly the routes the HTTP API serves, and the limits the code
//! enforces. (What each route answers is checked against the spec by `scripts/check-api.sh`,
//! which runs schemathesis against a local fleet.)
//!
//! The spec is read with a small line-based scan rather than a YAML parser: under `paths:`, a
//! path is a key indented two spaces and an operation a method key indented four spaces.

use std::collections::BTreeSet;

use taskfleet_core::completion::destination::MAX_URL_LEN;
use taskfleet_core::validation::{
    MAX_BATCH, MAX_BODY_BYTES, MAX_ERROR_BYTES, MAX_IDEMPOTENCY_KEY_LEN, MAX_PAYLOAD_BYTES, MAX_RESULT_BYTES,
    MAX_RUN_AT_AHEAD, MAX_WAIT_SECONDS,
};
use taskfleet_localfleet::front::ROUTES;

const SPEC: &str = include_str!("../openapi.yaml");

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Every `METHOD /path` under `paths:`, in the order the spec lists them.
fn spec_operations(spec: &str) -> Vec<String> {
    let mut operations = Vec::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in spec.lines() {
        let content = line.trim_end();
        if content.trim_start().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        if indent == 0 {
            in_paths = content == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        let Some(key) = content.trim_start().strip_suffix(':') else { continue };
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        match indent {
            2 => path = Some(key.to_owned()),
            4 if METHODS.contains(&key) => {
                let path = path.as_deref().unwrap_or_else(|| panic!("operation `{key}` outside a path"));
                operations.push(format!("{} {path}", key.to_uppercase()));
            }
            _ => {}
        }
    }
    operations
}

#[test]
fn the_scan_finds_paths_and_methods_and_nothing_else() {
    let spec = "openapi: 3.0.3\npaths:\n  /a:\n    parameters:\n      - x\n    get:\n      responses: {}\n  \"/b/{id}\":\n    post:\n      description: |\n        get:\n    delete:\ncomponents:\n  /c:\n    get:\n";
    assert_eq!(spec_operations(spec), ["GET /a", "POST /b/{id}", "DELETE /b/{id}"]);
}

#[test]
fn the_spec_describes_exactly_the_routes_of_the_http_api() {
    let operations = spec_operations(SPEC);
    let documented: BTreeSet<String> = operations.iter().cloned().collect();
    assert_eq!(documented.len(), operations.len(), "an operation is listed twice: {operations:?}");
    let served: BTreeSet<String> = ROUTES.iter().map(|route| route.key()).collect();
    let undocumented: Vec<&String> = served.difference(&documented).collect();
    let not_served: Vec<&String> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "openapi.yaml and front::ROUTES disagree\n  served but not in openapi.yaml: {undocumented:?}\n  \
         in openapi.yaml but not served: {not_served:?}"
    );
}

#[test]
fn the_spec_states_the_limits_the_code_enforces() {
    let kib = |bytes: usize| {
        assert_eq!(bytes % 1024, 0, "limits are whole KiB");
        bytes / 1024
    };
    for expected in [
        format!("| request body | {} KiB |", kib(MAX_BODY_BYTES)),
        format!("| `payload` (compact JSON) | {} KiB |", kib(MAX_PAYLOAD_BYTES)),
        format!("| `result` (compact JSON) | {} KiB |", kib(MAX_RESULT_BYTES)),
        format!("| `error` text | {} KiB (bytes of UTF-8) |", kib(MAX_ERROR_BYTES)),
        format!("| `Idempotency-Key` | 1–{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters |"),
        format!("maxLength: {MAX_ERROR_BYTES}\n"),
        format!("maxLength: {MAX_IDEMPOTENCY_KEY_LEN}\n"),
        format!("{{1,{MAX_IDEMPOTENCY_KEY_LEN}}}$"),
        format!("| `run_at` | at most {} days ahead | 400 `run_at_too_far` |", MAX_RUN_AT_AHEAD.as_secs() / 86_400),
        format!("| tasks in one `POST /tasks/batch` | 1–{MAX_BATCH} | 400 `invalid_request` |"),
        format!(
            "| `webhook_url` | at most {MAX_URL_LEN} characters, `https` to a public host | 400 `invalid_webhook_url` |"
        ),
        format!("      format: uri\n      maxLength: {MAX_URL_LEN}\n"),
        format!("| `wait` of `GET /tasks/{{task_id}}` | 0–{MAX_WAIT_SECONDS} whole seconds | 400 `invalid_request` |"),
        format!("          minItems: 1\n          maxItems: {MAX_BATCH}\n"),
        format!("        minimum: 0\n        maximum: {MAX_WAIT_SECONDS}\n"),
    ] {
        assert!(SPEC.contains(&expected), "openapi.yaml does not say {expected:?}");
    }
}

#[test]
fn the_spec_lists_the_completion_webhook_error_codes_where_they_are_answered() {
    use taskfleet_api::ApiError;
    use taskfleet_core::ValidationError;
    let codes = [
        (ApiError::Invalid(ValidationError::WebhookUrl(String::new())), "ErrorSubmissionInvalid"),
        (ApiError::WebhookSecretMissing, "ErrorSubmissionConflict"),
        (ApiError::WebhookHostUnresolved, "ErrorSubmissionUnavailable"),
    ];
    for (error, schema) in codes {
        let code = error.code();
        assert!(SPEC.contains(&format!("                - {code}\n")), "the Error schema's enum lacks {code}");
        assert!(SPEC.contains(&format!("                    - {code}\n")), "ErrorBatchItem lacks {code}");
        let narrowed = SPEC.split(&format!("    {schema}:\n")).nth(1).expect(schema);
        let narrowed = &narrowed[..narrowed.find("\n    Error").unwrap_or(narrowed.len())];
        assert!(narrowed.contains(code), "{schema} lacks {code}");
    }
}
