"""Unit tests of bench/harness/proxy.py's classification of S3 requests and failed calls."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))

from http_io import Message  # noqa: E402
from proxy import _union, classify, error_type  # noqa: E402

S3_AUTH = "AWS4-HMAC-SHA256 Credential=testing/20261130/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


def s3(method, target, host="127.0.0.1:4566", **headers):
    return Message(f"{method} {target} HTTP/1.1", {"host": host, "authorization": S3_AUTH, **headers}, b"")


class S3Operations(unittest.TestCase):
    def test_path_style(self):
        self.assertEqual(classify(s3("PUT", "/blobs")), ("s3", "CreateBucket"))
        self.assertEqual(classify(s3("PUT", "/blobs/payload/abc")), ("s3", "PutObject"))
        self.assertEqual(classify(s3("PUT", "/blobs/k?x-id=PutObject")), ("s3", "PutObject"))
        self.assertEqual(classify(s3("PUT", "/blobs/k", **{"x-amz-copy-source": "/blobs/j"})), ("s3", "CopyObject"))
        self.assertEqual(classify(s3("GET", "/blobs/payload/abc?x-id=GetObject")), ("s3", "GetObject"))
        self.assertEqual(classify(s3("GET", "/blobs?list-type=2")), ("s3", "ListObjects"))
        self.assertEqual(classify(s3("HEAD", "/blobs/k")), ("s3", "HeadObject"))
        self.assertEqual(classify(s3("DELETE", "/blobs/k")), ("s3", "DeleteObject"))
        self.assertEqual(classify(s3("POST", "/blobs?delete")), ("s3", "DeleteObjects"))

    def test_virtual_hosted_style(self):
        self.assertEqual(classify(s3("PUT", "/k", host="blobs.s3.localhost.localstack.cloud")), ("s3", "PutObject"))
        self.assertEqual(classify(s3("GET", "/?list-type=2", host="blobs.example")), ("s3", "ListObjects"))

    def test_json_protocols_unchanged(self):
        message = Message("POST / HTTP/1.1", {"x-amz-target": "DynamoDB_20120810.PutItem"}, b"{}")
        self.assertEqual(classify(message), ("dynamodb", "PutItem"))

    def test_error_type(self):
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"x"}'
        self.assertEqual(error_type(body), "ConditionalCheckFailedException")
        self.assertEqual(error_type(b"<Error/>"), "?")


class Waiting(unittest.TestCase):
    """The time some call was waiting: overlapping calls count once."""

    def test_disjoint_spans_add_up(self):
        self.assertAlmostEqual(_union([(0.0, 1.0), (2.0, 2.5)]), 1.5)

    def test_overlapping_and_nested_spans_count_once(self):
        self.assertAlmostEqual(_union([(0.0, 1.0), (0.5, 1.5), (0.6, 0.7), (3.0, 4.0)]), 2.5)

    def test_nothing_waited(self):
        self.assertEqual(_union([]), 0.0)


if __name__ == "__main__":
    unittest.main()
