"""Unit tests of bench/harness/baselines.py: a kept baseline reads back with where it came from."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

import baselines  # noqa: E402


class Baselines(unittest.TestCase):
    def test_a_kept_baseline_reads_back_with_its_origin_and_section(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "bench"))
            self.assertIsNone(baselines.load(root, "logs"))
            results = {"generated_at": "2026-11-30 16:28 UTC", "commit": "6e40c96", "built_from": "x", "logs": {}}
            where = baselines.keep(root, "logs", results, "before issue 13", {"total": {"app": 2476}})
            self.assertEqual(where, os.path.join(root, "bench", "baseline-logs.json"))
            self.assertEqual(baselines.load(root, "logs"), {
                "note": "before issue 13", "generated_at": "2026-11-30 16:28 UTC", "commit": "6e40c96",
                "built_from": "x", "total": {"app": 2476}})
            self.assertIsNone(baselines.load(root, "storage"))


if __name__ == "__main__":
    unittest.main()
