"""The pricing of §11 (issue 12): what learning a result cost beyond a run that learned nothing."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))

import prices  # noqa: E402
import reads  # noqa: E402
import reads_report  # noqa: E402


def run(mode, **counts):
    base = {"mode": mode, "tasks": 1, "task_item_bytes": 1500, "client_requests_per_task": 0.0,
            "client_request_seconds_per_task": 0.0, "deliveries_per_task": 0.0, "knew_after_seconds": [],
            "calls_per_task": {}, "dynamodb_reads_per_task": 3.0, "dynamodb_writes_per_task": 4.0,
            "sqs_sends_per_task": 2.0, "stream_batches_per_task": 4.0, "queue_batches_per_task": 2.0}
    base.update(counts)
    return base


class ExtraTest(unittest.TestCase):
    def test_a_poll_costs_its_requests_their_time_and_the_reads_beyond_the_run_that_read_nothing(self):
        none = run("none")
        poll = run("poll", client_requests_per_task=15.0, client_request_seconds_per_task=0.3,
                   dynamodb_reads_per_task=18.0)
        parts, money = reads_report.extra(poll, none)
        self.assertEqual(parts["api_requests"], 15.0)
        self.assertEqual(parts["lambda_requests"], 15.0)
        self.assertEqual(parts["read_units"], 15.0)  # a 1.5 KB item: one read unit each
        self.assertEqual(parts["write_units"], 0.0)
        self.assertAlmostEqual(money["api_requests"], 15.0)  # $1 per million requests, 15 per task
        self.assertAlmostEqual(parts["lambda_gb_seconds"], 0.3 * 0.25)

    def test_a_webhook_costs_a_delivery_its_write_priced_on_the_items_size_and_its_queue_message(self):
        none = run("none")
        webhook = run("webhook", dynamodb_reads_per_task=5.0, dynamodb_writes_per_task=5.0, sqs_sends_per_task=3.0,
                      stream_batches_per_task=5.0, queue_batches_per_task=3.0)
        parts, money = reads_report.extra(webhook, none)
        self.assertEqual(parts["api_requests"], 0.0)
        self.assertEqual(parts["lambda_requests"], 2.0)  # the notifier's and the dispatcher's
        self.assertEqual(parts["write_units"], 2.0)  # 1,500 B: two write units
        self.assertEqual(parts["sqs_requests"], 3.0)  # send, receive, delete
        self.assertAlmostEqual(money["write_units"], 2 * prices.DYNAMODB_WRITE_UNIT * 1e6)

    def test_fewer_calls_than_the_run_that_read_nothing_count_as_none(self):
        parts, _ = reads_report.extra(run("wait", stream_batches_per_task=3.0), run("none"))
        self.assertEqual(parts["lambda_requests"], 0.0)


class ItemSizeTest(unittest.TestCase):
    def test_attribute_values_are_sized_as_dynamodb_sizes_them(self):
        self.assertEqual(reads.item_bytes({"S": "héllo"}), 6)
        self.assertEqual(reads.item_bytes({"N": "12345"}), 4)
        self.assertEqual(reads.item_bytes({"BOOL": True}), 1)
        self.assertEqual(reads.item_bytes({"M": {"a": {"S": "xy"}}}), 3 + 1 + 2)
        self.assertEqual(reads.item_bytes({"L": [{"S": "x"}, {"N": "1"}]}), 3 + 2 + 3)


if __name__ == "__main__":
    unittest.main()
