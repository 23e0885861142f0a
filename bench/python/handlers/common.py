"""What the baseline handlers share: the table layout of crates/adapters/src/record.rs and
table.rs, client keys (SHA-256 digests, as crates/core/src/auth.rs), validation limits, and API
Gateway HTTP API (payload 2.0) answers in the shape of crates/api."""

import base64
import datetime
import hashlib
import json
import logging
import os
import re
import time

TASK_PREFIX = "TASK#"
STATUS_INDEX = "by_status"
MAX_BODY_BYTES = 256 * 1024
MAX_PAYLOAD_BYTES = 192 * 1024
MAX_RESULT_BYTES = 160 * 1024
MAX_ERROR_BYTES = 1024
TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("taskfleet")


def now_ms():
    return int(time.time() * 1000)


def rfc3339(millis):
    moment = datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def env_int(name, default):
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self):
        return answer(self.status, {"error": {"code": self.code, "message": self.message}})


def answer(status, body, headers=None):
    head = {"content-type": "application/json"}
    head.update(headers or {})
    return {"statusCode": status, "headers": head, "body": compact(body), "isBase64Encoded": False}


def api_keys(spec):
    """`client_id:key,client_id:key` -> {sha256(key): client_id}."""
    keys = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        client, _, key = entry.partition(":")
        if not CLIENT_ID.match(client.strip()) or len(key.strip()) < 16:
            raise ValueError("TASKFLEET_API_KEYS is invalid")
        keys[hashlib.sha256(key.strip().encode()).digest()] = client.strip()
    if not keys:
        raise ValueError("TASKFLEET_API_KEYS has no keys")
    return keys


def client_of(event, keys):
    presented = (event.get("headers") or {}).get("x-api-key")
    client = keys.get(hashlib.sha256(presented.encode()).digest()) if presented else None
    if client is None:
        raise ApiError(401, "unauthorized", "a valid x-api-key header is required")
    return client


def task_id_of(event):
    raw = (event.get("pathParameters") or {}).get("task_id")
    if raw is None:
        raise ApiError(404, "no_route", "no such route")
    if not TASK_ID.match(raw):
        raise ApiError(400, "invalid_task_id", "the task id is not a valid task id")
    return raw


def json_body(event):
    """The parsed JSON body; only application/json is read (as crates/api/src/request.rs)."""
    content_type = (event.get("headers") or {}).get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be sent as application/json")
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the body is empty")
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ApiError(400, "malformed_json", str(error)) from None


def ensure_size(field, value, limit):
    if len(compact(value).encode()) > limit:
        raise ApiError(413, "too_large", f"{field} is larger than {limit} bytes")


def task_key(task_id):
    return {"pk": {"S": TASK_PREFIX + task_id}}


def task_from_item(item):
    """A stored item as a plain dict (the record of crates/adapters/src/record.rs)."""
    task = {
        "task_id": item["task_id"]["S"],
        "client_id": item["client_id"]["S"],
        "status": item["status"]["S"],
        # Inline in the layout this baseline was written against; the Rust fleet now keeps it in
        # an item of its own (PAYLOAD#id), which the caller reads when it is not here.
        "payload": json.loads(item["payload"]["S"]) if "payload" in item else None,
        "attempts": int(item["attempts"]["N"]),
        "created_at": int(item["created_at"]["N"]),
        "updated_at": int(item["updated_at"]["N"]),
        "expires_at": int(item["expires_at"]["N"]),
    }
    if "result" in item:
        task["result"] = json.loads(item["result"]["S"])
    if "error" in item:
        task["error"] = item["error"]["S"]
    return task


def view(task):
    """What `GET /tasks/{id}` shows (crates/api/src/view.rs)."""
    shown = {"task_id": task["task_id"], "status": task["status"]}
    for field in ("result", "error"):
        if field in task:
            shown[field] = task[field]
    shown.update(
        attempts=task["attempts"],
        created_at=rfc3339(task["created_at"]),
        updated_at=rfc3339(task["updated_at"]),
        expires_at=rfc3339(task["expires_at"] * 1000),
    )
    return shown
