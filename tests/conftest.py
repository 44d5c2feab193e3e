"""Shared fixtures: AWS env isolation, in-process moto DynamoDB, settings from a TOML string."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chalicelib import wiring
from chalicelib.schema import create_tables
from chalicelib.settings import Settings, TableNames, settings_from_env

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
    wiring.reset()
    yield
    wiring.reset()


@pytest.fixture
def dynamodb_client():
    """moto's in-process DynamoDB with the tables of infra/tables.json."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, TableNames())
        yield client


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
