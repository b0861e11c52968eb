#!/usr/bin/env python3
"""The reference for the S3 prefix benchmark: boto3 listing a prefix and downloading every
object with 16 threads (the concurrency ocellus-dataset uses), as a hand-written importer would.

  s3_prefix_reference.py ENDPOINT BUCKET PREFIX OUT_DIR
Prints `boto3: N objects in S s = R objects/s`.
"""
import concurrent.futures
import os
import sys
import time

import boto3
from botocore.config import Config


def main() -> None:
    endpoint, bucket, prefix, out = sys.argv[1:5]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(max_pool_connections=16, s3={"addressing_style": "path"}),
    )
    start = time.perf_counter()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))

    def fetch(key: str) -> None:
        target = os.path.join(out, key[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        client.download_file(bucket, key, target)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(fetch, keys))
    elapsed = time.perf_counter() - start
    print(f"boto3: {len(keys)} objects in {elapsed:.1f} s = {len(keys) / elapsed:.0f} objects/s")


if __name__ == "__main__":
    main()
