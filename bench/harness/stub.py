"""The external service as the benchmarks need it: accepts jobs (202) and, when asked to, calls
each task back with success, from a few worker threads. `refuse_first` answers each task's
first job 503 (with `Retry-After: retry_after` unless that is None) to measure the one-retry
path. `answer_after` (seconds) answers every job that late, as crates/example-service's
`Chaos::answer_after` (a service slow to accept). `result(job)`, if given, makes the result each
callback reports (default: the job's payload echoed). `call_back_after` (seconds) is how long
each task takes: its callback is made that long after its job was accepted. It counts what it saw: jobs per task, the
most jobs it was answering at once, and when each job arrived and was answered."""

import collections
import json
import queue
import threading
import time
import urllib.parse

from http_io import Client, Server, respond


class ExternalService:
    def __init__(self, call_back=False, refuse_first=False, workers=4, result=None, answer_after=0.0,
                 retry_after="1", call_back_after=0.0):
        self.call_back, self.refuse_first = call_back, refuse_first
        self.call_back_after = call_back_after
        self.result = result
        self.answer_after, self.retry_after = answer_after, retry_after
        self.lock = threading.Condition()
        self.jobs = collections.Counter()
        self.in_flight = self.most_in_flight = 0
        self.journal = []  # (task_id, attempt, arrived, answered): perf_counter seconds
        self.answered = set()  # tasks with a job answered
        self.finished = {}  # task_id -> webhook status code
        self.finished_at = {}  # task_id -> perf_counter when its callback was answered
        self.callback_urls = {}  # task_id -> the callback URL of its latest job
        self.pending = queue.Queue()
        self.server = Server(self._handle)
        self.url = f"http://127.0.0.1:{self.server.port}/jobs"
        for _ in range(workers if call_back else 0):
            threading.Thread(target=self._deliver, daemon=True).start()

    def _handle(self, message, sock):
        try:
            job = json.loads(message.body)
            task_id = job["task_id"]
        except (ValueError, KeyError, TypeError):
            respond(sock, 400, b'{"error":"bad job"}')
            return
        arrived = time.perf_counter()
        with self.lock:
            self.jobs[task_id] += 1
            self.callback_urls[task_id] = job.get("callback_url")
            first = self.jobs[task_id] == 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.answer_after:
            time.sleep(self.answer_after)
        with self.lock:
            self.in_flight -= 1
            self.journal.append((task_id, job.get("attempt"), arrived, time.perf_counter()))
            self.answered.add(task_id)
            self.lock.notify_all()
        if self.refuse_first and first:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            respond(sock, 503, b'{"error":"try again later"}', headers)
            return
        respond(sock, 202, json.dumps({"accepted": task_id}).encode())
        if self.call_back:
            result = (self.result(job) if self.result else
                      {"echo": job.get("payload"), "attempt": job.get("attempt")})
            outcome = {"status": "succeeded", "result": result}
            self.pending.put((time.perf_counter() + self.call_back_after, task_id, job["callback_url"], outcome))

    def _deliver(self):
        clients = {}
        while True:
            due, task_id, url, outcome = self.pending.get()
            time.sleep(max(0.0, due - time.perf_counter()))
            parts = urllib.parse.urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            client = clients.setdefault(parts.netloc, Client(parts.hostname, parts.port))
            status = 0
            for _ in range(5):
                try:
                    status = client.request("POST", target, json.dumps(outcome).encode(),
                                            {"Content-Type": "application/json"}).status
                except OSError:
                    status = 0
                if 0 < status < 500:
                    break
            with self.lock:
                self.finished[task_id] = status
                self.finished_at[task_id] = time.perf_counter()
                self.lock.notify_all()

    def wait_finished(self, count, timeout):
        """True once `count` callbacks were answered 200, False after `timeout` seconds."""
        with self.lock:
            return self.lock.wait_for(lambda: sum(s == 200 for s in self.finished.values()) >= count, timeout)

    def wait_jobs(self, tasks, timeout):
        """True once `tasks` distinct tasks had a job answered, False after `timeout` seconds."""
        with self.lock:
            return self.lock.wait_for(lambda: len(self.answered) >= tasks, timeout)

    def close(self):
        self.server.close()
