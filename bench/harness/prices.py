"""AWS list prices used to turn calls into money: us-east-1, on-demand, no free tier.

Recorded from the public AWS pricing pages (Lambda, API Gateway, DynamoDB — after the
November 2024 on-demand reduction —, SNS, CloudWatch); this machine has no network, so they
are not re-read at run time. Check them before quoting the money figures.
"""

PRICES_AS_OF = "2025-06 (us-east-1 list prices; DynamoDB on-demand as cut on 2024-11-01)"

LAMBDA_REQUEST = 0.20 / 1e6  # per request
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
API_GATEWAY_HTTP_REQUEST = 1.00 / 1e6  # HTTP API, first 300 M requests a month
DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand write request unit (item <= 1 KB)
DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand read request unit (strongly consistent, <= 4 KB)
SNS_PUBLISH_REQUEST = 0.50 / 1e6  # per 64 KB chunk of a Publish or PublishBatch request
# Standard queue, per 64 KB chunk of a request (SendMessageBatch, ReceiveMessage and
# DeleteMessageBatch alike, whoever makes it: Lambda's SQS event source polls are billed).
SQS_REQUEST = 0.40 / 1e6
CLOUDWATCH_PUT_METRIC_DATA = 0.01 / 1000  # per request
CLOUDWATCH_CUSTOM_METRIC_MONTH = 0.30  # per metric (and dimension combination) per month
CLOUDWATCH_LOGS_INGESTED_GB = 0.50  # Standard log class, data ingested (first 10 TB a month)

# Free in AWS: SNS deliveries to Lambda (the design before the jobs queue), and the GetRecords
# calls Lambda's DynamoDB event source mapping makes.

# Lambda's CPU share grows with memory: 1,769 MB is one full vCPU.
FULL_VCPU_MB = 1769

# S3 Standard requests: PUT, COPY, POST and LIST per 1,000; GET, SELECT and all other requests per
# 1,000 (DELETE is free). Storage is not in the per-task model.
S3_PUT_REQUEST = 0.005 / 1000
S3_GET_REQUEST = 0.0004 / 1000
