//! The JSON AWS hands a Lambda, built from what the emulator returns. Every function in the local
//! fleet receives its event through this JSON and the same `aws_lambda_events` deserialization
//! as in AWS, so a shape mismatch fails here, not in production.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
use base64::Engine;
use serde_json::{Map, Value, json};

/// Account id the emulator uses in ARNs.
pub const ACCOUNT: &str = "123456789012";

/// A DynamoDB stream record as Lambda's event source mapping delivers it.
pub fn dynamodb_record(record: &Record, stream_arn: &str, region: &str) -> Value {
    let image = |item: Option<&HashMap<String, AttributeValue>>| {
        item.map(|item| serde_json::to_value(serde_dynamo::Item::from(item.clone())).unwrap_or(Value::Null))
    };
    let change = record.dynamodb.as_ref();
    let mut dynamodb = Map::new();
    if let Some(at) = change.and_then(|c| c.approximate_creation_date_time) {
        dynamodb.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
    }
    for (name, item) in [
        ("Keys", change.and_then(|c| c.keys.as_ref())),
        ("NewImage", change.and_then(|c| c.new_image.as_ref())),
        ("OldImage", change.and_then(|c| c.old_image.as_ref())),
    ] {
        if let Some(value) = image(item) {
            dynamodb.insert(name.into(), value);
        }
    }
    dynamodb.insert("SequenceNumber".into(), json!(change.and_then(|c| c.sequence_number.as_deref())));
    dynamodb.insert("SizeBytes".into(), json!(change.and_then(|c| c.size_bytes).unwrap_or(0)));
    dynamodb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
    json!({
        "eventID": record.event_id.as_deref().unwrap_or_default(),
        "eventName": record.event_name.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": record.event_version.as_deref().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// A batch of stream records as one Lambda event.
pub fn dynamodb_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// The SQS event Lambda's event source mapping hands the caller for a batch of received
/// messages (as `aws_lambda_events::event::sqs::SqsEvent` reads it).
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            let attributes: serde_json::Map<String, Value> = message
                .attributes
                .iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
                .collect();
            json!({
                "messageId": message.message_id.clone().unwrap_or_default(),
                "receiptHandle": message.receipt_handle.clone().unwrap_or_default(),
                "body": message.body.clone().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body.clone().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The event EventBridge Scheduler sends a scheduled rule's target.
pub fn scheduled_event(rule: &str, region: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{ACCOUNT}:rule/{rule}")],
        "detail": {}
    })
}

/// What the HTTP front knows about one request.
pub struct HttpRequest<'a> {
    pub route_key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a axum::http::HeaderMap,
    pub path_parameters: &'a HashMap<String, String>,
    pub body: &'a [u8],
    pub source_ip: &'a str,
    pub request_id: &'a str,
}

/// An API Gateway HTTP API (payload format 2.0) event, as API Gateway builds it: header names
/// lower-cased and repeated headers joined with commas, cookies apart, query parameters decoded,
/// text bodies as they are and anything else base64-encoded.
pub fn api_gateway_v2(request: &HttpRequest<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in request.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == axum::http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let mut query = Map::new();
    for (name, value) in form_urlencoded::parse(request.raw_query.as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let (body, is_base64) = match std::str::from_utf8(request.body) {
        _ if request.body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(base64::engine::general_purpose::STANDARD.encode(request.body)), true),
    };
    let now = chrono::Utc::now();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_else(|| json!(""));
    let mut event = json!({
        "version": "2.0",
        "routeKey": request.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
            },
            "requestId": request.request_id,
            "routeKey": request.route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": is_base64,
    });
    if let Some(object) = event.as_object_mut() {
        if !cookies.is_empty() {
            object.insert("cookies".into(), json!(cookies));
        }
        if !query.is_empty() {
            object.insert("queryStringParameters".into(), Value::Object(query.clone()));
        }
        if !request.path_parameters.is_empty() {
            object.insert("pathParameters".into(), json!(request.path_parameters));
        }
        if !body.is_null() {
            object.insert("body".into(), body.clone());
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
    use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    use aws_lambda_events::event::sqs::SqsEvent;

    use super::*;

    #[test]
    fn an_http_request_becomes_an_api_gateway_v2_event() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("X-Api-Key", "k".parse().unwrap());
        headers.append("accept", "a".parse().unwrap());
        headers.append("accept", "b".parse().unwrap());
        headers.insert("cookie", "x=1; y=2".parse().unwrap());
        let parameters = HashMap::from([("task_id".to_owned(), "t1".to_owned())]);
        let event = api_gateway_v2(&HttpRequest {
            route_key: "GET /tasks/{task_id}",
            method: "GET",
            path: "/tasks/t1",
            raw_query: "a=1&a=2&b=%20x",
            headers: &headers,
            path_parameters: &parameters,
            body: b"",
            source_ip: "127.0.0.1",
            request_id: "req-1",
        });
        let parsed: ApiGatewayV2httpRequest = serde_json::from_value(event).unwrap();
        assert_eq!(parsed.route_key.as_deref(), Some("GET /tasks/{task_id}"));
        assert_eq!(parsed.headers.get("x-api-key").unwrap(), "k");
        assert_eq!(parsed.headers.get("accept").unwrap(), "a,b");
        assert_eq!(parsed.cookies, Some(vec!["x=1".to_owned(), "y=2".to_owned()]));
        assert_eq!(parsed.path_parameters.get("task_id").map(String::as_str), Some("t1"));
        assert_eq!(parsed.query_string_parameters.all("a"), Some(vec!["1", "2"]));
        assert_eq!(parsed.query_string_parameters.first("b"), Some(" x"));
        assert_eq!(parsed.request_context.http.method, axum::http::Method::GET);
        assert_eq!(parsed.body, None);
    }

    #[test]
    fn a_binary_body_is_base64_encoded() {
        let event = api_gateway_v2(&HttpRequest {
            route_key: "POST /tasks",
            method: "POST",
            path: "/tasks",
            raw_query: "",
            headers: &axum::http::HeaderMap::new(),
            path_parameters: &HashMap::new(),
            body: &[0xff, 0x00],
            source_ip: "127.0.0.1",
            request_id: "req-2",
        });
        let parsed: ApiGatewayV2httpRequest = serde_json::from_value(event).unwrap();
        assert!(parsed.is_base64_encoded);
        assert_eq!(parsed.body.as_deref(), Some("/wA="));
    }

    #[test]
    fn received_messages_become_an_sqs_event_with_their_message_group() {
        use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{\"task_id\":\"x\"}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "acme")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .build();
        let event: SqsEvent =
            serde_json::from_value(sqs_event(&[message], "arn:aws:sqs:us-east-1:1:jobs", "us-east-1")).unwrap();
        let record = &event.records[0];
        assert_eq!(record.message_id.as_deref(), Some("m-1"));
        assert_eq!(record.receipt_handle.as_deref(), Some("r-1"));
        assert_eq!(record.body.as_deref(), Some("{\"task_id\":\"x\"}"));
        assert_eq!(record.attributes.get("MessageGroupId").map(String::as_str), Some("acme"));
        assert_eq!(record.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("2"));
        assert_eq!(record.event_source_arn.as_deref(), Some("arn:aws:sqs:us-east-1:1:jobs"));
    }

    #[test]
    fn a_schedule_tick_is_an_eventbridge_scheduled_event() {
        let event: EventBridgeEvent = serde_json::from_value(scheduled_event("metrics", "us-east-1")).unwrap();
        assert_eq!(event.detail_type, "Scheduled Event");
        assert_eq!(event.source, "aws.events");
    }
}
