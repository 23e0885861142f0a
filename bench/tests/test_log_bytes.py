"""Unit tests of step 10's harness logic (issue 13): bench/harness/log_bytes.py's split of a
function's output into app and EMF lines, its platform model and per-task sums, its reading of
serverless.yml; log_report.py's section and its splicing; events.py's MODIFY stream record.

    .venv/bin/python -m unittest discover -s bench/tests      (scripts/bench.sh --smoke runs it)
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

import events  # noqa: E402
import log_bytes  # noqa: E402
import log_report  # noqa: E402
import report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

APP = '{"level":"INFO","message":"task received","task_id":"t-1"}\n'
EMF = '{"TasksCreated":1.0,"_aws":{"CloudWatchMetrics":[],"Timestamp":1}}\n'


def stage(function, app, emf):
    return {"function": function, "invocation": "x", "app_bytes": app, "app_lines": 1, "emf_bytes": emf,
            "emf_lines": 1}


class SplitLines(unittest.TestCase):
    def test_emf_lines_are_json_objects_with_an_aws_key_and_everything_else_is_app(self):
        text = APP + EMF + "not json at all\n" + "\n" + '["_aws"]\n'
        app_bytes, app_lines, emf_bytes, emf_lines = log_bytes.split_lines(text)
        self.assertEqual((emf_bytes, emf_lines), (len(EMF), 1))
        self.assertEqual(app_lines, 3)
        self.assertEqual(app_bytes, len(APP) + len("not json at all\n") + len('["_aws"]\n'))

    def test_bytes_are_utf8_bytes_not_characters(self):
        self.assertEqual(log_bytes.split_lines('{"m":"é"}\n')[0], 11)


class Platform(unittest.TestCase):
    def test_info_writes_start_and_report_and_warn_writes_none(self):
        info = log_bytes.platform_bytes_per_invocation("INFO")
        self.assertGreater(info, 300)
        self.assertEqual(log_bytes.platform_bytes_per_invocation("DEBUG"), info)
        self.assertEqual(log_bytes.platform_bytes_per_invocation("WARN"), 0)
        self.assertEqual(log_bytes.platform_bytes_per_invocation("warn"), 0)

    def test_per_task_sums_each_function_s_invocations(self):
        stages = [stage("ingest", 100, 50), stage("dispatcher", 40, 0), stage("dispatcher", 60, 0)]
        by_function, total = log_bytes.per_task(stages, 10)
        self.assertEqual(by_function["dispatcher"], {"invocations": 2, "app": 100, "emf": 0, "platform": 20,
                                                     "total": 120})
        self.assertEqual(total, {"invocations": 3, "app": 200, "emf": 50, "platform": 30, "total": 280})

    def test_the_deployed_logging_is_read_from_serverless_yml(self):
        logging = log_bytes.deployed_logging(ROOT)
        self.assertEqual(logging["logFormat"], "JSON")
        self.assertIn(logging["applicationLogLevel"], ("INFO", "WARN"))
        self.assertIn(logging["systemLogLevel"], log_bytes.SYSTEM_LEVELS)

    def test_the_path_is_one_task_s_happy_path(self):
        self.assertEqual([name for name, _ in log_bytes.PATH],
                         ["ingest", "dispatcher", "caller", "dispatcher", "webhook", "caller", "status"])


def results(app, platform, generated_at="now"):
    stages = [stage("ingest", app, 50), stage("webhook", app, 50)]
    by_function, total = log_bytes.per_task(stages, platform)
    return {"tasks": 3, "logging": {"logFormat": "JSON", "applicationLogLevel": "INFO", "systemLogLevel": "INFO"},
            "platform_per_invocation": platform, "stages": stages, "functions": by_function, "total": total,
            "samples": {"ingest": APP.strip()}, "generated_at": generated_at}


class Section(unittest.TestCase):
    def test_the_section_shows_before_and_now_and_the_target(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "bench"))
            with open(os.path.join(root, "bench", "baseline-logs.json"), "w") as out:
                json.dump({"note": "before issue 13", **results(1000, 377, "then")}, out)
            text = log_report.logs_section({"logs": results(300, 0), "generated_at": "now"}, root)
        self.assertTrue(text.startswith(log_report.LOGS_HEADING))
        self.assertIn("before issue 13", text)
        self.assertIn("| ingest | 1 | 1,000 → 300 | 50 → 50 | 377 → 0 | 1,427 → 350 |", text)
        self.assertIn("| **per task** | 2 |", text)
        self.assertIn("met (700 B per task)", text)
        self.assertIn("$1.43 → $0.35", text)  # 2,854 B → 700 B at $0.50 per GB, per million tasks

    def test_splicing_rewrites_only_the_logs_section(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "bench"))
            path = os.path.join(root, "RESULTS.md")
            with open(path, "w") as out:
                out.write("# Benchmarks\n\n## 9. Timers\n\nkept\n\n## 10. Log bytes per task (issue 13)\n\nold\n\n"
                          "## Notes\n\nnotes\n")
            report.splice(path, {"logs": results(300, 0)}, root, ["logs"])
            with open(path) as text:
                spliced = text.read()
        self.assertIn("## 9. Timers\n\nkept\n", spliced)
        self.assertNotIn("\nold\n", spliced)
        self.assertIn("| **per task** | 2 |", spliced)
        self.assertLess(spliced.index(log_report.LOGS_HEADING), spliced.index("## Notes"))


class StreamModify(unittest.TestCase):
    def test_a_modify_record_carries_both_images(self):
        new, old = {"pk": {"S": "TASK#1"}, "status": {"S": "IN_PROGRESS"}}, {"pk": {"S": "TASK#1"}}
        record = events.stream_modify(new, old, "t")["Records"][0]
        self.assertEqual(record["eventName"], "MODIFY")
        self.assertEqual(record["dynamodb"]["NewImage"], new)
        self.assertEqual(record["dynamodb"]["OldImage"], old)
        self.assertNotIn("OldImage", events.stream_insert(new, "t")["Records"][0]["dynamodb"])


if __name__ == "__main__":
    unittest.main()
