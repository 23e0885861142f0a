"""A counting HTTP proxy in front of the emulator: every AWS API call the fleet makes passes
through it and is counted by service and operation — `X-Amz-Target` for the JSON protocols
(DynamoDB, DynamoDB Streams, SQS), `Action=` for the query protocols (SNS, CloudWatch). For
DynamoDB reads it also sums `ScannedCount` (items the call read and pays for) and `Count`."""

import collections
import json
import re
import threading
import urllib.parse

from http_io import Client, Server, encode

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
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
    form = urllib.parse.parse_qs(message.body.decode("utf-8", "replace")) if message.body else {}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(message.target).query)
    action = (form.get("Action") or query.get("Action") or ["?"])[0]
    return service, action


class CountingProxy:
    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.calls = collections.Counter()
        self.scanned = collections.Counter()
        self.returned = collections.Counter()
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
        headers = {k: v for k, v in message.headers.items() if k not in HOP_BY_HOP}
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
        relay = {k: v for k, v in answer.headers.items() if k not in HOP_BY_HOP}
        sock.sendall(encode(answer.start, relay, answer.body))

    def snapshot(self):
        with self.lock:
            return {
                "calls": dict(self.calls),
                "scanned": dict(self.scanned),
                "returned": dict(self.returned),
                "stream_batches": self.stream_batches,
            }

    def close(self):
        self.server.close()


def delta(after, before):
    """What happened between two snapshots."""
    return {
        part: {k: v - before[part].get(k, 0) for k, v in after[part].items() if v - before[part].get(k, 0)}
        for part in ("calls", "scanned", "returned")
    }
