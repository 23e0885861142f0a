"""The AWS emulator for local runs and tests: moto server, with DynamoDB made atomic.

DynamoDB applies each conditional write atomically: of two writes conditioned on the same
state, exactly one succeeds. moto's server is threaded and checks a condition and applies the
update without a lock, so under real concurrency both writes can pass their check (seen in the
chaos test as two starts of one attempt). This wrapper serializes DynamoDB and DynamoDB Streams
requests -- stronger than DynamoDB's per-item atomicity, never weaker -- and leaves everything
else (SNS, SQS long polls, CloudWatch) concurrent.

Usage: python scripts/emulator.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
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
