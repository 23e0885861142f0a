//! Reading requests: the caller's client, path parameters, JSON bodies.

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use taskfleet_core::auth::KeyAuthenticator;
use taskfleet_core::signing::{self, SignatureError, Signed, SigningSecrets};
use taskfleet_core::trace::{self, TraceId};
use taskfleet_core::{ClientId, TaskId, Timestamp, token};

use crate::error::ApiError;

/// The header carrying a client's API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The client whose key the request carries.
pub async fn client(request: &Request, keys: &impl KeyAuthenticator) -> Result<ClientId, ApiError> {
    let presented = request.headers().get(API_KEY_HEADER).and_then(|value| value.to_str().ok());
    let Some(presented) = presented else { return Err(ApiError::Unauthorized) };
    keys.client_for_key(presented).await?.ok_or(ApiError::Unauthorized)
}

/// The `{task_id}` path parameter.
pub fn task_id(request: &Request) -> Result<TaskId, ApiError> {
    let parameters = request.path_parameters();
    let raw = parameters.first("task_id").ok_or(ApiError::NoRoute)?;
    Ok(TaskId::parse(raw)?)
}

/// The route API Gateway matched, e.g. `DELETE /tasks/{task_id}`: functions serving several
/// routes dispatch on it, exactly as API Gateway routed the request.
pub fn route_key(request: &Request) -> Option<String> {
    #[allow(unreachable_patterns)]
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.route_key.clone(),
        _ => None,
    }
}

/// A query string parameter.
pub fn query(request: &Request, name: &str) -> Option<String> {
    request.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

/// The `attempt` and `token` a callback URL carries. Absent or malformed ones (an attempt that is
/// not a number from 1, a token not shaped like the fleet's) are refused as unauthenticated,
/// before the signature, the body or the store are looked at: they are the callback's
/// credentials.
pub fn callback_credentials(request: &Request) -> Result<(u32, String), ApiError> {
    let attempt = query(request, "attempt").and_then(|a| a.parse::<u32>().ok()).filter(|&a| a > 0);
    let token = query(request, "token").filter(|token| token::is_well_formed(token));
    match (attempt, token) {
        (Some(attempt), Some(token)) => Ok((attempt, token)),
        _ => Err(ApiError::InvalidCallbackToken),
    }
}

/// Checks the Standard Webhooks headers against the request's body.
pub fn verify_signature(request: &Request, secrets: &SigningSecrets, now: Timestamp) -> Result<(), ApiError> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let signed = match (header(signing::ID), header(signing::TIMESTAMP), header(signing::SIGNATURE)) {
        (Some(id), Some(timestamp), Some(signature)) => Signed { id, timestamp, signature },
        _ => return Err(ApiError::InvalidSignature(SignatureError::Missing)),
    };
    secrets.verify(&signed, raw_body(request), now).map_err(ApiError::InvalidSignature)
}

fn raw_body(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// The trace the request's `traceparent` header names, if it is one valid W3C trace context.
pub fn parent_trace(request: &Request) -> Option<TraceId> {
    let headers = request.headers().get_all(trace::TRACEPARENT);
    trace::parent_of(headers.iter().map(|value| value.to_str().unwrap_or("")))
}

/// The trace the request belongs to: the one [`parent_trace`] names, otherwise a new trace.
pub fn trace(request: &Request) -> TraceId {
    parent_trace(request).unwrap_or_else(TraceId::generate)
}

/// The body of a JSON request. Anything but `application/json` (parameters allowed) is refused.
pub fn json_body(request: &Request) -> Result<&[u8], ApiError> {
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(raw_body(request))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lambda_http::http::Request as HttpRequest;

    use super::*;

    const KEY: &str = "0123456789abcdef-key";

    fn request(headers: &[(&str, &str)], body: Body) -> Request {
        let mut builder = HttpRequest::builder().method("POST").uri("/tasks");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body).unwrap()
    }

    #[tokio::test]
    async fn the_api_key_names_the_client() {
        let keys = taskfleet_core::auth::fixed::FixedKeys::parse(&format!("alpha:{KEY}")).unwrap();
        let found = client(&request(&[("x-api-key", KEY)], Body::Empty), &keys).await.unwrap();
        assert_eq!(found.as_str(), "alpha");
        assert!(matches!(client(&request(&[], Body::Empty), &keys).await, Err(ApiError::Unauthorized)));
        let wrong = request(&[("x-api-key", "nope")], Body::Empty);
        assert!(matches!(client(&wrong, &keys).await, Err(ApiError::Unauthorized)));
    }

    #[test]
    fn only_json_bodies_are_read() {
        let ok = request(&[("content-type", "application/json; charset=utf-8")], Body::Text("{}".into()));
        assert_eq!(json_body(&ok).unwrap(), b"{}");
        let upper = request(&[("content-type", "Application/JSON")], Body::Binary(b"{}".to_vec()));
        assert_eq!(json_body(&upper).unwrap(), b"{}");
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
            let wrong = request(&[("content-type", content_type)], Body::Text("{}".into()));
            assert!(matches!(json_body(&wrong), Err(ApiError::UnsupportedMediaType)), "{content_type}");
        }
        assert!(matches!(json_body(&request(&[], Body::Text("{}".into()))), Err(ApiError::UnsupportedMediaType)));
    }

    #[test]
    fn a_valid_traceparent_names_the_trace_and_anything_else_starts_one() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace(&request(&[("traceparent", valid)], Body::Empty)).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for headers in [
            vec![],
            vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")],
            vec![("traceparent", valid), ("traceparent", valid)],
        ] {
            let started = trace(&request(&headers, Body::Empty));
            assert_ne!(started.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736", "{headers:?}");
            assert!(TraceId::parse(started.as_str()).is_some());
        }
    }

    #[test]
    fn the_task_id_comes_from_the_path_parameters() {
        let id = TaskId::generate();
        let with = |value: &str| {
            request(&[], Body::Empty).with_path_parameters(HashMap::from([("task_id".to_owned(), value.to_owned())]))
        };
        assert_eq!(task_id(&with(id.as_str())).unwrap(), id);
        assert!(matches!(task_id(&with("nope")), Err(ApiError::Invalid(_))));
        assert!(matches!(task_id(&request(&[], Body::Empty)), Err(ApiError::NoRoute)));
    }
}
