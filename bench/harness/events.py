"""The events Lambda hands each function, in the shapes of aws_lambda_events' fixtures (the same
ones functions/*/src/tests.rs use): API Gateway HTTP API 2.0, DynamoDB stream, SQS (the jobs
queue's event source, what the Rust caller reads), SNS (what the Python baseline's caller, of the
design before the jobs queue, reads), EventBridge."""

import hashlib
import json
import time
import uuid

ACCOUNT = "123456789012"
REGION = "us-east-1"


def api_gateway_v2(method, route_key, path, headers=None, body=None, path_parameters=None):
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "host": "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com",
            "user-agent": "bench/1.0",
            "x-amzn-trace-id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
            "x-forwarded-for": "1.2.3.4",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "aaaaaaaaaa",
            "domainName": "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "aaaaaaaaaa",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "1.2.3.4",
                "userAgent": "bench/1.0",
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


def post_task(api_key, payload):
    body = json.dumps({"payload": payload})
    headers = {"x-api-key": api_key, "content-type": "application/json"}
    return api_gateway_v2("POST", "POST /tasks", "/tasks", headers, body)


def get_task(api_key, task_id):
    return api_gateway_v2(
        "GET", "GET /tasks/{task_id}", f"/tasks/{task_id}", {"x-api-key": api_key}, None, {"task_id": task_id}
    )


def callback(task_id, outcome):
    path = f"/callbacks/{task_id}"
    body = json.dumps(outcome)
    headers = {"content-type": "application/json", "user-agent": "external-service/1.0"}
    return api_gateway_v2("POST", "POST /callbacks/{task_id}", path, headers, body, {"task_id": task_id})


def stream_insert(item, table="bench-tasks"):
    """One INSERT record of a new item, as the DynamoDB event source mapping delivers it."""
    return _stream_record("INSERT", item, None, table)


def stream_modify(new, old, table="bench-tasks"):
    """One MODIFY record: `old` became `new`."""
    return _stream_record("MODIFY", new, old, table)


def _stream_record(name, new, old, table):
    sequence = str(10**24 + int(time.time() * 1000))
    change = {
        "ApproximateCreationDateTime": int(time.time()),
        "Keys": {"pk": new["pk"]},
        "NewImage": new,
        "SequenceNumber": sequence,
        "SizeBytes": len(json.dumps(new)) + (len(json.dumps(old)) if old else 0),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old:
        change["OldImage"] = old
    return {
        "Records": [
            {
                "eventID": uuid.uuid4().hex,
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": change,
                "eventSourceARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/2026-01-01T00:00:00.000",
            }
        ]
    }


def sns(topic_arn, message):
    """One SNS notification as Lambda's SNS subscription delivers it."""
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": topic_arn,
                    "Subject": None,
                    "Message": json.dumps(message),
                    "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def sqs(queue_arn, messages):
    """A batch of the jobs queue as Lambda's SQS event source delivers it: `messages` are
    (body dict, message group) pairs; the attributes the caller reads (MessageGroupId) included."""
    now = str(int(time.time() * 1000))
    records = []
    for body, group in messages:
        text = json.dumps(body, separators=(",", ":"))
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                      "ApproximateFirstReceiveTimestamp": now}
        if group:
            attributes["MessageGroupId"] = group
        records.append({
            "messageId": str(uuid.uuid4()),
            "receiptHandle": uuid.uuid4().hex,
            "body": text,
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        })
    return {"Records": records}


def scheduled(rule="taskfleet-metrics"):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }
