//! The one mapping from failures to HTTP answers: `{"error":{"code":"…","message":"…"}}`.

use std::future::Future;
use std::time::Duration;

use lambda_http::http::header::RETRY_AFTER;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::json;
use taskfleet_core::completion::client_secret::NoEntropy;
use taskfleet_core::completion::rotation::RotateError;
use taskfleet_core::{StoreError, ValidationError};
use thiserror::Error;

use crate::response::json;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("a valid x-api-key header is required")]
    Unauthorized,
    #[error("no such task")]
    NotFound,
    #[error("no such route")]
    NoRoute,
    #[error("the body must be sent as application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Conflict(String),
    #[error("this Idempotency-Key was already used with a different payload")]
    IdempotencyConflict,
    /// The key's record is alive but the task it created expired (or may have been deleted):
    /// the task is not created again.
    #[error("the task this Idempotency-Key created has expired; use a new key")]
    IdempotencyTaskGone,
    #[error("this callback belongs to an attempt that is no longer current; it was ignored")]
    StaleAttempt,
    #[error("the callback URL's attempt and token do not match this task")]
    InvalidCallbackToken,
    #[error("{0}")]
    InvalidSignature(taskfleet_core::signing::SignatureError),
    /// A `webhook_url` was given but the client has no completion-webhook secret to sign with.
    #[error("this client has no webhook secret yet; call POST /webhook-secret first, then submit again")]
    WebhookSecretMissing,
    /// The `webhook_url`'s host could not be resolved now (the resolver failed, not the name).
    #[error("the webhook_url's host could not be resolved now; retry later")]
    WebhookHostUnresolved,
    /// No randomness for a new secret.
    #[error(transparent)]
    Entropy(#[from] NoEntropy),
    #[error("the task store is unavailable; retry later")]
    Store(#[from] StoreError),
}

impl From<RotateError> for ApiError {
    fn from(error: RotateError) -> Self {
        match error {
            RotateError::Conflict => Self::Conflict(error.to_string()),
            RotateError::Entropy(e) => Self::Entropy(e),
            RotateError::Store(e) => Self::Store(e),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::InvalidCallbackToken | Self::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Self::IdempotencyConflict | Self::IdempotencyTaskGone | Self::StaleAttempt => StatusCode::CONFLICT,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(ValidationError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) | Self::WebhookSecretMissing => StatusCode::CONFLICT,
            Self::Store(StoreError::Corrupt(_) | StoreError::AlreadyExists) | Self::Entropy(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Store(StoreError::Unavailable(_)) | Self::WebhookHostUnresolved => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::NoRoute => "no_route",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Invalid(ValidationError::InvalidTaskId) => "invalid_task_id",
            Self::Invalid(ValidationError::TooLarge { .. }) => "too_large",
            Self::Invalid(ValidationError::EmptyBody | ValidationError::MalformedJson(_)) => "malformed_json",
            Self::Invalid(ValidationError::RunAtTooFar) => "run_at_too_far",
            Self::Invalid(ValidationError::WebhookUrl(_)) => "invalid_webhook_url",
            Self::Invalid(_) => "invalid_request",
            Self::Conflict(_) => "conflict",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::IdempotencyTaskGone => "idempotency_task_gone",
            Self::StaleAttempt => "stale_attempt",
            Self::InvalidCallbackToken => "invalid_callback_token",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::WebhookSecretMissing => "webhook_secret_missing",
            Self::WebhookHostUnresolved => "webhook_host_unresolved",
            Self::Store(StoreError::Unavailable(_)) => "unavailable",
            Self::Store(_) | Self::Entropy(_) => "internal",
        }
    }

    /// The answer the caller gets. Server-side failures are logged here, once, without the
    /// request's content; the caller gets a generic message.
    pub fn into_response(self) -> Response<Body> {
        let (status, body) = self.logged("request");
        let mut answer = json(status, &body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            answer.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        answer
    }

    /// The result of one item of a batch that failed: the body [`Self::into_response`] would
    /// answer for it alone, `{"error":{"code","message"}}`, logged the same way.
    pub fn into_item(self) -> serde_json::Value {
        self.logged("batch item").1
    }

    /// The status and body of this error, logged once (`what` failed or was refused).
    fn logged(&self, what: &str) -> (StatusCode, serde_json::Value) {
        let status = self.status();
        let message = match self {
            Self::Store(StoreError::Unavailable(_)) => self.to_string(),
            Self::Store(_) | Self::Entropy(_) => "internal error".to_owned(),
            _ => self.to_string(),
        };
        if status.is_server_error() {
            tracing::error!(error = %self, code = self.code(), "{what} failed");
        } else {
            tracing::info!(code = self.code(), status = status.as_u16(), "{what} refused");
        }
        (status, json!({"error": {"code": self.code(), "message": message}}))
    }
}

/// Seconds a 503 asks the caller to wait before retrying (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Longest an API function works on one request: below its 10 s Lambda timeout, so a request
/// whose storage calls are slow (each ends within the SDK's operation timeout, but a request
/// makes several) still gets the JSON 503 rather than API Gateway's own 503.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(8);

/// `answer`, or a JSON 503 `unavailable` if it is not ready within `deadline`. A request cut
/// short may have written part of its work; every write is conditional and every answer
/// repeatable, so the client retries it as it would any 503.
pub async fn within(deadline: Duration, answer: impl Future<Output = Response<Body>>) -> Response<Body> {
    match tokio::time::timeout(deadline, answer).await {
        Ok(answer) => answer,
        Err(_) => {
            let timeout = format!("no answer within {} ms", deadline.as_millis());
            ApiError::Store(StoreError::Unavailable(timeout)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(error: ApiError) -> (u16, serde_json::Value) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        (status, body)
    }

    #[test]
    fn every_error_answers_json_with_code_and_message() {
        let (status, body) = answer(ApiError::Unauthorized);
        assert_eq!(status, 401);
        assert_eq!(body, json!({"error": {"code": "unauthorized", "message": "a valid x-api-key header is required"}}));
    }

    #[test]
    fn statuses_follow_the_kind_of_failure() {
        assert_eq!(answer(ApiError::NotFound).0, 404);
        assert_eq!(answer(ApiError::UnsupportedMediaType).0, 415);
        assert_eq!(answer(ApiError::Invalid(ValidationError::EmptyBody)).0, 400);
        assert_eq!(answer(ApiError::Invalid(ValidationError::TooLarge { field: "payload", limit: 1 })).0, 413);
        assert_eq!(answer(ApiError::Conflict("x".into())).0, 409);
        assert_eq!(answer(ApiError::Store(StoreError::Unavailable("down".into()))).0, 503);
    }

    #[test]
    fn a_batch_items_error_is_the_body_its_request_alone_would_get() {
        for error in [
            || ApiError::Invalid(ValidationError::RunAtTooFar),
            || ApiError::IdempotencyConflict,
            || ApiError::Store(StoreError::Unavailable("dynamodb at 10.0.0.1 said no".into())),
            || ApiError::Store(StoreError::Corrupt("task item TASK#x: bad payload".into())),
        ] {
            assert_eq!(error().into_item(), answer(error()).1);
        }
    }

    #[test]
    fn a_run_at_too_far_ahead_has_a_code_of_its_own() {
        let (status, body) = answer(ApiError::Invalid(ValidationError::RunAtTooFar));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "run_at_too_far");
        assert!(body["error"]["message"].as_str().unwrap().contains("7 days"));
    }

    #[test]
    fn completion_webhook_refusals_have_codes_of_their_own() {
        let refused = ApiError::Invalid(ValidationError::WebhookUrl("`webhook_url` must use https".into()));
        assert_eq!(
            answer(refused),
            (400, json!({"error": {"code": "invalid_webhook_url", "message": "`webhook_url` must use https"}}))
        );
        let (status, body) = answer(ApiError::WebhookSecretMissing);
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("webhook_secret_missing")));
        assert!(body["error"]["message"].as_str().unwrap().contains("POST /webhook-secret"));
        let unresolved = ApiError::WebhookHostUnresolved.into_response();
        assert_eq!(unresolved.status().as_u16(), 503);
        assert!(unresolved.headers().contains_key("retry-after"));
    }

    #[test]
    fn a_rotation_that_lost_a_race_is_a_conflict_and_a_store_failure_is_unavailable() {
        let (status, body) = answer(RotateError::Conflict.into());
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));
        assert!(body["error"]["message"].as_str().unwrap().contains("try again"));
        assert_eq!(answer(RotateError::Store(StoreError::Unavailable("down".into())).into()).0, 503);
    }

    #[test]
    fn unavailable_answers_json_503_with_retry_after() {
        let response = ApiError::Store(StoreError::Unavailable("throttled".into())).into_response();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(answer(ApiError::NotFound).0, 404);
        assert_eq!(ApiError::NotFound.into_response().headers().get("retry-after"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_answers_json_503() {
        let started = tokio::time::Instant::now();
        let response = within(REQUEST_DEADLINE, std::future::pending()).await;
        assert_eq!(started.elapsed(), REQUEST_DEADLINE);
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "unavailable", "message": "the task store is unavailable; retry later"}})
        );
        let quick = within(REQUEST_DEADLINE, async { ApiError::NotFound.into_response() }).await;
        assert_eq!(quick.status().as_u16(), 404);
    }

    #[test]
    fn internal_details_are_not_shown_to_the_caller() {
        let (status, body) = answer(ApiError::Store(StoreError::Corrupt("task item TASK#x: bad payload".into())));
        assert_eq!(status, 500);
        assert_eq!(body["error"]["message"], "internal error");
        let (_, body) = answer(ApiError::Store(StoreError::Unavailable("dynamodb at 10.0.0.1 said no".into())));
        assert!(!body.to_string().contains("10.0.0.1"));
    }
}
