"""Baseline Lambda runtime loop for Python handlers: `python bootstrap.py <handler module>`.

Like AWS's Python runtime it imports the handler module during init (module-level imports and
boto3 client creation count in the cold start), then loops: GET next event, call
`handler(event, context)`, POST the JSON answer (or an error document).
"""

import http.client
import importlib
import json
import os
import socket
import sys
import time
import traceback

API = "/2018-06-01/runtime"


class Context:
    """The fields of the Lambda context object handlers commonly read."""

    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")

    def get_remaining_time_in_millis(self):
        return max(0, self.deadline_ms - int(time.time() * 1000))


def connect():
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80))
    connection.connect()
    # http.client sends headers and body in two writes; without NODELAY, Nagle would hold the
    # body back until the peer's delayed ACK (~40 ms).
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def post(connection, path, body):
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    connection.getresponse().read()


def error_document(error):
    return json.dumps(
        {
            "errorType": type(error).__name__,
            "errorMessage": str(error),
            "stackTrace": traceback.format_exception(error)[-5:],
        }
    ).encode()


def main():
    connection = connect()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "handlers"))
    try:
        handler = importlib.import_module(sys.argv[1]).handler
    except Exception as error:  # an init failure is reported once, then the process exits
        post(connection, f"{API}/init/error", error_document(error))
        raise
    while True:
        connection.request("GET", f"{API}/invocation/next")
        answer = connection.getresponse()
        event = json.loads(answer.read())
        context = Context(answer.headers)
        try:
            result = handler(event, context)
            post(connection, f"{API}/invocation/{context.aws_request_id}/response", json.dumps(result).encode())
        except Exception as error:
            post(connection, f"{API}/invocation/{context.aws_request_id}/error", error_document(error))


if __name__ == "__main__":
    main()
