"""Shared fixtures: AWS env isolation, in-process moto DynamoDB, settings from a TOML string, the app wired
with ``bootstrap`` on moto."""

from __future__ import annotations

import logging
import os
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from chalicelib.bootstrap import AwsClients, Container, bootstrap
from chalicelib.logs import JsonFormatter
from chalicelib.settings import Settings, TableNames, settings_from_env
from devstack.tables import create_tables

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "providers"


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach real AWS or read the developer's credentials."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


_MOTO_CALLS = threading.RLock()


@pytest.fixture
def dynamodb_client(monkeypatch: pytest.MonkeyPatch):
    """moto's in-process DynamoDB with the tables of infra/tables.json.

    Its calls are served one at a time: moto runs each request in the caller's thread without a lock, so two
    threads' ``ADD`` to one item could lose one increment, which DynamoDB never does (the embedded server of the
    local stack serializes its requests for the same reason)."""
    serve = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: object) -> object:
        with _MOTO_CALLS:
            return serve(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, TableNames())
        yield client


@pytest.fixture
def server():
    """A fake provider: a real HTTP server on 127.0.0.1 (tests add its routes)."""
    from tests.fakes.provider_server import FakeProviderServer

    with FakeProviderServer() as fake:
        yield fake


@pytest.fixture
def dynamodb(dynamodb_client):
    """Shorter name for ``dynamodb_client``."""
    return dynamodb_client


class FakeClock:
    """A wall clock the test moves by hand: ``clock.now += 5``."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs():
    """Every structured log line the service writes during the test, formatted as in production."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Capture()
    logging.getLogger("model_catalog").addHandler(handler)
    yield lines
    logging.getLogger("model_catalog").removeHandler(handler)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from a TOML text and extra env vars (private URLs allowed: fakes live on 127.0.0.1)."""

    def build(toml: str, **env: str) -> Settings:
        path = tmp_path / "catalog.toml"
        path.write_text(textwrap.dedent(toml))
        environ = {
            "MODEL_CATALOG_CONFIG": str(path),
            "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
            "MODEL_CATALOG_DEPLOYMENT_ID": "test-deployment",
            **env,
        }
        return settings_from_env(environ)

    return build


def wired(settings: Settings, dynamodb_client: object, **kwargs: object) -> Container:
    """The service as ``bootstrap`` wires it, on the given (moto) DynamoDB client; other AWS clients are created on
    first use (inside ``mock_aws`` they are moto's too)."""
    return bootstrap(settings, aws=AwsClients(settings, overrides={"dynamodb": dynamodb_client}), **kwargs)


def unless_installed(tool: Path, what: str) -> pytest.MarkDecorator:
    """Skip a test whose real client (``tool``) is missing on a developer's machine; under ``make test``
    (``MODEL_CATALOG_REQUIRE_CLIENTS=1``, as CI runs it) the test runs anyway and fails, so a broken install can
    never turn into a silently green run."""
    required = os.environ.get("MODEL_CATALOG_REQUIRE_CLIENTS") == "1"
    return pytest.mark.skipif(not tool.exists() and not required, reason=f"{what} is not installed at {tool}")
