//! The HTTP front: what API Gateway's HTTP API does in AWS. It matches a route, turns the request
//! into a payload-format-2.0 event for the route's function, and turns the function's answer back
//! into an HTTP response. It publishes what API Gateway and Lambda would: `AWS/ApiGateway`
//! Count, 4xx, 5xx, Latency (every request, unmatched routes too) and IntegrationLatency, and
//! the functions' `AWS/Lambda` metrics ([`crate::aws_metrics`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use base64::Engine;
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use serde_json::json;

use crate::aws_metrics::AwsMetrics;
use crate::events::{self, HttpRequest};
use crate::functions::{Functions, HttpFunction};
use crate::local_names::Function;

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
    Route { method: "POST", path: "/webhook-secret", function: HttpFunction::Ingest },
    Route { method: "POST", path: "/callbacks/{task_id}", function: HttpFunction::Webhook },
    Route { method: "POST", path: "/callbacks/{task_id}/heartbeat", function: HttpFunction::Webhook },
];

/// API Gateway HTTP APIs refuse bodies over 10 MB before any function runs.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone)]
struct Shared {
    functions: Arc<Functions>,
    metrics: Arc<AwsMetrics>,
}

pub fn router(functions: Arc<Functions>, metrics: Arc<AwsMetrics>) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Shared>> = BTreeMap::new();
    for route in ROUTES {
        let filter = match Method::from_bytes(route.method.as_bytes()).map(MethodFilter::try_from) {
            Ok(Ok(filter)) => filter,
            _ => continue,
        };
        let handler = move |State(shared): State<Shared>,
                            ConnectInfo(peer): ConnectInfo<SocketAddr>,
                            parameters: Option<Path<HashMap<String, String>>>,
                            request: Request| async move {
            let parameters = parameters.map(|Path(p)| p).unwrap_or_default();
            invoke(&shared, route, parameters, peer, request).await
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
        .layer(middleware::from_fn_with_state(metrics.clone(), measure))
        .with_state(Shared { functions, metrics })
}

/// API Gateway's request metrics: every request the HTTP API answers.
async fn measure(State(metrics): State<Arc<AwsMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.api_request(response.status().as_u16(), started.elapsed());
    response
}

async fn invoke(
    shared: &Shared,
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
    let function = match route.function {
        HttpFunction::Ingest => Function::Ingest,
        HttpFunction::Status => Function::Status,
        HttpFunction::Webhook => Function::Webhook,
    };
    let integration = Instant::now();
    let answer =
        shared.metrics.invoke(function, shared.functions.invoke_http(route.function, event, &request_id)).await;
    shared.metrics.integration_latency(integration.elapsed());
    let mut response = match answer {
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
