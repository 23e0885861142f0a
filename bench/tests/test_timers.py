"""Unit tests of step 9's harness logic (issue 10): bench/harness/timers.py's invocation
matching, concurrency and drain arithmetic and backlog seeding; report.py's AWS drain estimate
and section splicing; proxy.py's reading of jobs-queue requests; events.py's SQS batch; and
emulator_server.py's speed-ups of moto's queues (against moto in-process).

    .venv/bin/python -m unittest discover -s bench/tests      (scripts/bench.sh --smoke runs it)
"""

import json
import os
import sys
import unittest
import unittest.mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

import events  # noqa: E402
import report  # noqa: E402
import timers  # noqa: E402
from proxy import deleted, received, sent  # noqa: E402


def receive(at, handles, steps=None, tasks=None):
    return ("receive", at, list(handles), steps or {"start": len(handles)}, tasks or [f"t-{h}" for h in handles])


def delete(at, handles):
    return ("delete", at, list(handles), {}, [])


class Invocations(unittest.TestCase):
    def test_a_batch_ends_when_its_messages_are_deleted(self):
        trace = [receive(1.0, ["a", "b"]), receive(1.5, ["c"]), delete(2.0, ["c"]), delete(3.0, ["a", "b"])]
        found = timers.invocations(trace)
        self.assertEqual([(i["start"], i["end"], i["messages"]) for i in found], [(1.0, 3.0, 2), (1.5, 2.0, 1)])

    def test_the_first_delete_of_any_of_its_messages_ends_it(self):
        # a partial batch failure: the failed message is not deleted (it comes back later)
        found = timers.invocations([receive(1.0, ["a", "b"]), delete(1.4, ["b"]), delete(9.0, ["a"])])
        self.assertEqual(found[0]["end"], 1.4)

    def test_a_batch_nothing_of_which_was_deleted_has_no_end(self):
        found = timers.invocations([receive(1.0, ["a"])])
        self.assertIsNone(found[0]["end"])

    def test_a_delete_before_the_receive_does_not_count(self):
        # the same handle deleted earlier belongs to an earlier delivery
        found = timers.invocations([delete(0.5, ["a"]), receive(1.0, ["a"]), delete(2.0, ["a"])])
        self.assertEqual(found[0]["end"], 2.0)

    def test_kinds_by_what_the_batch_held(self):
        found = timers.invocations([
            receive(1, ["a"], {"start": 1}), receive(2, ["b"], {"deadline": 1}),
            receive(3, ["c", "d"], {"start": 1, "deadline": 1}), receive(4, ["e"], {"?": 1}),
        ])
        self.assertEqual(timers.kinds(found), {"start": 1, "deadline": 1, "mixed": 1, "other": 1})

    def test_shares_split_a_mixed_batch_in_proportion(self):
        found = timers.invocations([
            receive(1, ["a", "b"], {"start": 2}), receive(2, ["c", "d", "e", "f"], {"start": 1, "deadline": 3}),
        ])
        self.assertEqual(timers.shares(found), {"start": 1.25, "deadline": 0.75})

    def test_an_invocation_knows_its_tasks(self):
        found = timers.invocations([receive(1.0, ["a", "b"], tasks=["t1", "t2"])])
        self.assertEqual(found[0]["tasks"], ["t1", "t2"])

    def test_handover_wait_is_batch_received_to_its_jobs_arrival(self):
        found = timers.invocations([receive(1.0, ["a", "b"], tasks=["t1", "t2"]), receive(0.5, ["c"], tasks=["t3"]),
                                    receive(2.0, ["d"], tasks=["lost"])])
        # t1, t2 arrive 0.1 and 0.3 s after their batch; t3's batch arrived early: from due (0.8)
        waits = timers.handover_waits(found, {"t1": 1.1, "t2": 1.3, "t3": 0.9}, start=0.8)
        self.assertEqual(len(waits), 2)
        self.assertAlmostEqual(waits[0], 0.1)  # t3, from the due instant
        self.assertAlmostEqual(waits[1], 0.2)


class Concurrency(unittest.TestCase):
    def test_peak(self):
        self.assertEqual(timers.peak([]), 0)
        self.assertEqual(timers.peak([(0, 2), (1, 3), (1.5, 1.6), (4, 5)]), 3)

    def test_an_interval_that_ends_as_another_starts_does_not_overlap_it(self):
        self.assertEqual(timers.peak([(0, 1), (1, 2), (2, 3)]), 1)

    def test_mean_open_is_the_time_weighted_count(self):
        # one interval the whole window, one half of it: 1.5 on average
        self.assertAlmostEqual(timers.mean_open([(0, 10), (5, 10)], 0, 10), 1.5)
        # clipped to the window
        self.assertAlmostEqual(timers.mean_open([(-5, 5)], 0, 10), 0.5)
        self.assertEqual(timers.mean_open([(0, 1)], 3, 3), 0.0)

    def test_early_invocations_and_their_lead(self):
        found = timers.invocations([receive(0.2, ["a"]), receive(0.6, ["b"]), receive(1.5, ["c"])])
        count, lead = timers.early(found, 1.0)
        self.assertEqual(count, 2)
        self.assertAlmostEqual(lead, 0.6)
        self.assertEqual(timers.early(found, 0.0), (0, 0.0))

    def test_clipped_counts_an_early_invocation_from_the_due_instant(self):
        self.assertEqual(timers.clipped([(0.2, 1.5), (0.5, 0.9), (1.2, 2.0)], 1.0), [(1.0, 1.5), (1.2, 2.0)])

    def test_littles_law(self):
        # 1,000 jobs/s, 10 per invocation, 0.2 s each: 20 invocations in flight
        self.assertAlmostEqual(timers.little(1000, 0.2, 10), 20)
        # one job per invocation: 200
        self.assertAlmostEqual(timers.little(1000, 0.2, 1), 200)

    def test_measured_mean_matches_littles_law_for_a_steady_stream(self):
        # an invocation every 0.1 s, each 0.3 s long, 10 jobs each: λ = 100 jobs/s, L = 3
        spans = [(i * 0.1, i * 0.1 + 0.3) for i in range(1000)]
        measured = timers.mean_open(spans, 10, 90)
        self.assertAlmostEqual(measured, timers.little(100, 0.3, 10), places=6)


class Drain(unittest.TestCase):
    def test_progress(self):
        times = [10 + i for i in range(10)]  # one a second from 10 s
        self.assertEqual(timers.progress(times, 10, (0.1, 0.5, 1.0)), {0.1: 0, 0.5: 4, 1.0: 9})
        self.assertEqual(timers.progress([], 0), {})

    def test_busiest_second(self):
        self.assertEqual(timers.busiest_second([0, 0.1, 0.2, 0.9, 1.5, 3]), 4)
        self.assertEqual(timers.busiest_second([]), 0)

    def test_the_drain_is_due_once_seeding_should_be_done(self):
        self.assertAlmostEqual(timers.drain_margin(3_000, 0.004), 5 + 2 * 12)
        self.assertAlmostEqual(timers.drain_margin(40, 0.004), 5.32, msg="5 s to spare")
        self.assertEqual(timers.drain_margin(10**6, 0.004), 120.0, "at most 2 minutes")
        self.assertAlmostEqual(timers.drain_margin(2_000), 25.0, msg="without a calibration: 5 ms a task")

    def test_delay_until_rounds_down_to_whole_seconds_as_the_fleet_does(self):
        self.assertEqual(timers.delay_until(10_999, 0), 10)
        self.assertEqual(timers.delay_until(5_000, 9_000), 0)
        self.assertEqual(timers.delay_until(3_600_000, 0), 900)


class AwsEstimate(unittest.TestCase):
    def test_at_full_concurrency_from_the_start(self):
        # 500 jobs at once, 0.2 s each: 2,500 jobs/s; 10,000 in 4 s
        self.assertAlmostEqual(report.aws_drain_seconds(10_000, 0.2, 50, 10, start=50), 4.0)

    def test_the_event_sources_ramp(self):
        # 5 invocations at first, 5 more a second: (5 + 5 t) × 50 jobs/s; ∫ = 10,000 at t = 8 s
        self.assertAlmostEqual(report.aws_drain_seconds(10_000, 0.2, 50, 10), 8.0)

    def test_past_the_ramp(self):
        # the ramp to 50 takes 9 s and hands over 12,375 jobs; the rest at 2,500 per s
        self.assertAlmostEqual(report.aws_drain_seconds(20_000, 0.2, 50, 10), 9 + (20_000 - 12_375) / 2_500)

    def test_more_jobs_take_longer(self):
        times = [report.aws_drain_seconds(n, 0.2, 50, 10) for n in (10, 1_000, 10_000, 100_000)]
        self.assertEqual(times, sorted(times))


class Splice(unittest.TestCase):
    REPORT = "# R\n\n## 8. Storage\n\nold 8\n\n## Notes\n\nnotes\n"

    def test_a_new_section_goes_before_the_notes(self):
        spliced = report.splice_section(self.REPORT, report.TIMERS_HEADING, f"{report.TIMERS_HEADING}\n\nnew 9\n")
        self.assertEqual(spliced, f"# R\n\n## 8. Storage\n\nold 8\n\n{report.TIMERS_HEADING}\n\nnew 9\n\n## Notes"
                                  "\n\nnotes\n")

    def test_an_existing_section_is_replaced_and_the_rest_kept(self):
        once = report.splice_section(self.REPORT, report.TIMERS_HEADING, f"{report.TIMERS_HEADING}\n\nfirst\n")
        twice = report.splice_section(once, report.TIMERS_HEADING, f"{report.TIMERS_HEADING}\n\nsecond\n")
        self.assertNotIn("first", twice)
        self.assertIn("second", twice)
        self.assertIn("old 8", twice)
        self.assertTrue(twice.endswith("## Notes\n\nnotes\n"))


    def test_splice_refreshes_the_notes_too(self):
        import tempfile

        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "bench"))
            with open(os.path.join(root, "bench", "NOTES.md"), "w") as notes:
                notes.write("### new analysis\n")
            path = os.path.join(root, "RESULTS.md")
            with open(path, "w") as out:
                out.write(self.REPORT + "\n## Failed steps\n\n- x\n")
            report.splice(path, {"timers": None}, root, ["timers"])
            with open(path) as text:
                spliced = text.read()
        self.assertIn(f"{report.TIMERS_HEADING}\n\n_(not run)_", spliced)
        self.assertIn("## Notes\n\n### new analysis\n", spliced)
        self.assertNotIn("\nnotes\n", spliced)
        self.assertIn("## Failed steps\n\n- x", spliced)
        self.assertIn("old 8", spliced)


class QueueRequests(unittest.TestCase):
    def test_a_receive_answer(self):
        body = json.dumps({"Messages": [
            {"ReceiptHandle": "h1", "Body": json.dumps({"task_id": "t", "attempt": 1, "step": "start", "due_at": 1})},
            {"ReceiptHandle": "h2", "Body": json.dumps({"step": "deadline"})},
            {"ReceiptHandle": "h3", "Body": "not json"},
        ]}).encode()
        self.assertEqual(received(body), (["h1", "h2", "h3"], {"start": 1, "deadline": 1, "?": 1}, ["t", None, None]))
        self.assertEqual(received(b"{}"), ([], {}, []))
        self.assertEqual(received(b"<xml/>"), ([], {}, []))

    def test_deletes(self):
        batch = {"QueueUrl": "q", "Entries": [{"Id": "0", "ReceiptHandle": "h1"}, {"Id": "1", "ReceiptHandle": "h2"}]}
        self.assertEqual(deleted(json.dumps(batch).encode()), ["h1", "h2"])
        self.assertEqual(deleted(json.dumps({"QueueUrl": "q", "ReceiptHandle": "h"}).encode()), ["h"])

    def test_sends(self):
        entries = [{"Id": str(i), "MessageBody": json.dumps({"step": step})} for i, step in
                   enumerate(["start", "start", "deadline"])]
        self.assertEqual(sent(json.dumps({"QueueUrl": "q", "Entries": entries}).encode()), {"start": 2, "deadline": 1})
        self.assertEqual(sent(json.dumps({"QueueUrl": "q", "MessageBody": "{}"}).encode()), {"?": 1})


class SqsEvent(unittest.TestCase):
    def test_the_shape_the_caller_reads(self):
        event = events.sqs("arn:aws:sqs:us-east-1:123456789012:jobs", [({"task_id": "t", "step": "start"}, "bench"),
                                                                      ({"task_id": "u"}, None)])
        first, second = event["Records"]
        for field in ("messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                      "eventSource", "eventSourceARN", "awsRegion"):
            self.assertIn(field, first)
        self.assertEqual(json.loads(first["body"]), {"task_id": "t", "step": "start"})
        self.assertEqual(first["attributes"]["MessageGroupId"], "bench")
        self.assertNotIn("MessageGroupId", second["attributes"])
        self.assertEqual(first["eventSource"], "aws:sqs")
        self.assertNotEqual(first["messageId"], second["messageId"])


class Backlog(unittest.TestCase):
    TEMPLATE = {
        "pk": {"S": "TASK#0a1b2c3d-0000-4000-8000-000000000000"},
        "task_id": {"S": "0a1b2c3d-0000-4000-8000-000000000000"},
        "status": {"S": "RECEIVED"},
        "status_key": {"S": "RECEIVED#3"},
        "client_id": {"S": "bench"},
        "attempts": {"N": "0"},
        "due_at": {"N": "1000"},
        "created_at": {"N": "1000"},
        "expires_at": {"N": "2000000000"},
    }

    def test_retries_due_at_one_instant_with_their_payloads(self):
        ids, items = timers.backlog_items(self.TEMPLATE, 3, due_ms=5_000)
        self.assertEqual(len(set(ids)), 3)
        tasks = [i for i in items if i["pk"]["S"].startswith("TASK#")]
        payloads = [i for i in items if i["pk"]["S"].startswith("PAYLOAD#")]
        self.assertEqual(len(tasks), 3)
        self.assertEqual({p["pk"]["S"] for p in payloads}, {f"PAYLOAD#{t}" for t in ids})
        for task in tasks:
            self.assertEqual(task["due_at"], {"N": "5000"})
            self.assertEqual(task["attempts"], {"N": "1"}, "one failed attempt: each start is a retry")
            self.assertEqual(task["status"], {"S": "RECEIVED"})
            self.assertTrue(task["status_key"]["S"].startswith("RECEIVED#"))
        self.assertEqual(self.TEMPLATE["attempts"], {"N": "0"}, "the template is left alone")


class EmulatorSpeedUps(unittest.TestCase):
    """emulator_server.py against moto in-process: its queues behave as moto's."""

    @classmethod
    def setUpClass(cls):
        try:
            import boto3
            from moto import mock_aws
        except ImportError:  # pragma: no cover - the bench's venv has both
            raise unittest.SkipTest("moto not installed")
        import emulator_server

        emulator_server.install()
        # `make test` exports AWS_ENDPOINT_URL (its emulator): boto3 would send these requests
        # there, past the in-process mock.
        cls.environment = unittest.mock.patch.dict(os.environ)
        cls.environment.start()
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
            del os.environ[name]
        cls.mock = mock_aws()
        cls.mock.start()
        cls.sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()
        cls.environment.stop()

    def queue(self, name):
        return self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]

    def test_delete_by_handle_removes_just_that_message(self):
        url = self.queue("delete-by-handle")
        self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)])
        got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
        self.assertEqual([m["Body"] for m in got], ["m0", "m1"])
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])  # again: no error, as moto
        rest = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual([m["Body"] for m in rest], ["m2", "m3", "m4"])
        from moto.sqs.models import sqs_backends

        queue = sqs_backends["123456789012"]["us-east-1"].queues["delete-by-handle"]
        self.assertEqual(sorted(m.body for m in queue._messages), ["m1", "m2", "m3", "m4"])

    def test_an_unknown_handle_is_refused_as_by_moto(self):
        url = self.queue("unknown-handle")
        with self.assertRaises(self.sqs.exceptions.ReceiptHandleIsInvalid):
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")

    def test_delays_are_honoured(self):
        url = self.queue("delays")
        self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "0", "MessageBody": "later", "DelaySeconds": 60},
                                                           {"Id": "1", "MessageBody": "now"}])
        got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual([m["Body"] for m in got], ["now"])

    def test_counts_are_kept_a_moment(self):
        import emulator_server

        now = [0.0]
        calls = []
        cached = emulator_server.cached_count("n", lambda q: calls.append(1) or len(calls), ttl=0.25,
                                              clock=lambda: now[0])

        class Queue:
            n = cached

        queue = Queue()
        self.assertEqual((queue.n, queue.n), (1, 1))
        now[0] = 0.3
        self.assertEqual(queue.n, 2)


if __name__ == "__main__":
    unittest.main()
