"""SQS fair queues in the emulator (scripts/emulator.py), through boto3 as a client sees them.

Pins the emulation to what AWS documents for fair queues
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues.html):
on a standard queue, one tenant's (MessageGroupId's) backlog does not hold up the others, order
within a tenant is kept, and no message is lost or doubled; FIFO queues are not reordered.

Against the emulator at AWS_ENDPOINT_URL (`make test` starts one); without it, against one of
its own on a free loopback port. Every test uses queues of its own.

    .venv/bin/python -m unittest discover -s tests/emulator -v
"""

import os
import socket
import subprocess
import sys
import time
import unittest
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
_emulator = None
sqs = None


def setUpModule():
    global _emulator, sqs
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _emulator = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "emulator.py"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if _emulator.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator did not start on 127.0.0.1:{port}")
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def tearDownModule():
    if _emulator is not None:
        _emulator.terminate()
        _emulator.wait(timeout=10)


def new_queue(fifo=False):
    name = f"fair-{uuid.uuid4().hex[:12]}"
    attributes = {"VisibilityTimeout": "300"}
    if fifo:
        name += ".fifo"
        attributes.update(FifoQueue="true", ContentBasedDeduplication="false")
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def send(queue, bodies, group=None, fifo=False):
    """Sends BODIES in order, in batches of 10, with GROUP as MessageGroupId (None: none)."""
    for start in range(0, len(bodies), 10):
        entries = []
        for body in bodies[start : start + 10]:
            entry = {"Id": str(len(entries)), "MessageBody": body}
            if group is not None:
                entry["MessageGroupId"] = group
            if fifo:
                entry["MessageDeduplicationId"] = body
            entries.append(entry)
        answer = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        assert not answer.get("Failed"), answer["Failed"]


def receive(queue, delete=True):
    """One receive of up to 10 messages (no wait); deletes them unless told not to."""
    messages = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
    ).get("Messages", [])
    if delete and messages:
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return [m["Body"] for m in messages]


def drain(queue, delete=True, most=1000):
    """Every message of the queue, in the order received, 10 per receive."""
    received = []
    while len(received) < most:
        batch = receive(queue, delete)
        if not batch:
            break
        received += batch
    return received


def bodies(tenant, count):
    return [f"{tenant}-{i:04d}" for i in range(count)]


def of(tenant, received):
    return [body for body in received if body.startswith(f"{tenant}-")]


class StandardQueue(unittest.TestCase):
    def test_a_quiet_tenant_is_not_held_up_by_a_backlog(self):
        # Client A sends 300 jobs, then client B 10: B's must not wait for A's backlog. A
        # consumer that deletes each batch of 10 once done with it.
        queue = new_queue()
        send(queue, bodies("A", 300), group="A")
        send(queue, bodies("B", 10), group="B")
        received = drain(queue)
        self.assertEqual(len(received), 310, "every message once")
        self.assertEqual(sorted(received), sorted(bodies("A", 300) + bodies("B", 10)))
        last_b = max(i for i, body in enumerate(received) if body.startswith("B-"))
        self.assertLess(last_b, 25, f"B's last message was received {last_b + 1}th")
        self.assertEqual(of("A", received), bodies("A", 300), "A's order kept")
        self.assertEqual(of("B", received), bodies("B", 10), "B's order kept")

    def test_a_quiet_tenant_is_not_held_up_by_messages_in_flight(self):
        # The same, with a consumer that keeps what it received in flight (slow, or many of it).
        queue = new_queue()
        send(queue, bodies("A", 300), group="A")
        send(queue, bodies("B", 10), group="B")
        first = receive(queue, delete=False) + receive(queue, delete=False) + receive(queue, delete=False)
        self.assertEqual(of("B", first), bodies("B", 10), first)
        self.assertEqual(of("A", first), bodies("A", 20), first)

    def test_the_tenant_with_fewer_messages_in_flight_goes_first(self):
        # A has 20 in flight and 20 waiting; then B sends 5: B's come first.
        queue = new_queue()
        send(queue, bodies("A", 40), group="A")
        in_flight = receive(queue, delete=False) + receive(queue, delete=False)
        self.assertEqual(in_flight, bodies("A", 20))
        send(queue, bodies("B", 5), group="B")
        self.assertEqual(receive(queue, delete=False)[:5], bodies("B", 5))

    def test_three_tenants_take_turns(self):
        queue = new_queue()
        for tenant in "ABC":
            send(queue, bodies(tenant, 20), group=tenant)
        first = receive(queue) + receive(queue) + receive(queue)
        self.assertEqual(sorted(first[:3]), ["A-0000", "B-0000", "C-0000"], first)
        for tenant in "ABC":
            self.assertIn(len(of(tenant, first)), range(8, 13), f"{tenant} in the first 30: {first}")
        received = first + drain(queue)
        for tenant in "ABC":
            self.assertEqual(of(tenant, received), bodies(tenant, 20), f"{tenant}'s order kept")

    def test_messages_without_a_group_are_delivered(self):
        queue = new_queue()
        send(queue, bodies("N", 30))  # no MessageGroupId
        send(queue, bodies("B", 5), group="B")
        received = drain(queue)
        self.assertEqual(sorted(received), sorted(bodies("N", 30) + bodies("B", 5)), "every message once")
        self.assertEqual(of("N", received), bodies("N", 30), "arrival order among them")
        self.assertLess(max(i for i, b in enumerate(received) if b.startswith("B-")), 15, received)

    def test_without_groups_arrival_order(self):
        queue = new_queue()
        send(queue, bodies("N", 25))
        self.assertEqual(drain(queue), bodies("N", 25))

    def test_a_message_back_from_flight_is_delivered_again(self):
        queue = new_queue()
        send(queue, bodies("A", 3), group="A")
        first = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=300)["Messages"][0]
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
        time.sleep(0.01)  # visible again strictly after its visibility timeout
        self.assertEqual(sorted(drain(queue)), bodies("A", 3))


class FifoQueue(unittest.TestCase):
    def test_a_fifo_queue_is_not_reordered(self):
        # The emulator's FIFO queues stay moto's: strict arrival order, no fair reordering.
        queue = new_queue(fifo=True)
        sent = bodies("A", 30) + bodies("B", 5)
        send(queue, bodies("A", 30), group="A", fifo=True)
        send(queue, bodies("B", 5), group="B", fifo=True)
        self.assertEqual(drain(queue), sent)


if __name__ == "__main__":
    unittest.main()
