"""Settings: the one module that reads ``os.environ`` for settings.

``settings_from_env`` resolves the environment and loads the TOML config (``chalicelib.catalog_config``)
once; everything else receives a frozen ``Settings`` object. A config that cannot be used raises ``ConfigError``
naming the file, the key and the problem. The pydantic config schema is imported on first use, not at
``import app`` (cold start).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from chalicelib.errors import ConfigError

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig, CatalogOptions

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLE_CONFIG = PACKAGE_DIR / "config" / "example.toml"

@dataclass(frozen=True)
class TableNames:
    catalog: str = "model-catalog-catalog"
    locks: str = "model-catalog-locks"
    connections: str = "model-catalog-connections"
    events: str = "model-catalog-events"
    webhooks: str = "model-catalog-webhooks"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know, resolved from the config file and the environment."""

    config: CatalogConfig
    config_path: Path
    api_token: str | None = field(repr=False)  # a secret (or a reference to one): never in repr()
    api_token_secret_id: str | None
    tables: TableNames
    region: str
    dynamodb_endpoint: str | None
    allow_private_urls: bool
    ws_api_id: str | None
    ws_stage: str
    ws_management_endpoint: str | None
    ws_public_url: str | None
    kms_key_id: str | None
    local_key_file: Path | None
    deployment_id: str  # "this deployment" for refresh_on_start
    log_level: str
    environ: Mapping[str, str] = field(repr=False, default_factory=dict)
    # Deployed only: the EventBridge bus every catalog event is also put on (unset: off), and the function that
    # delivers webhooks, invoked asynchronously after a commit (unset: a thread of this process does it).
    event_bus: str | None = None
    webhook_function: str | None = None

    @property
    def options(self) -> CatalogOptions:
        return self.config.model_catalog

    def secret_env(self, name: str) -> str | None:
        """The value of an env var named by the config (``api_key_env``, ``refresh_token_env``)."""
        value = self.environ.get(name)
        return value if value else None


def _code_and_config_fingerprint(config_path: Path) -> str:
    """Identifies a deployment when none is named: a new code bundle or config is a new deployment."""
    digest = hashlib.sha256()
    for path in sorted([*PACKAGE_DIR.rglob("*.py"), PACKAGE_DIR.parent / "app.py", config_path]):
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return "code-" + digest.hexdigest()[:16]


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from an environment mapping (``os.environ`` by default)."""
    from chalicelib.catalog_config import load_config, parse_bool

    environ = dict(os.environ if environ is None else environ)
    allow_private = parse_bool(
        "MODEL_CATALOG_ALLOW_PRIVATE_URLS", environ.get("MODEL_CATALOG_ALLOW_PRIVATE_URLS") or "0"
    )
    config_path = Path(environ.get("MODEL_CATALOG_CONFIG") or EXAMPLE_CONFIG)
    if not config_path.is_absolute() and not config_path.exists():
        # Deployed, relative paths are relative to the bundle (the directory holding app.py).
        bundled = PACKAGE_DIR.parent / config_path
        config_path = bundled if bundled.exists() else config_path
    config = load_config(config_path, environ, allow_private)
    endpoint = environ.get("MODEL_CATALOG_DYNAMODB_ENDPOINT") or None
    if endpoint == "aws":
        endpoint = None
    key_file = environ.get("MODEL_CATALOG_LOCAL_KEY_FILE")
    return Settings(
        config=config,
        config_path=config_path,
        api_token=environ.get("MODEL_CATALOG_API_TOKEN") or None,
        api_token_secret_id=environ.get("MODEL_CATALOG_API_TOKEN_SECRET_ID") or None,
        tables=TableNames(
            catalog=environ.get("MODEL_CATALOG_CATALOG_TABLE") or TableNames.catalog,
            locks=environ.get("MODEL_CATALOG_LOCKS_TABLE") or TableNames.locks,
            connections=environ.get("MODEL_CATALOG_CONNECTIONS_TABLE") or TableNames.connections,
            events=environ.get("MODEL_CATALOG_EVENTS_TABLE") or TableNames.events,
            webhooks=environ.get("MODEL_CATALOG_WEBHOOKS_TABLE") or TableNames.webhooks,
        ),
        region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        dynamodb_endpoint=endpoint,
        allow_private_urls=allow_private,
        ws_api_id=environ.get("MODEL_CATALOG_WS_API_ID") or None,
        ws_stage=environ.get("MODEL_CATALOG_WS_STAGE") or "api",
        ws_management_endpoint=environ.get("MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT") or None,
        ws_public_url=environ.get("MODEL_CATALOG_WS_URL") or None,
        kms_key_id=environ.get("MODEL_CATALOG_KMS_KEY_ID") or None,
        local_key_file=Path(key_file) if key_file else None,
        deployment_id=environ.get("MODEL_CATALOG_DEPLOYMENT_ID") or _code_and_config_fingerprint(config_path),
        log_level=(environ.get("MODEL_CATALOG_LOG_LEVEL") or "INFO").upper(),
        environ=environ,
        event_bus=environ.get("MODEL_CATALOG_EVENT_BUS") or None,
        webhook_function=environ.get("MODEL_CATALOG_WEBHOOK_FUNCTION") or None,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use (never at import time)."""
    return settings_from_env()


def schedule_rate_minutes(environ: Mapping[str, str] | None = None) -> int:
    """How often EventBridge fires the tick (a stage setting; read at import by the @app.schedule)."""
    environ = os.environ if environ is None else environ
    raw = environ.get("MODEL_CATALOG_SCHEDULE_RATE_MINUTES") or "1"
    try:
        minutes = int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable MODEL_CATALOG_SCHEDULE_RATE_MINUTES={raw!r}: expected whole minutes"
        ) from None
    if minutes < 1:
        raise ConfigError("environment variable MODEL_CATALOG_SCHEDULE_RATE_MINUTES: EventBridge's minimum is 1 minute")
    return minutes
