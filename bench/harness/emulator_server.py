"""The emulator the benchmarks run: scripts/emulator.py — what `make dev` and `make test` run:
moto server, atomic DynamoDB, fair SQS queues — plus three speed-ups of moto's SQS for long
queues, so that a backlog of 10,000 timers measures the fleet rather than moto's bookkeeping.

moto 5.2 spends time in proportion to the queue's length on every message sent, received or
deleted: with 3,000 messages waiting, one SendMessageBatch of 10 took 300 ms, with 20,000 it
would take ~2 s, and draining 10,000 timers would take an hour. Three spots:

- its clock: every visibility or delay check reads the time through datetime arithmetic (~9 µs
  a read); `time.time()` answers the same number (seconds since the epoch);
- `Queue.attributes`, evaluated for every message sent (SendMessage reads one attribute of it)
  and received (the retention check), counts the queue's messages three times (the approximate
  numbers visible, delayed and in flight); the counts are kept for COUNTS_TTL seconds — SQS
  documents them as approximate, and nothing in the fleet reads them;
- DeleteMessage walks the queue twice to find the message a receipt handle names; an index of
  the handles each message was given finds it at once.

Nothing else changes: the same messages are handed out in the same (fair) order, deleted by
the same handles, moved to the dead-letter queue at the same receive count.

Usage: python bench/harness/emulator_server.py -H 127.0.0.1 -p PORT
"""

import importlib.util
import os
import time
import weakref

from moto.sqs import models as sqs_models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COUNTS_TTL = 0.25  # seconds
COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
          "approximate_number_of_messages_not_visible")


def load_project_emulator():
    """scripts/emulator.py as a module (importing it installs its own patches)."""
    spec = importlib.util.spec_from_file_location("taskfleet_emulator", os.path.join(ROOT, "scripts", "emulator.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_unix_time, _unix_time_millis = sqs_models.unix_time, sqs_models.unix_time_millis


def fast_unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def fast_unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _unix_time_millis(dt)


def cached_count(name, count, ttl=COUNTS_TTL, clock=time.monotonic):
    """A property answering `count(queue)`, recomputed at most every `ttl` seconds per queue."""

    def get(queue):
        cache = queue.__dict__.setdefault("_bench_counts", {})
        now = clock()
        hit = cache.get(name)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = count(queue)
        cache[name] = (now, value)
        return value

    return property(get)


# Receipt handle -> the message it was given to (every handle a message ever had, as moto's
# Message.had_receipt_handle accepts old ones too).
_HANDLES = weakref.WeakValueDictionary()


def install():
    sqs_models.unix_time = fast_unix_time
    sqs_models.unix_time_millis = fast_unix_time_millis
    for name in COUNTS:
        setattr(sqs_models.Queue, name, cached_count(name, getattr(sqs_models.Queue, name).fget))

    mark_received = sqs_models.Message.mark_received

    def indexed_mark_received(message, visibility_timeout=None):
        mark_received(message, visibility_timeout)
        _HANDLES[message.receipt_handle] = message

    delete_message = sqs_models.Queue.delete_message

    def indexed_delete_message(queue, receipt_handle):
        message = _HANDLES.get(receipt_handle)
        if message is not None and receipt_handle not in queue.deleted_messages:
            try:
                queue._messages.remove(message)  # by identity: Message has no __eq__
            except ValueError:
                pass  # not in this queue: moto's own answer (an error, or already deleted)
            else:
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                return
        delete_message(queue, receipt_handle)

    sqs_models.Message.mark_received = indexed_mark_received
    sqs_models.Queue.delete_message = indexed_delete_message


if __name__ == "__main__":
    emulator = load_project_emulator()
    install()
    emulator.main()
