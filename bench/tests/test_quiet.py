"""Unit tests of bench/harness/quiet.py: waiting for the machine to be quiet before a timing."""

import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

import quiet  # noqa: E402


class WaitUntilIdle(unittest.TestCase):
    def test_it_returns_after_enough_quiet_windows_in_a_row(self):
        shares = iter([0.9, 0.05, 0.9, 0.05, 0.05, 0.9])
        with mock.patch.object(quiet, "busy_share", side_effect=lambda: next(shares)) as sampled:
            quiet.wait_until_idle(threshold=0.15, windows=2, longest=60)
        self.assertEqual(sampled.call_count, 5, "a busy window starts the count again")

    def test_it_gives_up_after_the_longest_wait(self):
        with mock.patch.object(quiet, "busy_share", return_value=1.0), \
                mock.patch.object(quiet.time, "monotonic", side_effect=[0.0, 0.0, 5.0, 11.0, 11.0]):
            self.assertEqual(quiet.wait_until_idle(longest=10.0), 11.0)

    def test_the_busy_share_is_a_fraction(self):
        share = quiet.busy_share(window=0.05)
        self.assertGreaterEqual(share, 0.0)
        self.assertLessEqual(share, 1.0)


if __name__ == "__main__":
    unittest.main()
