//! The HTTP front: what API Gateway's HTTP API does in AWS. It matches a route, turns the request
//! into a payload-format-2.0 event for the route's function, and turns the function's answer back
//! into an HTTP response.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use base64::Engine;
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use serde_json::json;

use crate::events::{self, HttpRequest};
use crate::functions::{Functions, HttpFunction};

/// One route of the HTTP API, in API Gateway's route-key syntax.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub function: HttpFunction,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The HTTP API. serverless.yml declares the same routes (a test keeps the two equal).
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/tasks", function: HttpFunction::Ingest },
    Route { method: "POST", path: "/tasks/batch", function: HttpFunction::Ingest },
    Route { method: "GET", path: "/tasks", function: HttpFunction::Status },
    Route { method: "GET", path: "/tasks/{task_id}", function: HttpFunction::Status },
    Route { method: "DELETE", path: "/tasks/{task_id}", function: HttpFunction::Ingest },
    Route { method: "POST", path: "/tasks/{task_id}/retry", function: HttpFunction::Ingest },
    Route { method: "POST", path: "/callbacks/{task_id}", function: HttpFunction::Webhook },
    Route { method: "POST", path: "/callbacks/{task_id}/heartbeat", function: HttpFunction::Webhook },
];

/// API Gateway HTTP APIs refuse bodies over 10 MB before any function runs.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

type Shared = Arc<Functions>;

pub fn router(functions: Shared) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Shared>> = BTreeMap::new();
    for route in ROUTES {
        let filter = match Method::from_bytes(route.method.as_bytes()).map(MethodFilter::try_from) {
            Ok(Ok(filter)) => filter,
            _ => continue,
        };
        let handler = move |State(functions): State<Shared>,
                            ConnectInfo(peer): ConnectInfo<SocketAddr>,
                            parameters: Option<Path<HashMap<String, String>>>,
                            request: Request| async move {
            let parameters = parameters.map(|Path(p)| p).unwrap_or_default();
            invoke(&functions, route, parameters, peer, request).await
        };
        let methods = by_path.remove(route.path).unwrap_or_default();
        by_path.insert(route.path, methods.merge(on(filter, handler)));
    }
    let router = by_path.into_iter().fold(Router::new(), |router, (path, methods)| router.route(path, methods));
    // API Gateway answers an unmatched route, wrong method included, with its own 404.
    let not_found = || async { (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found"}))) };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(functions)
}

async fn invoke(
    functions: &Functions,
    route: &'static Route,
    parameters: HashMap<String, String>,
    peer: SocketAddr,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(json!({"message": "Request Entity Too Large"})))
            .into_response();
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let route_key = route.key();
    let event = events::api_gateway_v2(&HttpRequest {
        route_key: &route_key,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        path_parameters: &parameters,
        body: &body,
        source_ip: &peer.ip().to_string(),
        request_id: &request_id,
    });
    let mut response = match functions.invoke_http(route.function, event, &request_id).await {
        Ok(answer) => http_response(answer),
        Err(error) => {
            tracing::error!(route = %route_key, %error, "integration failed");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"message": "Internal Server Error"}))).into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HeaderName::from_static("apigw-requestid"), value);
    }
    response
}

fn http_response(answer: aws_lambda_events::event::apigw::ApiGatewayV2httpResponse) -> Response {
    let status = u16::try_from(answer.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = match answer.body {
        Some(LambdaBody::Text(text)) if answer.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
        }
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in answer.headers.iter().chain(answer.multi_value_headers.iter()) {
        response.headers_mut().append(name.clone(), value.clone());
    }
    for cookie in answer.cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(axum::http::header::SET_COOKIE, value);
        }
    }
    response
}
