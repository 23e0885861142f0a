"""A counting HTTP proxy in front of the emulator: every AWS API call the fleet makes passes
through it and is counted by service and operation — `X-Amz-Target` for the JSON protocols
(DynamoDB, DynamoDB Streams, SQS), `Action=` for the query protocols (SNS, CloudWatch), the method
and path for S3's REST protocol (PutObject, GetObject, ...). For DynamoDB reads it also sums
`ScannedCount` (items the call read and pays for) and `Count`; failed calls are counted by error
type too (a conditional write whose condition failed is billed by DynamoDB all the same)."""

import collections
import json
import re
import threading
import urllib.parse

from http_io import Client, Server, encode

# Not forwarded: the proxy reads the whole request first (so `expect: 100-continue` is answered
# here, by http_io) and writes each message with its own Content-Length.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "expect"}
SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def classify(message):
    """(service, operation) of one AWS request."""
    target = message.headers.get("x-amz-target")
    scope = SCOPE.search(message.headers.get("authorization", ""))
    service = scope.group(1) if scope else "unknown"
    if target:
        prefix, _, operation = target.partition(".")
        if prefix.startswith("DynamoDBStreams"):
            service = "dynamodbstreams"
        elif prefix.startswith("DynamoDB"):
            service = "dynamodb"
        return service, operation
    if service == "s3":
        return service, s3_operation(message)
    form = urllib.parse.parse_qs(message.body.decode("utf-8", "replace")) if message.body else {}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(message.target).query)
    action = (form.get("Action") or query.get("Action") or ["?"])[0]
    return service, action


def s3_operation(message):
    """The S3 REST operation of a request, from its method, path and query (path-style addressing,
    which an endpoint on 127.0.0.1 implies; a virtual-hosted request names its bucket in Host)."""
    parts = urllib.parse.urlsplit(message.target)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    host = message.headers.get("host", "").split(":")[0]
    path = parts.path.strip("/")
    virtual = bool(host) and not re.fullmatch(r"[0-9.]+|localhost|s3[.-].*", host)
    has_key = bool(path) if virtual else "/" in path
    method = message.method
    if method == "PUT":
        if not has_key:
            return "CreateBucket" if not query else "PutBucketConfiguration"
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in message.headers else "PutObject"
    if method == "GET":
        return "GetObject" if has_key else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "PostObject"
    return method


def error_type(body):
    """The short error type of a failed AWS JSON answer (`__type`), or `?`."""
    try:
        kind = json.loads(body or b"{}").get("__type", "?")
    except (ValueError, AttributeError):
        return "?"
    return kind.rsplit("#", 1)[-1]


class CountingProxy:
    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.calls = collections.Counter()
        self.scanned = collections.Counter()
        self.returned = collections.Counter()
        self.errors = collections.Counter()  # (service, operation, error type)
        # GetRecords answers that carried records: each is one dispatcher invocation in AWS.
        self.stream_batches = 0
        self.local = threading.local()
        self.server = Server(self._handle)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def _client(self):
        if not hasattr(self.local, "client"):
            self.local.client = Client(*self.upstream, timeout=60)
        return self.local.client

    def _handle(self, message, sock):
        key = classify(message)
        # The request's own Host goes on as the one Host header (the client would add a second:
        # S3 reads the bucket from it, and two confuse the emulator).
        headers = {("Host" if k == "host" else k): v for k, v in message.headers.items() if k not in HOP_BY_HOP}
        answer = self._client().request(message.method, message.target, message.body, headers)
        scanned = returned = batch = 0
        if key == ("dynamodbstreams", "GetRecords"):
            try:
                batch = 1 if json.loads(answer.body or b"{}").get("Records") else 0
            except ValueError:
                pass
        if key[0] == "dynamodb" and key[1] in ("Query", "Scan", "GetItem"):
            try:
                body = json.loads(answer.body or b"{}")
                if key[1] == "GetItem":
                    scanned = returned = 1 if body.get("Item") else 0
                else:
                    scanned, returned = body.get("ScannedCount", 0), body.get("Count", 0)
            except ValueError:
                pass
        with self.lock:
            self.calls[key] += 1
            self.scanned[key] += scanned
            self.returned[key] += returned
            self.stream_batches += batch
            if answer.status >= 400:
                self.errors[key + (error_type(answer.body),)] += 1
        relay = {k: v for k, v in answer.headers.items() if k not in HOP_BY_HOP}
        sock.sendall(encode(answer.start, relay, answer.body))

    def snapshot(self):
        with self.lock:
            return {
                "calls": dict(self.calls),
                "scanned": dict(self.scanned),
                "returned": dict(self.returned),
                "errors": dict(self.errors),
                "stream_batches": self.stream_batches,
            }

    def close(self):
        self.server.close()


def delta(after, before):
    """What happened between two snapshots."""
    return {
        part: {k: v - before.get(part, {}).get(k, 0) for k, v in after.get(part, {}).items()
               if v - before.get(part, {}).get(k, 0)}
        for part in ("calls", "scanned", "returned", "errors")
    }
