"""The local stack behind ``make run``: everything the deployed service gets from AWS, on 127.0.0.1.

- ``dynamodb``  — embedded DynamoDB (moto server in a child process, requests serialized, snapshotted to disk)
- ``gateway``   — WebSocket gateway + ``@connections`` management API, shaped like API Gateway's
- ``scheduler`` — fires the scheduled function like the EventBridge rule
- ``demo_registry`` — serves the bundled models.dev-style ``demo_registry.json``
- ``stack``     — starts and stops all of it around the Chalice app (``python -m devstack``)
- ``tables``    — creates the tables of ``infra/tables.json`` (also used by the tests)
- ``logformat`` — short, coloured log lines for a terminal (``MODEL_CATALOG_LOG_FORMAT``)

Nothing here is imported by the deployed functions, and none of it is in the deployment zip: this package lives
outside ``chalicelib/``, and chalice bundles only ``app.py`` and ``chalicelib/`` (``infra/check_package.py``
fails the build if any of it shows up there).
"""

from __future__ import annotations

import random
import time
import uuid

# Request ids name a request in logs: they need no unpredictability, and the OS's random source (``uuid.uuid4``,
# ``secrets``) costs a system call per draw, several per WebSocket message locally.
REQUEST_IDS = random.Random()


def request_uuid() -> str:
    """A version-4 UUID for a request id (``aws_request_id``, ``x-amzn-RequestId``)."""
    return str(uuid.UUID(int=REQUEST_IDS.getrandbits(128), version=4))


class LambdaContext:
    """The parts of the Lambda context object that handlers commonly read."""

    def __init__(self, function_name: str, timeout_s: float, memory_limit_in_mb: int = 512):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = request_uuid()
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
