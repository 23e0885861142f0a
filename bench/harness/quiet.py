"""Waiting for the machine to be quiet before a timing step: a cold start measured while the
emulator or a process of the step before still runs is measured against them (the first
function of the cold step was: its init took twice its time measured later in the same run)."""

import time


def _busy_and_total():
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def busy_share(window=0.5):
    """The share of all CPUs' time spent busy over `window` seconds."""
    busy_before, total_before = _busy_and_total()
    time.sleep(window)
    busy_after, total_after = _busy_and_total()
    elapsed = total_after - total_before
    return (busy_after - busy_before) / elapsed if elapsed > 0 else 0.0


def wait_until_idle(threshold=0.15, windows=2, longest=15.0):
    """Waits until `windows` consecutive half seconds are below `threshold` busy (or `longest`
    seconds passed); answers the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while quiet < windows and time.monotonic() - started < longest:
        quiet = quiet + 1 if busy_share() < threshold else 0
    return time.monotonic() - started
