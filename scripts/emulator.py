"""The AWS emulator for local runs and tests: moto server, with atomic DynamoDB and fair SQS queues.

DynamoDB applies each conditional write atomically: of two writes conditioned on the same
state, exactly one succeeds. moto's server is threaded and checks a condition and applies the
update without a lock, so under real concurrency both writes can pass their check (seen in the
chaos test as two starts of one attempt). This wrapper serializes DynamoDB and DynamoDB Streams
requests -- stronger than DynamoDB's per-item atomicity, never weaker -- and leaves everything
else (SNS, SQS long polls, CloudWatch) concurrent.

SQS fair queues: on a standard queue, the MessageGroupId of a message names its tenant. AWS
documents (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues.html
and, in detail, .../sqs-fair-queues-detailed.html) that when one tenant builds a backlog (sends
more than the consumers keep up with, or its messages take long) SQS sees it as a noisy
neighbour -- by its share of the in-flight messages, or of the consumers' processing time -- and
delivers the other, quiet tenants' messages first, so that their dwell time stays low; the noisy
tenant's messages still arrive, later. Among several noisy tenants, the one with the fewest
messages in flight goes first. Consumers change nothing. moto 5.2 takes MessageGroupId on a
standard queue but serves strictly in arrival order: one client's 300 tasks would hold up
another client's 10.

Here a standard queue's visible, non-delayed messages are handed out in a fair order: each next
message comes from the group with the fewest messages in flight (received, neither deleted nor
visible again; those already picked for the same receive count), ties going to the group whose
next message is the oldest. Groups with as many in flight take turns (round-robin), and a group
with many in flight waits while the others catch up. Within a group, arrival order.
Approximated: fairness is always on, where SQS reorders only once it has detected a noisy
neighbour (about 10 % of the queue's in-flight messages and at least 30 of its own in flight,
or 10 % of the processing time), so a small imbalance already reorders here; processing time
is not measured, in-flight counts stand for it; messages without a MessageGroupId form one
group here, where SQS makes each of them a tenant of its own. FIFO queues are left as moto
serves them.

Usage: python scripts/emulator.py -H 127.0.0.1 -p PORT
"""

import argparse
import heapq
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs import models as sqs_models
from werkzeug.serving import run_simple

_DYNAMODB = threading.Lock()


def atomic_dynamodb(app):
    def serve(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB"):
            return app(environ, start_response)
        with _DYNAMODB:
            response = app(environ, start_response)
            try:
                # Produce the whole answer inside the lock: the update is only done once it is.
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()

    return serve


# moto's own: the visible, non-delayed messages in arrival order (what receive_message walks).
_ARRIVAL_ORDER = sqs_models.Queue.messages


def fair_messages(queue):
    """The messages receive_message may hand out, first to last: see the module's docstring.

    One pass over the queue and a heap of the groups: O(n log groups) per receive."""
    if queue.fifo_queue:
        return _ARRIVAL_ORDER.fget(queue)
    now = sqs_models.unix_time_millis()  # moto's clock, as Message.visible and .delayed read it
    in_flight = {}
    waiting = {}  # group -> its visible messages, oldest first; in order of first appearance
    for index, message in enumerate(queue._messages):
        group = message.group_id  # None: the messages without a group, one group
        if now <= message.visible_at:  # not Message.visible: received, in flight
            in_flight[group] = in_flight.get(group, 0) + 1
        elif now >= message.delayed_until:  # not Message.delayed
            waiting.setdefault(group, []).append((index, message))
    if len(waiting) <= 1:
        return [message for messages in waiting.values() for _, message in messages]
    # One entry per group with messages waiting: (its messages in flight, counting those picked
    # here; arrival index of its next message; its rank, so that no two entries tie; position of
    # its next message).
    heap = [
        (in_flight.get(group, 0), messages[0][0], rank, 0)
        for rank, (group, messages) in enumerate(waiting.items())
    ]
    heapq.heapify(heap)
    groups = list(waiting.values())
    order = []
    while heap:
        flying, _, rank, position = heap[0]
        messages = groups[rank]
        order.append(messages[position][1])
        position += 1
        if position < len(messages):
            heapq.heapreplace(heap, (flying + 1, messages[position][0], rank, position))
        else:
            heapq.heappop(heap)
    return order


sqs_models.Queue.messages = property(fair_messages)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, atomic_dynamodb(app), threaded=True)


if __name__ == "__main__":
    main()
