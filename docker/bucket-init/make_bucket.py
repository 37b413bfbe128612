"""The compose file's one-shot ``bucket-init``: make the local S3 server's bucket, then exit 0.

It speaks only the S3 API (CreateBucket), so it works against any S3-compatible server, and
it runs in Drive's own image, which already has botocore. A bucket that already exists is
success, so restarts and re-runs are harmless; a server that is not answering yet is retried
for up to ``S3_INIT_WAIT`` seconds (default 60). Any other answer fails the service (exit 1),
and compose then never starts the app.

Settings (environment): ``S3_INIT_ENDPOINT``, ``S3_INIT_ACCESS_KEY``, ``S3_INIT_SECRET_KEY``,
``S3_INIT_BUCKET`` (required), ``S3_INIT_REGION`` (default us-east-1), ``S3_INIT_WAIT``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

EXISTS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def main() -> int:
    required = ("S3_INIT_ENDPOINT", "S3_INIT_BUCKET", "S3_INIT_ACCESS_KEY", "S3_INIT_SECRET_KEY")
    for name in required:
        if not os.environ.get(name):
            print(f"bucket-init: {name} must be set", file=sys.stderr)
            return 2
    endpoint, bucket, access_key, secret_key = (os.environ[name] for name in required)
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("S3_INIT_REGION", "us-east-1"),
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10),
    )
    deadline = time.monotonic() + float(os.environ.get("S3_INIT_WAIT", "60"))
    while True:
        try:
            return make_bucket(client, bucket)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status < 500 or time.monotonic() > deadline:
                code = error.response.get("Error", {}).get("Code", "") or status
                print(f"bucket-init: cannot create bucket {bucket}: {code}", file=sys.stderr)
                return 1
        except (ConnectionError, HTTPClientError) as error:  # not listening (yet)
            if time.monotonic() > deadline:
                print(f"bucket-init: {endpoint} does not answer: {type(error).__name__}", file=sys.stderr)
                return 1
        time.sleep(1)


def make_bucket(client: Any, bucket: str) -> int:
    # HeadBucket first: us-east-1 style servers answer CreateBucket of one's own bucket with 200.
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
    else:
        print(f"bucket-init: bucket {bucket} already exists")
        return 0
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in EXISTS:  # lost a race with another init
            raise
    print(f"bucket-init: created bucket {bucket}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
