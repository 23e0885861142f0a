//! JSON answers.

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// A JSON answer with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body)
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
