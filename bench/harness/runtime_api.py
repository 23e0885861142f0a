"""A local Lambda Runtime API (2018-06-01): what the Lambda service offers a function process.

The function process polls `GET /runtime/invocation/next`, gets one event, and posts the answer to
`/runtime/invocation/{id}/response` (or `/error`). The emulator timestamps those requests, which
is all a cold-start or warm measurement needs: spawn -> first /next is "ready" (init done),
spawn -> response posted is the cold invocation.
"""

import json
import queue
import threading
import time
import uuid

from http_io import Server, respond

PREFIX = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:{name}"


class Outcome:
    def __init__(self, kind, body, served_at, posted_at):
        self.kind = kind  # "response" or "error"
        self.body = body
        self.served_at = served_at  # perf_counter when the event was handed out
        self.posted_at = posted_at  # perf_counter when the answer arrived

    def json(self):
        return json.loads(self.body) if self.body else None


class RuntimeApi:
    def __init__(self, function_name="bench"):
        self.function_name = function_name
        self.lock = threading.Condition()
        self.generation = 0
        self.connections = {}  # id(socket) -> the generation (sandbox) that opened it
        self.reset()
        self.server = Server(self._handle, on_connect=self._connected)
        self.address = f"127.0.0.1:{self.server.port}"

    def reset(self):
        """Forget everything: a new sandbox (call before spawning a process)."""
        with self.lock:
            self.generation += 1
            self.events = queue.Queue()
            self.ready_at = None
            self.init_error = None
            self.served = {}
            self.outcomes = {}

    def submit(self, event):
        """Queues one event; answers its request id."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, json.dumps(event).encode()))
        return request_id

    def wait(self, request_id, timeout):
        """The outcome of one invocation, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while request_id not in self.outcomes:
                left = deadline - time.monotonic()
                if left <= 0 or self.init_error is not None:
                    return None
                self.lock.wait(left)
            return self.outcomes.pop(request_id)

    def invoke(self, event, timeout=30):
        return self.wait(self.submit(event), timeout)

    def _connected(self, sock):
        with self.lock:
            self.connections[id(sock)] = self.generation

    def _handle(self, message, sock):
        now = time.perf_counter()
        path = message.target
        with self.lock:
            stale = self.connections.get(id(sock)) != self.generation
        if stale:
            # A request of a process from an earlier sandbox (say its next GET /next, read only
            # after the process was killed and the emulator reset): it must not take the new
            # sandbox's event. Dropping the connection ends it.
            raise ConnectionError("connection of an earlier sandbox")
        if message.method == "GET" and path == f"{PREFIX}/invocation/next":
            with self.lock:
                if self.ready_at is None:
                    self.ready_at = now
            events = self.events
            while True:
                try:
                    request_id, body = events.get(timeout=1)
                    break
                except queue.Empty:
                    # The process this request came from belongs to an older sandbox (reset
                    # since) or the emulator is closing: stop waiting for it.
                    if self.server.closed or events is not self.events:
                        return
            deadline_ms = int(time.time() * 1000) + 30_000
            headers = {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": ARN.format(name=self.function_name),
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
            }
            with self.lock:
                self.served[request_id] = time.perf_counter()
            respond(sock, 200, body, headers)
        elif message.method == "POST" and path.startswith(f"{PREFIX}/invocation/"):
            request_id, _, kind = path[len(f"{PREFIX}/invocation/"):].partition("/")
            with self.lock:
                served = self.served.pop(request_id, now)
                self.outcomes[request_id] = Outcome(kind, message.body, served, now)
                self.lock.notify_all()
            respond(sock, 202, b'{"status":"OK"}')
        elif message.method == "POST" and path == f"{PREFIX}/init/error":
            with self.lock:
                self.init_error = message.body.decode(errors="replace")
                self.lock.notify_all()
            respond(sock, 202, b'{"status":"OK"}')
        else:
            respond(sock, 404, b'{"errorType":"NotFound"}')

    def close(self):
        self.server.close()
