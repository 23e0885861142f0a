"""The AWS emulator on loopback — scripts/emulator.py (moto server with atomic DynamoDB and fair
SQS queues, what `make dev` and `make test` run), through emulator_server.py's speed-ups of
moto's long queues — and what the benchmarks store in it: tables laid out as
crates/adapters/src/table.rs creates them, jobs queues, seeded task items."""

import contextlib
import os
import socket
import subprocess
import time
import uuid

import boto3

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


class Moto:
    def __init__(self, url, pid):
        self.url, self.pid = url, pid

    def cpu_seconds(self):
        """utime + stime of the server so far: what the emulator spent, whoever asked."""
        return cpu_seconds(self.pid)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulator_server.py")


@contextlib.contextmanager
def moto(venv, log_path):
    """The emulator (emulator_server.py) on a free loopback port for the duration of the block."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [os.path.join(venv, "bin", "python"), SERVER, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, 30)
        yield Moto(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def clients(endpoint):
    session = boto3.session.Session(region_name=REGION, **{k.lower(): v for k, v in CREDENTIALS.items()})
    names = ("dynamodb", "sns", "sqs", "cloudwatch", "s3")
    return {name: session.client(name, endpoint_url=endpoint) for name in names}


def create_bucket(s3, name):
    """The blobs bucket the functions get as BLOBS_BUCKET (crates/adapters/src/blobs.rs)."""
    s3.create_bucket(Bucket=name)
    return name


def create_queue(sqs, name):
    """A standard queue like the jobs queue (crates/localfleet/src/resources.rs); answers (URL, ARN)."""
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def create_table(dynamodb, name):
    """The layout of crates/adapters/src/table.rs at the time of writing: `pk` hash key, on-demand,
    NEW_AND_OLD_IMAGES stream, keys-only `by_status` index over (status, updated_at). Only a
    fallback: the harness copies the table `taskfleet-local` creates (seed.copy_table)."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return name


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def put_items(dynamodb, table, items):
    """Stores items with BatchWriteItem, 25 at a time, retrying what the emulator leaves over."""
    for start in range(0, len(items), 25):
        requests = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while requests:
            requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or None
