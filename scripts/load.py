"""`make load`: a game day's traffic against a running `make dev` (scripts/load.sh).

A few clients submit tasks at a steady rate, poll them, cancel some and send a few bad requests,
while the example external service is made to fail, slow down or lose callbacks for a window
of the run (through its POST /_chaos, so no restart). Alarm transitions of the local fleet
(GET /_local/alarms) are printed as they happen, and a summary at the end. Bounded in time and
in tasks; loopback addresses only; the service's behaviour is put back as it was at the end,
also on Ctrl-C. Standard library only.

Settings (environment; defaults in brackets):
  TASKFLEET_URL               the local API [http://127.0.0.1:$PORT, PORT 3000]
  TASKFLEET_DEV_KEY           the client key [make dev's development key]
  EXAMPLE_SERVICE_URL         the example service [http://127.0.0.1:$EXAMPLE_SERVICE_PORT, 3001]
  LOAD_SECONDS                how long to run [120; at most 3600]
  LOAD_TASKS                  the most tasks to submit [2000; at most 100000]
  LOAD_RATE                   submits per second, all clients together [2; at most 200]
  LOAD_CLIENTS                concurrent clients [4; at most 32]
  LOAD_FAIL_PAYLOAD_RATIO     tasks whose payload asks the service to report failure [0.02]
  LOAD_CANCEL_RATIO           submitted tasks cancelled by their client [0.02]
  LOAD_BAD_RATIO              bad requests (malformed JSON, no key, unknown task) [0.05]
  The failure, during the window:
  LOAD_REFUSE_RATIO           jobs the service refuses (503) [0]
  LOAD_SLOW_RATIO, LOAD_SLOW_MS  jobs answered late, and how late [0, 2000]
  LOAD_ANSWER_AFTER_MS        every job answered this late [0]
  LOAD_DROP_CALLBACK_RATIO    jobs accepted and never called back [0]
  LOAD_FAIL_AFTER             seconds into the run when the failure starts [0]
  LOAD_FAIL_FOR               seconds it lasts [until the end]
"""

import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter, deque

DEV_KEY = "tfk_devlocal_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def setting(name, default, low, high, kind=float):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        sys.exit(f"load: {name}={raw!r} is not a number")
    if not low <= value <= high:
        sys.exit(f"load: {name} must be between {low} and {high}, not {value}")
    return value


def loopback(name, url):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or parsed.hostname not in LOOPBACK or not parsed.port:
        sys.exit(f"load: {name}={url!r}: only http://127.0.0.1:PORT (loopback) is driven")
    return parsed.hostname, parsed.port


class Http:
    """One keep-alive connection per thread."""

    def __init__(self, address):
        self.address = address
        self.connection = None

    def call(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(*self.address, timeout=30)
                self.connection.request(method, path, body=body, headers=headers or {})
                answer = self.connection.getresponse()
                data = answer.read()
                return answer.status, data
            except (http.client.HTTPException, OSError):
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                if attempt:
                    return None, b""
        return None, b""


class Run:
    def __init__(self):
        port = os.environ.get("PORT", "3000")
        service_port = os.environ.get("EXAMPLE_SERVICE_PORT", "3001")
        self.api = loopback("TASKFLEET_URL", os.environ.get("TASKFLEET_URL", f"http://127.0.0.1:{port}"))
        self.service = loopback(
            "EXAMPLE_SERVICE_URL", os.environ.get("EXAMPLE_SERVICE_URL", f"http://127.0.0.1:{service_port}")
        )
        self.key = os.environ.get("TASKFLEET_DEV_KEY") or DEV_KEY
        self.seconds = setting("LOAD_SECONDS", 120, 1, 3600)
        self.tasks = setting("LOAD_TASKS", 2000, 1, 100000, int)
        self.rate = setting("LOAD_RATE", 2, 0.1, 200)
        self.clients = setting("LOAD_CLIENTS", 4, 1, 32, int)
        self.fail_payload = setting("LOAD_FAIL_PAYLOAD_RATIO", 0.02, 0, 1)
        self.cancel = setting("LOAD_CANCEL_RATIO", 0.02, 0, 1)
        self.bad = setting("LOAD_BAD_RATIO", 0.05, 0, 1)
        self.failure = {
            "refuse": setting("LOAD_REFUSE_RATIO", 0, 0, 1),
            "slow": setting("LOAD_SLOW_RATIO", 0, 0, 1),
            "slow_ms": setting("LOAD_SLOW_MS", 2000, 0, 600000, int),
            "answer_after_ms": setting("LOAD_ANSWER_AFTER_MS", 0, 0, 600000, int),
            "drop_callback": setting("LOAD_DROP_CALLBACK_RATIO", 0, 0, 1),
        }
        self.fail_after = setting("LOAD_FAIL_AFTER", 0, 0, 3600)
        self.fail_for = setting("LOAD_FAIL_FOR", self.seconds, 0, 3600)
        self.failing = any(self.failure[k] for k in ("refuse", "slow", "answer_after_ms", "drop_callback"))
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = Counter()
        self.submitted = 0
        self.ids = deque(maxlen=500)
        self.transitions = []
        self.started = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def note(self, message):
        print(f"{time.strftime('%H:%M:%S')} +{self.elapsed():5.0f}s  {message}", flush=True)

    def count(self, what, status):
        with self.lock:
            self.counts[(what, status)] += 1

    def take_task(self):
        with self.lock:
            if self.submitted >= self.tasks:
                return None
            self.submitted += 1
            return self.submitted

    # The clients.

    def client(self, number):
        http_ = Http(self.api)
        pace = self.clients / self.rate
        key = {"x-api-key": self.key}
        json_key = {**key, "content-type": "application/json"}
        next_at = time.monotonic() + random.random() * pace
        while not self.stop.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += pace
            if self.stop.is_set():
                break
            if random.random() < self.bad:
                self.bad_request(http_, json_key)
                continue
            n = self.take_task()
            if n is None:
                self.stop.set()
                break
            payload = {"n": n, "client": number}
            if random.random() < self.fail_payload:
                payload = {"fail": "the service reports this task failed (load)"}
            status, body = http_.call("POST", "/tasks", json.dumps({"payload": payload}), json_key)
            self.count("submit", status)
            task_id = None
            if status in (200, 202):
                try:
                    task_id = json.loads(body)["task_id"]
                except (ValueError, KeyError):
                    pass
            if task_id:
                with self.lock:
                    self.ids.append(task_id)
                if random.random() < self.cancel:
                    status, _ = http_.call("DELETE", f"/tasks/{task_id}", headers=key)
                    self.count("cancel", status)
            with self.lock:
                earlier = random.choice(self.ids) if self.ids else None
            if earlier:
                status, _ = http_.call("GET", f"/tasks/{earlier}", headers=key)
                self.count("poll", status)

    def bad_request(self, http_, json_key):
        kind = random.choice(["malformed", "no key", "unknown task", "not an object"])
        if kind == "malformed":
            status, _ = http_.call("POST", "/tasks", "{not json", json_key)
        elif kind == "no key":
            status, _ = http_.call("POST", "/tasks", json.dumps({"payload": {}}), {"content-type": "application/json"})
        elif kind == "unknown task":
            status, _ = http_.call("GET", "/tasks/00000000-0000-4000-8000-000000000000", headers=json_key)
        else:
            status, _ = http_.call("POST", "/tasks", json.dumps({"payload": 1}), json_key)
        self.count(f"bad ({kind})", status)

    # The service's failure window.

    def chaos(self, change):
        status, body = Http(self.service).call(
            "POST", "/_chaos", json.dumps(change), {"content-type": "application/json"}
        )
        if status != 200:
            raise RuntimeError(f"POST /_chaos answered {status}: {body[:200]!r}")
        return json.loads(body)

    def current_chaos(self):
        status, body = Http(self.service).call("GET", "/_chaos")
        if status != 200:
            return None
        return json.loads(body)

    # The alarms.

    def watch_alarms(self):
        http_ = Http(self.api)
        states = {}
        while not self.stop.wait(2.0):
            status, body = http_.call("GET", "/_local/alarms")
            if status != 200:
                continue
            for alarm in json.loads(body):
                name, state = alarm["name"], alarm["state"]
                before = states.get(name)
                states[name] = state
                if before is not None and before != state:
                    self.transitions.append((round(self.elapsed()), name, before, state))
                    self.note(f"{name}: {before} -> {state}  ({alarm['reason']})")
        self.final_states = states

    def run(self):
        self.final_states = {}
        status, _ = Http(self.api).call("GET", "/_local/alarms")
        if status != 200:
            sys.exit(f"load: no local fleet at http://{self.api[0]}:{self.api[1]} (start `make dev` first)")
        original = self.current_chaos()
        if self.failing and original is None:
            sys.exit(f"load: no example service at http://{self.service[0]}:{self.service[1]} to make fail")
        self.note(
            f"{self.clients} clients, {self.rate}/s, for {self.seconds:.0f} s or {self.tasks} tasks"
            + (
                f"; failure {json.dumps({k: v for k, v in self.failure.items() if v})}"
                f" from +{self.fail_after:.0f}s for {self.fail_for:.0f}s"
                if self.failing
                else "; no failure"
            )
        )
        watcher = threading.Thread(target=self.watch_alarms, daemon=True)
        watcher.start()
        clients = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in clients:
            thread.start()
        failure_on = False
        try:
            while not self.stop.is_set() and self.elapsed() < self.seconds:
                t = self.elapsed()
                want = self.failing and self.fail_after <= t < self.fail_after + self.fail_for
                if want and not failure_on:
                    self.chaos(self.failure)
                    failure_on = True
                    self.note("external service failing")
                elif failure_on and not want:
                    self.chaos(original)
                    failure_on = False
                    self.note("external service recovered")
                self.stop.wait(0.5)
        finally:
            self.stop.set()
            if original is not None and failure_on:
                self.chaos(original)
                self.note("external service put back as it was")
            for thread in clients:
                thread.join(timeout=35)
            watcher.join(timeout=5)
        self.summary()

    def summary(self):
        print(f"\n{self.submitted} tasks submitted in {self.elapsed():.0f} s")
        by_kind = {}
        for (what, status), n in sorted(self.counts.items(), key=lambda x: (x[0][0], str(x[0][1]))):
            by_kind.setdefault(what, []).append(f"{status or 'no answer'}: {n}")
        for what, parts in by_kind.items():
            print(f"  {what:24} {', '.join(parts)}")
        print(f"alarm transitions: {len(self.transitions)}")
        for at, name, before, state in self.transitions:
            print(f"  +{at:4d}s  {name}: {before} -> {state}")
        firing = sorted(name for name, state in self.final_states.items() if state == "ALARM")
        print(f"in ALARM now: {', '.join(firing) if firing else 'none'}")


def main():
    run = Run()
    signal.signal(signal.SIGTERM, lambda *_: run.stop.set())
    try:
        run.run()
    except KeyboardInterrupt:
        run.stop.set()
        run.summary()


if __name__ == "__main__":
    main()
