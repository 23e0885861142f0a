"""A counting HTTP proxy in front of the emulator: every AWS API call the fleet makes passes
through it and is counted by service and operation — `X-Amz-Target` for the JSON protocols
(DynamoDB, DynamoDB Streams, SQS), `Action=` for the query protocols (SNS, CloudWatch), the method
and path for S3's REST protocol (PutObject, GetObject, ...). For DynamoDB reads it also sums
`ScannedCount` (items the call read and pays for) and `Count`; failed calls are counted by error
type too (a conditional write whose condition failed is billed by DynamoDB all the same).

The jobs queue: a ReceiveMessage answer that carries messages is one caller invocation (the local
event source invokes the caller once per batch it receives), counted with its messages by the
timer step they ask for (`start`, `deadline`); SendMessageBatch entries are counted by step too.
With `trace_queue` on, every such answer and every DeleteMessage(Batch) request is kept with its
time and receipt handles, so timers.py can tell when each invocation began (batch received) and
ended (its messages deleted), and which tasks' timers it held."""

import collections
import json
import re
import threading
import time
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


def _json(body):
    try:
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}


def _step(text):
    """The timer step a message body asks for (`start`, `deadline`), or `?`."""
    return _body(text).get("step", "?")


def _body(text):
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def received(answer_body):
    """(receipt handles, {step: messages}, task ids) of a ReceiveMessage answer (SQS's JSON
    protocol)."""
    messages = _json(answer_body).get("Messages") or []
    bodies = [_body(m.get("Body")) for m in messages]
    steps = collections.Counter(b.get("step", "?") for b in bodies)
    return [m.get("ReceiptHandle") for m in messages], dict(steps), [b.get("task_id") for b in bodies]


def deleted(request_body):
    """The receipt handles a DeleteMessage or DeleteMessageBatch request names."""
    body = _json(request_body)
    if "Entries" in body:
        return [e.get("ReceiptHandle") for e in body["Entries"] or []]
    return [body["ReceiptHandle"]] if body.get("ReceiptHandle") else []


def sent(request_body):
    """{step: messages} of a SendMessage or SendMessageBatch request."""
    body = _json(request_body)
    entries = body.get("Entries") if "Entries" in body else [body]
    return dict(collections.Counter(_step(e.get("MessageBody")) for e in entries or [] if e))


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
        # ReceiveMessage answers that carried messages: each is one caller invocation.
        self.queue_batches = 0
        self.queue_received = collections.Counter()  # step -> messages received
        self.queue_sent = collections.Counter()  # step -> messages sent
        self.trace_queue = False
        self.queue_trace = []  # see the module
        # With `trace_waits` on: (arrived, answered) of every call, for `waited`.
        self.trace_waits = False
        self.waits = []  # ("receive" | "delete", perf_counter, handles, steps, task ids)
        self.local = threading.local()
        self.server = Server(self._handle)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def _client(self):
        if not hasattr(self.local, "client"):
            self.local.client = Client(*self.upstream, timeout=60)
        return self.local.client

    def _handle(self, message, sock):
        key = classify(message)
        arrived = time.perf_counter()
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
        queue = None
        if key[0] == "sqs" and answer.status < 400:
            if key[1] == "ReceiveMessage":
                handles, steps, tasks = received(answer.body)
                if handles:
                    queue = ("receive", time.perf_counter(), handles, steps, tasks)
            elif key[1] in ("DeleteMessage", "DeleteMessageBatch"):
                queue = ("delete", arrived, deleted(message.body), {}, [])
            elif key[1] in ("SendMessage", "SendMessageBatch"):
                queue = ("send", arrived, [], sent(message.body), [])
        with self.lock:
            self.calls[key] += 1
            self.scanned[key] += scanned
            self.returned[key] += returned
            self.stream_batches += batch
            if queue and queue[0] == "receive":
                self.queue_batches += 1
                self.queue_received.update(queue[3])
            elif queue and queue[0] == "send":
                self.queue_sent.update(queue[3])
            if queue and queue[0] != "send" and self.trace_queue:
                self.queue_trace.append(queue)
            if answer.status >= 400:
                self.errors[key + (error_type(answer.body),)] += 1
        relay = {k: v for k, v in answer.headers.items() if k not in HOP_BY_HOP}
        if self.trace_waits:
            with self.lock:
                self.waits.append((arrived, time.perf_counter()))
        sock.sendall(encode(answer.start, relay, answer.body))

    def waited(self, start, end):
        """Seconds between `start` and `end` (perf_counter) during which at least one call was
        waiting on the emulator (overlapping calls count once)."""
        with self.lock:
            spans = sorted((max(a, start), min(b, end)) for a, b in self.waits if b > start and a < end)
        return _union(spans)

    def snapshot(self):
        with self.lock:
            return {
                "calls": dict(self.calls),
                "scanned": dict(self.scanned),
                "returned": dict(self.returned),
                "errors": dict(self.errors),
                "stream_batches": self.stream_batches,
                "queue_batches": self.queue_batches,
                "queue_received": dict(self.queue_received),
                "queue_sent": dict(self.queue_sent),
            }

    def close(self):
        self.server.close()


def _union(spans):
    """Total length of sorted (start, end) spans, overlaps counted once."""
    total, reach = 0.0, None
    for start, end in spans:
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def delta(after, before):
    """What happened between two snapshots."""
    change = {
        part: {k: v - before.get(part, {}).get(k, 0) for k, v in after.get(part, {}).items()
               if v - before.get(part, {}).get(k, 0)}
        for part in ("calls", "scanned", "returned", "errors", "queue_received", "queue_sent")
    }
    for count in ("stream_batches", "queue_batches"):
        change[count] = after.get(count, 0) - before.get(count, 0)
    return change
