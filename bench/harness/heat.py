"""Partition heat and write units from a table's own definition and its stream — pure functions,
no AWS client, no server (bench/tests/test_heat.py tests them).

Given DescribeTable's `Table` (KeySchema, GlobalSecondaryIndexes / LocalSecondaryIndexes with
their KeySchema and Projection) and the table's stream records (NEW_AND_OLD_IMAGES, DynamoDB
JSON), `analyse` replays every write as DynamoDB bills it, for the table and for every index:
how many writes, how many write units, and how they spread over partition key values.

The rules, from the DynamoDB Developer Guide:

- Item size ("DynamoDB item sizes and formats", CapacityUnitCalculations.html): the sum of the
  attribute names' UTF-8 bytes and the values' sizes. S: UTF-8 bytes; N: ~1 byte per two
  significant digits (leading and trailing zeroes trimmed) + 1; B: raw bytes; BOOL and NULL: 1;
  L and M: 3 bytes + the nested elements (and, for M, their names) + 1 byte per element; sets:
  the sum of their elements.
- Table writes ("Write operations", read-write-operations.html#write-operation-consumption and
  provisioned-capacity-mode.html): PutItem and UpdateItem are billed on the larger of the item
  before and after the write, DeleteItem on the deleted item, one write unit per started 1 KB.
  A stream record gives both images, so INSERT and MODIFY = 1 write of ceil(max(old, new) / 1 KB)
  units, REMOVE = 1 write of ceil(old / 1 KB) units.
- TTL deletes are free ("Time to Live", TTL.html: deletions by TTL consume no write throughput);
  their stream records carry userIdentity {type: Service, principalId: dynamodb.amazonaws.com}.
  They are counted apart and cost nothing here (moto never expires items, so a local run has none).
- Index writes ("Global secondary indexes: write capacity", GSI.html#GSI.ThroughputConsiderations
  .Writes): an item is in an index only if it has every index key attribute (sparse indexes).
  Not in before, in after: 1 write (put). In before, not after: 1 write (delete). In both with a
  changed index key value: 2 writes (delete the old entry, put the new one). In both with the
  same key: 1 write if a projected attribute changed, else none. Not in either: none.
  "Larger index entries require additional write capacity units": an entry's size is its
  projected attributes — the index keys and the table's primary key always, all attributes for
  ALL, the listed NonKeyAttributes for INCLUDE — plus 100 bytes (the per-index-item overhead the
  GSI storage rule names; it only moves entries that are close to a 1 KB boundary). Updates
  are billed on the larger of the old and new entry, like UpdateItem on the table.
- Partition heat: a partition key value takes at most 1,000 write units per second
  ("Partitions and data distribution" / "burst and adaptive capacity", bp-partition-key-design
  .html), so the key value with the most write units per task caps the table at
  1,000 / (its write units per task) tasks per second. A delete counts against the key value it
  leaves, a put against the one it enters. A key value written only through one task's own
  items takes a fixed number of writes over that task's life, however many tasks run: it is
  reported as the hottest key when it is, but it sets no ceiling. A task's own items are those
  whose table partition key contains the id of a task inserted in the records (`TASK#<id>`,
  and any companion such as `PAYLOAD#<id>`). Every other key value (a status, a client, an item
  that names no task) is shared and does set a ceiling.

The emulator (moto) differs from DynamoDB on one point that matters here: a write that leaves
an item unchanged (a no-op UpdateItem, a PutItem of the same item) produces a MODIFY record
with identical images, where DynamoDB produces no record — but DynamoDB still bills the write.
Such records are billed on the table (never on an index: nothing changed) and also counted
apart as `noop_writes`. Writes DynamoDB bills without any stream record at all (a conditional
write whose condition failed) are not visible here; the step counts them at the proxy.
"""

import base64
import collections
import json
import math

KB = 1024
INDEX_ENTRY_OVERHEAD = 100  # bytes per index item (GSI storage rule)
PARTITION_WCU_PER_SECOND = 1000  # per partition key value
TTL_PRINCIPAL = "dynamodb.amazonaws.com"


# ---- item sizes ----------------------------------------------------------------------------


def _utf8(text):
    return len(text.encode("utf-8"))


def number_size(text):
    """~1 byte per two significant digits + 1 byte; leading and trailing zeroes trimmed."""
    mantissa = str(text).strip().lstrip("+-").lower().split("e", 1)[0]
    digits = mantissa.replace(".", "").lstrip("0").rstrip("0")
    return (max(1, len(digits)) + 1) // 2 + 1


def _binary_size(value):
    """Raw bytes: boto3 hands bytes, raw DynamoDB JSON a base64 string."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return len(base64.b64decode(value))


def value_size(value):
    """Size of one typed value ({"S": "..."}, {"M": {...}}, ...) without its name."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(s) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(_binary_size(b) for b in inner)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(_utf8(name) + value_size(v) + 1 for name, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item):
    """Bytes DynamoDB bills an item (a dict of attribute name -> typed value) on."""
    return sum(_utf8(name) + value_size(value) for name, value in (item or {}).items())


def write_units(size):
    """Write units of one write of `size` bytes: one per started KB, at least one."""
    return max(1, math.ceil(size / KB))


# ---- the table's definition ----------------------------------------------------------------


def _keys(key_schema):
    hash_key = next(k["AttributeName"] for k in key_schema if k["KeyType"] == "HASH")
    range_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "RANGE"), None)
    return hash_key, range_key


class Index:
    """One secondary index as DescribeTable describes it."""

    def __init__(self, description, table_keys, local=False):
        self.name = description["IndexName"]
        self.local = local
        self.hash_key, self.range_key = _keys(description["KeySchema"])
        self.key_attributes = [k for k in (self.hash_key, self.range_key) if k]
        projection = description.get("Projection") or {"ProjectionType": "ALL"}
        self.projection = projection.get("ProjectionType", "ALL")
        always = set(self.key_attributes) | set(table_keys)
        self.non_key = list(projection.get("NonKeyAttributes", [])) if self.projection == "INCLUDE" else []
        if self.projection == "ALL":
            self.projected = None  # every attribute
        elif self.projection == "INCLUDE":
            self.projected = always | set(projection.get("NonKeyAttributes", []))
        else:  # KEYS_ONLY
            self.projected = always

    def contains(self, image):
        """Sparse index: only items with every index key attribute are in it."""
        return image is not None and all(k in image for k in self.key_attributes)

    def entry(self, image):
        if self.projected is None:
            return dict(image)
        return {k: v for k, v in image.items() if k in self.projected}

    def entry_size(self, image):
        return item_size(self.entry(image)) + INDEX_ENTRY_OVERHEAD

    def key(self, image):
        return tuple(_canonical(image[k]) for k in self.key_attributes)

    def describe(self):
        text = self.projection
        if self.projection == "INCLUDE":
            text += " (" + ", ".join(self.non_key) + ")"
        return text


class Table:
    def __init__(self, description):
        description = description.get("Table", description)
        self.name = description.get("TableName", "?")
        self.hash_key, self.range_key = _keys(description["KeySchema"])
        self.key_attributes = [k for k in (self.hash_key, self.range_key) if k]
        self.indexes = [Index(i, self.key_attributes) for i in description.get("GlobalSecondaryIndexes") or []]
        self.indexes += [Index(i, self.key_attributes, local=True)
                         for i in description.get("LocalSecondaryIndexes") or []]


def _canonical(value):
    """A typed value as a comparable, hashable string."""
    return json.dumps(value, sort_keys=True, default=lambda b: base64.b64encode(b).decode())


def _scalar(value):
    """A key value for display: the string or number itself."""
    ((kind, inner),) = value.items()
    if isinstance(inner, (bytes, bytearray)):
        return base64.b64encode(inner).decode()
    return str(inner)


# ---- replaying the stream ------------------------------------------------------------------


class Tally:
    """Writes and write units of the table or of one index, in total and per partition key value."""

    def __init__(self, name, kind, hash_key, detail=""):
        self.name, self.kind, self.hash_key, self.detail = name, kind, hash_key, detail
        self.writes = self.wcu = 0
        self.by_operation = collections.Counter()  # put / update / delete / noop
        self.key_writes = collections.Counter()
        self.key_wcu = collections.Counter()
        self.key_owners = collections.defaultdict(set)  # key value -> who wrote it (up to 2)

    def add(self, operation, key_value, units, owner):
        """One write of `units` against partition key value `key_value`, caused by a write to a
        table item of `owner`: ("task", id) for a task's own items, ("item", key) otherwise."""
        self.writes += 1
        self.wcu += units
        self.by_operation[operation] += 1
        self.key_writes[key_value] += 1
        self.key_wcu[key_value] += units
        if len(self.key_owners[key_value]) < 2:
            self.key_owners[key_value].add(owner)

    def one_task(self, key_value):
        """Written only through one task's own items: no ceiling, however hot."""
        owners = self.key_owners[key_value]
        return len(owners) == 1 and next(iter(owners))[0] == "task"

    def summary(self, tasks):
        per = 1 / tasks if tasks else 0.0
        hottest, hottest_writes = max(self.key_writes.items(), key=lambda kv: (kv[1], self.key_wcu[kv[0]], kv[0]),
                                      default=(None, 0))
        shared = {k: v for k, v in self.key_wcu.items() if not self.one_task(k)}
        hot, hot_wcu = max(shared.items(), key=lambda kv: (kv[1], self.key_writes[kv[0]], kv[0]), default=(None, 0))
        hot_writes = max((self.key_writes[k] for k in shared), default=0)
        return {
            "name": self.name,
            "kind": self.kind,
            "partition_key": self.hash_key,
            "detail": self.detail,
            "writes": self.writes,
            "wcu": self.wcu,
            "operations": dict(self.by_operation),
            "key_values": len(self.key_writes),
            "writes_per_task": self.writes * per,
            "wcu_per_task": self.wcu * per,
            "hottest_key": hottest,
            "hottest_writes_per_task": hottest_writes * per,
            "hottest_key_wcu_per_task": self.key_wcu[hottest] * per if hottest is not None else 0.0,
            "hottest_key_one_task": hottest is not None and self.one_task(hottest),
            "shared_keys": len(shared),
            "shared_hottest_key": hot,
            "shared_hottest_wcu_per_task": hot_wcu * per,
            "shared_hottest_writes_per_task": self.key_writes[hot] * per if hot is not None else 0.0,
            "shared_max_writes_per_task": hot_writes * per,
            # 1,000 write units per second per key value, against the shared key with the most
            # write units per task (None: no shared key, no ceiling from heat).
            "ceiling_tasks_per_s": PARTITION_WCU_PER_SECOND / (hot_wcu * per) if hot_wcu and per else None,
            "ceiling_by_writes_tasks_per_s": (PARTITION_WCU_PER_SECOND / (hot_writes * per)
                                              if hot_writes and per else None),
        }


def _record_parts(record):
    body = record.get("dynamodb", {})
    return record.get("eventName"), body.get("OldImage"), body.get("NewImage")


def is_ttl_delete(record):
    identity = record.get("userIdentity") or {}
    return record.get("eventName") == "REMOVE" and identity.get("principalId") == TTL_PRINCIPAL


def task_ids(table, records, task_prefix="TASK#"):
    """Ids of the task items inserted (partition key `task_prefix` + id)."""
    seen = set()
    for record in records:
        event, _, new = _record_parts(record)
        if event == "INSERT" and new:
            value = new.get(table.hash_key, {}).get("S", "")
            if value.startswith(task_prefix) and len(value) > len(task_prefix):
                seen.add(value[len(task_prefix):])
    return seen


def count_tasks(table, records, task_prefix="TASK#"):
    """Distinct items whose partition key starts with `task_prefix` that were inserted."""
    return len(task_ids(table, records, task_prefix))


class _Owners:
    """Which task a table item belongs to: the task whose id its partition key contains."""

    def __init__(self, ids):
        self.ids = ids
        self.lengths = sorted({len(i) for i in ids})
        self.cache = {}

    def __call__(self, hash_value, item):
        if hash_value not in self.cache:
            found = None
            for length in self.lengths:
                for start in range(len(hash_value) - length + 1):
                    if hash_value[start : start + length] in self.ids:
                        found = hash_value[start : start + length]
                        break
                if found:
                    break
            self.cache[hash_value] = found
        task = self.cache[hash_value]
        return ("task", task) if task else ("item", item)


def analyse(description, records, tasks=None, task_prefix="TASK#"):
    """Writes, write units and partition heat of the table and each of its indexes for the
    stream `records` (in any order). `tasks`: what to divide by; default = task items inserted."""
    table = Table(description)
    ids = task_ids(table, records, task_prefix)
    if tasks is None:
        tasks = len(ids)
    owner_of = _Owners(ids)
    main = Tally(table.name, "table", table.hash_key, "/".join(table.key_attributes))
    indexes = [Tally(i.name, "LSI" if i.local else "GSI", i.hash_key,
                     f"{'/'.join(i.key_attributes)}, {i.describe()}") for i in table.indexes]
    events = collections.Counter()
    noop = ttl = 0
    for record in records:
        event, old, new = _record_parts(record)
        events[event] += 1
        if event not in ("INSERT", "MODIFY", "REMOVE"):
            continue
        if event == "REMOVE" and is_ttl_delete(record):
            ttl += 1  # free, on the table and on its indexes
            continue
        if event == "INSERT":
            old = None
        if event == "REMOVE":
            new = None
        image = new if new is not None else old
        if image is None:
            continue  # a stream without images (KEYS_ONLY): nothing to size
        table_key = _scalar(image[table.hash_key])
        item = owner_of(table_key, (table_key, _scalar(image[table.range_key]) if table.range_key else None))
        if event == "MODIFY" and old == new:
            noop += 1
            main.add("noop", table_key, write_units(item_size(new)), item)
            continue
        operation = {"INSERT": "put", "MODIFY": "update", "REMOVE": "delete"}[event]
        main.add(operation, table_key, write_units(max(item_size(old), item_size(new))), item)
        for index, tally in zip(table.indexes, indexes):
            _index_writes(index, tally, old, new, item)
    results = {
        "table": main.summary(tasks),
        "indexes": [t.summary(tasks) for t in indexes],
        "tasks": tasks,
        "records": dict(events),
        "noop_writes": noop,
        "ttl_deletes": ttl,
    }
    everything = [results["table"]] + results["indexes"]
    results["total"] = {
        "writes": sum(t["writes"] for t in everything),
        "wcu": sum(t["wcu"] for t in everything),
        "writes_per_task": sum(t["writes_per_task"] for t in everything),
        "wcu_per_task": sum(t["wcu_per_task"] for t in everything),
    }
    ceilings = [(t["ceiling_tasks_per_s"], t["name"]) for t in everything if t["ceiling_tasks_per_s"]]
    results["ceiling_tasks_per_s"], results["ceiling_set_by"] = min(ceilings, default=(None, None))
    return results


def _index_writes(index, tally, old, new, item):
    was, now = index.contains(old), index.contains(new)
    if was and now:
        if index.key(old) != index.key(new):
            tally.add("delete", _scalar(old[index.hash_key]), write_units(index.entry_size(old)), item)
            tally.add("put", _scalar(new[index.hash_key]), write_units(index.entry_size(new)), item)
        elif index.entry(old) != index.entry(new):
            size = max(index.entry_size(old), index.entry_size(new))
            tally.add("update", _scalar(new[index.hash_key]), write_units(size), item)
    elif now:
        tally.add("put", _scalar(new[index.hash_key]), write_units(index.entry_size(new)), item)
    elif was:
        tally.add("delete", _scalar(old[index.hash_key]), write_units(index.entry_size(old)), item)
