"""Unit tests of bench/harness/heat.py (DynamoDB's size, write-unit and index rules).

    .venv/bin/python -m unittest discover -s bench/tests      (scripts/bench.sh --smoke runs it)
    .venv/bin/python -m pytest bench/tests                     (if pytest is installed)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

import heat  # noqa: E402


def S(text):
    return {"S": text}


def N(number):
    return {"N": str(number)}


def table(indexes=(), local=()):
    return {
        "Table": {
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": list(indexes),
            **({"LocalSecondaryIndexes": list(local)} if local else {}),
        }
    }


def gsi(name, hash_key, range_key=None, projection="KEYS_ONLY", include=()):
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    proj = {"ProjectionType": projection}
    if projection == "INCLUDE":
        proj["NonKeyAttributes"] = list(include)
    return {"IndexName": name, "KeySchema": schema, "Projection": proj}


def insert(new):
    return {"eventName": "INSERT", "dynamodb": {"NewImage": new}}


def modify(old, new):
    return {"eventName": "MODIFY", "dynamodb": {"OldImage": old, "NewImage": new}}


def remove(old, ttl=False):
    record = {"eventName": "REMOVE", "dynamodb": {"OldImage": old}}
    if ttl:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def index_of(result, name):
    return next(i for i in result["indexes"] if i["name"] == name)


class ItemSize(unittest.TestCase):
    def test_scalars(self):
        self.assertEqual(heat.item_size({"ab": S("héllo")}), 2 + 6)  # é is two UTF-8 bytes
        self.assertEqual(heat.item_size({"n": N(12345)}), 1 + 3 + 1)  # 5 digits -> 3 bytes + 1
        self.assertEqual(heat.item_size({"n": N("0.0012300")}), 1 + 2 + 1)  # "123" after trimming
        self.assertEqual(heat.item_size({"n": N("-1200")}), 1 + 1 + 1)
        self.assertEqual(heat.item_size({"n": N(0)}), 1 + 2)
        self.assertEqual(heat.item_size({"b": {"B": b"\x00\x01\x02"}}), 1 + 3)
        self.assertEqual(heat.item_size({"b": {"B": "AAEC"}}), 1 + 3)  # base64 in raw JSON
        self.assertEqual(heat.item_size({"t": {"BOOL": True}, "z": {"NULL": True}}), 2 + 2)

    def test_documents_and_sets(self):
        self.assertEqual(heat.item_size({"l": {"L": []}}), 1 + 3)
        self.assertEqual(heat.item_size({"l": {"L": [S("ab"), N(1)]}}), 1 + 3 + (2 + 1) + (2 + 1))
        self.assertEqual(heat.item_size({"m": {"M": {"k": S("v"), "kk": {"M": {}}}}}),
                         1 + 3 + (1 + 1 + 1) + (2 + 3 + 1))
        self.assertEqual(heat.item_size({"s": {"SS": ["a", "bc"]}, "n": {"NS": ["1", "22"]}}), 1 + 3 + 1 + 4)

    def test_write_units(self):
        self.assertEqual(heat.write_units(0), 1)
        self.assertEqual(heat.write_units(1024), 1)
        self.assertEqual(heat.write_units(1025), 2)


class TableWrites(unittest.TestCase):
    def test_insert_modify_remove_and_the_larger_image(self):
        small = {"pk": S("TASK#1"), "x": S("a")}
        big = {"pk": S("TASK#1"), "x": S("a" * 3000)}
        result = heat.analyse(table(), [insert(small), modify(small, big), modify(big, small), remove(small)])
        t = result["table"]
        self.assertEqual(result["tasks"], 1)
        self.assertEqual(t["writes"], 4)
        self.assertEqual(t["wcu"], 1 + 3 + 3 + 1)  # an update is billed on the larger image
        self.assertEqual(t["operations"], {"put": 1, "update": 2, "delete": 1})
        self.assertEqual(t["hottest_key"], "TASK#1")

    def test_ttl_deletes_are_free_and_noops_are_billed_apart(self):
        item = {"pk": S("TASK#1"), "status": S("DONE")}
        desc = table([gsi("by_status", "status")])
        result = heat.analyse(desc, [insert(item), modify(item, item), remove(item, ttl=True)])
        self.assertEqual(result["ttl_deletes"], 1)
        self.assertEqual(result["noop_writes"], 1)
        self.assertEqual(result["table"]["writes"], 2)  # the insert and the no-op write
        self.assertEqual(index_of(result, "by_status")["writes"], 1)  # only the insert
        self.assertEqual(result["total"]["wcu"], 3)

    def test_task_count(self):
        records = [insert({"pk": S("TASK#1")}), insert({"pk": S("TASK#2")}), insert({"pk": S("APIKEY#k")}),
                   modify({"pk": S("TASK#1")}, {"pk": S("TASK#1"), "a": N(1)})]
        self.assertEqual(heat.analyse(table(), records)["tasks"], 2)
        self.assertEqual(heat.analyse(table(), records, tasks=4)["table"]["writes_per_task"], 1.0)


class IndexWrites(unittest.TestCase):
    desc = table([
        gsi("by_status", "status", "due_at", "INCLUDE", ["attempts"]),
        gsi("by_client", "client_id", "created_at", "KEYS_ONLY"),
        gsi("everything", "client_id", None, "ALL"),
    ])

    def item(self, **attributes):
        base = {"pk": S("TASK#1"), "client_id": S("c"), "created_at": N(1), "status": S("RECEIVED"),
                "due_at": N(5), "attempts": N(0), "payload": S("p")}
        base.update(attributes)
        return {k: v for k, v in base.items() if v is not None}

    def test_key_change_is_delete_plus_put_on_both_key_values(self):
        old, new = self.item(), self.item(status=S("IN_PROGRESS"), attempts=N(1))
        result = heat.analyse(self.desc, [insert(old), modify(old, new)])
        status = index_of(result, "by_status")
        self.assertEqual(status["writes"], 3)
        self.assertEqual(status["operations"], {"put": 2, "delete": 1})
        self.assertEqual(status["hottest_key"], "RECEIVED")  # put + delete
        self.assertEqual(status["hottest_writes_per_task"], 2.0)
        self.assertEqual(status["key_values"], 2)
        # keys-only by_client: neither its key nor a projected attribute changed
        self.assertEqual(index_of(result, "by_client")["writes"], 1)
        # ALL: any attribute change is an update
        self.assertEqual(index_of(result, "everything")["operations"], {"put": 1, "update": 1})

    def test_range_key_change_moves_the_entry(self):
        old, new = self.item(), self.item(due_at=N(9))
        result = heat.analyse(self.desc, [modify(old, new)])
        self.assertEqual(index_of(result, "by_status")["operations"], {"delete": 1, "put": 1})

    def test_projected_and_unprojected_changes(self):
        old = self.item()
        projected = heat.analyse(self.desc, [modify(old, self.item(attempts=N(2)))])
        self.assertEqual(index_of(projected, "by_status")["operations"], {"update": 1})
        self.assertEqual(index_of(projected, "by_client")["writes"], 0)
        unprojected = heat.analyse(self.desc, [modify(old, self.item(payload=S("q")))])
        self.assertEqual(index_of(unprojected, "by_status")["writes"], 0)
        self.assertEqual(index_of(unprojected, "everything")["writes"], 1)

    def test_sparse_index_entering_and_leaving(self):
        without = self.item(due_at=None)
        result = heat.analyse(self.desc, [insert(without)])
        self.assertEqual(index_of(result, "by_status")["writes"], 0)
        entering = heat.analyse(self.desc, [modify(without, self.item())])
        self.assertEqual(index_of(entering, "by_status")["operations"], {"put": 1})
        leaving = heat.analyse(self.desc, [modify(self.item(), without)])
        self.assertEqual(index_of(leaving, "by_status")["operations"], {"delete": 1})
        self.assertEqual(index_of(leaving, "by_status")["hottest_key"], "RECEIVED")
        removed = heat.analyse(self.desc, [remove(self.item())])
        self.assertEqual(index_of(removed, "by_client")["operations"], {"delete": 1})

    def test_entry_size_counts_projection_and_overhead(self):
        item = self.item(payload=S("x" * 1920))
        self.assertTrue(2048 - 100 < heat.item_size(item) <= 2048)
        result = heat.analyse(self.desc, [insert(item)])
        self.assertEqual(result["table"]["wcu"], 2)
        self.assertEqual(index_of(result, "by_client")["wcu"], 1)  # keys only: small
        self.assertEqual(index_of(result, "everything")["wcu"], 3)  # the same item + 100 bytes
        index = heat.Table(self.desc).indexes[1]
        entry = index.entry(self.item())
        self.assertEqual(set(entry), {"pk", "client_id", "created_at"})
        self.assertEqual(index.entry_size(self.item()), heat.item_size(entry) + 100)

    def test_heat_and_ceiling_of_one_hot_key(self):
        records = []
        for n in range(10):
            item = self.item(pk=S(f"TASK#{n}"))
            records += [insert(item), modify(item, self.item(pk=S(f"TASK#{n}"), status=S("DONE")))]
        result = heat.analyse(self.desc, records)
        self.assertEqual(result["tasks"], 10)
        self.assertAlmostEqual(result["table"]["hottest_writes_per_task"], 0.2)
        everything = index_of(result, "everything")  # client "c" takes every write
        self.assertEqual(everything["hottest_key"], "c")
        self.assertAlmostEqual(everything["hottest_writes_per_task"], 2.0)
        self.assertAlmostEqual(everything["ceiling_tasks_per_s"], 500.0)
        status = index_of(result, "by_status")
        self.assertAlmostEqual(status["writes_per_task"], 3.0)
        self.assertAlmostEqual(result["ceiling_tasks_per_s"], 500.0)
        self.assertIn(result["ceiling_set_by"], ("everything", "by_status"))  # both 2 units per task
        # every table key value is one task's own item: the hottest, but no ceiling
        self.assertTrue(result["table"]["hottest_key_one_task"])
        self.assertIsNone(result["table"]["ceiling_tasks_per_s"])
        self.assertEqual(result["table"]["shared_keys"], 0)

    def test_a_tasks_companion_items_are_its_own(self):
        records = []
        for n in range(4):
            records += [insert({"pk": S(f"TASK#id-{n}"), "g": S(f"shard#{n % 2}")}),
                        insert({"pk": S(f"PAYLOAD#id-{n}"), "data": S("x" * 5000), "o": S(f"id-{n}")})]
        desc = table([gsi("by_owner", "o", None, "KEYS_ONLY"), gsi("by_shard", "g", None, "KEYS_ONLY")])
        result = heat.analyse(desc, records)
        self.assertEqual(result["tasks"], 4)
        t = result["table"]
        self.assertTrue(t["hottest_key"].startswith("PAYLOAD#"))  # 5 write units
        self.assertTrue(t["hottest_key_one_task"])
        self.assertIsNone(t["ceiling_tasks_per_s"])
        self.assertIsNone(index_of(result, "by_owner")["ceiling_tasks_per_s"])
        shard = index_of(result, "by_shard")
        self.assertEqual(shard["shared_keys"], 2)
        self.assertAlmostEqual(shard["shared_hottest_writes_per_task"], 0.5)
        self.assertAlmostEqual(result["ceiling_tasks_per_s"], 2000.0)

    def test_an_item_every_task_writes_is_a_shared_key(self):
        records = []
        for n in range(4):
            records.append(insert({"pk": S(f"TASK#{n}")}))
            records.append(modify({"pk": S("COUNTER#c"), "n": N(n)}, {"pk": S("COUNTER#c"), "n": N(n + 1)}))
        t = heat.analyse(table(), records)["table"]
        self.assertEqual(t["hottest_key"], "COUNTER#c")
        self.assertFalse(t["hottest_key_one_task"])
        self.assertEqual(t["shared_hottest_key"], "COUNTER#c")
        self.assertAlmostEqual(t["shared_hottest_wcu_per_task"], 1.0)
        self.assertAlmostEqual(t["ceiling_tasks_per_s"], 1000.0)


if __name__ == "__main__":
    unittest.main()
