#!/usr/bin/env python3
"""Uploads a directory tree into an S3 bucket under a key prefix, one object per file, the
keys being the files' paths relative to the tree (what registry:2's s3 driver expects under its
rootdirectory). For benchmarks: a generated registry:2 data directory loaded into Garage.

Usage: s3-upload-tree.py DIR PREFIX   (endpoint, keys, bucket, region from BERTH_TEST_GARAGE_*)
"""
import concurrent.futures
import os
import sys

import boto3
from botocore.config import Config


def main():
    root, prefix = sys.argv[1], sys.argv[2].strip("/")
    env = os.environ
    s3 = boto3.client(
        "s3",
        endpoint_url=env["BERTH_TEST_GARAGE_ENDPOINT"],
        aws_access_key_id=env["BERTH_TEST_GARAGE_KEY_ID"],
        aws_secret_access_key=env["BERTH_TEST_GARAGE_SECRET_KEY"],
        region_name=env["BERTH_TEST_GARAGE_REGION"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )
    bucket = env["BERTH_TEST_GARAGE_BUCKET"]
    files = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            files.append((path, f"{prefix}/{os.path.relpath(path, root)}"))

    def put(item):
        path, key = item
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key=key, Body=f.read())

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        for _ in pool.map(put, files):
            pass
    print(f"uploaded {len(files)} objects under {prefix}/", file=sys.stderr)


if __name__ == "__main__":
    main()
