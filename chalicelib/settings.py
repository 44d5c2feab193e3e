"""Settings: the TOML config file and the environment, validated once.

This is the only module that reads ``os.environ`` for settings. Everything else receives a
``Settings`` object (or a piece of it). A config that cannot be used raises ``ConfigError`` with a
message naming the file, the key and the problem; nothing is silently ignored.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from chalicelib.providers.kinds import KINDS

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLE_CONFIG = PACKAGE_DIR / "config" / "example.toml"

DEFAULT_REFRESH_INTERVAL_MS = 6 * 60 * 60 * 1000
PROVIDER_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class ConfigError(Exception):
    """The configuration cannot be used. The message names the file, the key and the problem."""


NonNegativeMs = Annotated[StrictInt, Field(ge=0)]
PositiveMs = Annotated[StrictInt, Field(gt=0)]


class _Strict(BaseModel):
    # snake_case and camelCase spellings are both accepted; anything else is an error.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class CatalogOptions(_Strict):
    """The ``[model_catalog]`` (or ``[modelCatalog]``) table."""

    refresh_interval_ms: NonNegativeMs = DEFAULT_REFRESH_INTERVAL_MS
    refresh_on_start: StrictBool = True
    # Extensions beyond CONTRACT §4, all optional.
    fetch_concurrency: Annotated[StrictInt, Field(ge=1, le=64)] = 16
    shrink_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    lock_wait_ms: PositiveMs = 8_000
    manual_run_deadline_ms: PositiveMs = 18_000
    scheduled_run_deadline_ms: PositiveMs = 120_000


Kind = Literal[tuple(KINDS)]  # type: ignore[valid-type]


class ProviderConfig(_Strict):
    """One ``[[providers]]`` entry."""

    id: Annotated[StrictStr, Field(pattern=PROVIDER_ID_PATTERN, max_length=128)]
    name: StrictStr | None = None
    kind: Kind
    base_url: StrictStr | None = None
    url: StrictStr | None = None
    api_key_env: Annotated[StrictStr, Field(pattern=ENV_NAME_PATTERN)] | None = None
    headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    model_filter: StrictStr | None = None
    timeout_ms: Annotated[StrictInt, Field(gt=0, le=300_000)] = 10_000
    allow_shrink: StrictBool = False
    # managed_oauth
    token_url: StrictStr | None = None
    client_id: StrictStr | None = None
    refresh_token_env: Annotated[StrictStr, Field(pattern=ENV_NAME_PATTERN)] | None = None
    scope: StrictStr | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def endpoint(self) -> str:
        """The URL the adapter starts from (``url`` for registries, else ``base_url``)."""
        return (self.url if self.kind == "registry" else self.base_url) or ""

    @property
    def refreshable(self) -> bool:
        return True

    @field_validator("model_filter")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if "\n" in header_value or "\r" in header_value:
                raise ValueError(f"header {name!r} contains a line break")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderConfig:
        spec = KINDS[self.kind]
        if self.kind != "registry" and self.base_url is None and spec.default_base_url:
            object.__setattr__(self, "base_url", spec.default_base_url)
        for required in spec.required_fields:
            if getattr(self, required) in (None, ""):
                raise ValueError(f"kind {self.kind!r} requires `{required}`")
        return self


class CatalogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_catalog: CatalogOptions = Field(
        default_factory=CatalogOptions,
        validation_alias=AliasChoices("model_catalog", "modelCatalog"),
    )
    providers: tuple[ProviderConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> CatalogConfig:
        seen: set[str] = set()
        for index, provider in enumerate(self.providers):
            if provider.id in seen:
                raise _KeyedError(f"providers[{index}].id", f"duplicate provider id {provider.id!r}")
            seen.add(provider.id)
        return self

    def provider(self, provider_id: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.id == provider_id), None)


class _KeyedError(ValueError):
    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class TableNames:
    catalog: str = "model-catalog-catalog"
    locks: str = "model-catalog-locks"
    connections: str = "model-catalog-connections"
    events: str = "model-catalog-events"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know, resolved from the config file and the environment."""

    config: CatalogConfig
    config_path: Path
    api_token: str | None
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

    @property
    def options(self) -> CatalogOptions:
        return self.config.model_catalog

    def secret_env(self, name: str) -> str | None:
        """The value of an env var named by the config (``api_key_env``, ``refresh_token_env``)."""
        value = self.environ.get(name)
        return value if value else None


def _parse_bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"environment variable {variable}={raw!r}: expected 1/true/yes or 0/false/no")


def _expand_env(value: Any, environ: Mapping[str, str], key: str, path: Path) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in config strings (used for local URLs)."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if environ.get(name):
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: {key}: environment variable {name} is not set")

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, environ, f"{key}.{k}" if key else k, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ, f"{key}[{i}]", path) for i, v in enumerate(value)]
    return value


def _describe_location(loc: tuple[Any, ...], raw: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
        elif item in ("model_catalog", "modelCatalog") and not parts:
            parts.append("modelCatalog" if "modelCatalog" in raw else "model_catalog")
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _check_url(provider: ProviderConfig, allow_private: bool) -> None:
    """Static URL checks; the HTTP layer re-checks resolved addresses and redirects at fetch time."""
    for attr in ("base_url", "url", "token_url"):
        value = getattr(provider, attr)
        if value is None:
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _KeyedError(attr, f"{value!r} is not an http(s) URL")
        if allow_private:
            continue
        if parts.scheme != "https":
            raise _KeyedError(
                attr, f"{value!r} must use https:// (set MODEL_CATALOG_ALLOW_PRIVATE_URLS=1 to allow http)"
            )
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            if parts.hostname.lower() in ("localhost", "localhost.localdomain"):
                raise _KeyedError(attr, f"{value!r} points to a loopback address") from None
            continue
        if not address.is_global:
            raise _KeyedError(attr, f"{value!r} points to a private or reserved address")


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, allow_private_urls: bool = False
) -> CatalogConfig:
    """Read and validate one TOML config file, applying the env overrides of CONTRACT §1."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "model_catalog" in raw and "modelCatalog" in raw:
        raise ConfigError(f"{path}: modelCatalog: use either [model_catalog] or [modelCatalog], not both")
    raw = _expand_env(raw, environ, "", path)
    section_key = "modelCatalog" if "modelCatalog" in raw else "model_catalog"
    section = dict(raw.get(section_key) or {})
    if not isinstance(raw.get(section_key, {}), dict):
        raise ConfigError(f"{path}: {section_key}: must be a table")
    for variable, snake in (
        ("MODEL_CATALOG_REFRESH_INTERVAL_MS", "refresh_interval_ms"),
        ("MODEL_CATALOG_REFRESH_ON_START", "refresh_on_start"),
    ):
        value = environ.get(variable)
        if value is None or value == "":
            continue
        for spelling in (snake, to_camel(snake)):
            section.pop(spelling, None)
        if snake == "refresh_on_start":
            section[snake] = _parse_bool(variable, value)
        else:
            try:
                section[snake] = int(value.strip())
            except ValueError:
                raise ConfigError(f"environment variable {variable}={value!r}: expected a whole number of ms") from None
            if section[snake] < 0:
                raise ConfigError(f"environment variable {variable}={value!r}: must not be negative")
    if section or section_key in raw:
        raw = {**raw, section_key: section}
    try:
        config = CatalogConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _describe_location(error["loc"], raw)
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "literal_error" and error["loc"][-1] == "kind":
                message = f"unknown kind {error.get('input')!r}; expected one of: {', '.join(KINDS)}"
            elif isinstance(error.get("ctx", {}).get("error"), _KeyedError):
                keyed = error["ctx"]["error"]
                key, message = keyed.key, keyed.problem
            problems.append(f"{key}: {message}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None
    for index, provider in enumerate(config.providers):
        try:
            _check_url(provider, allow_private_urls)
        except _KeyedError as exc:
            raise ConfigError(f"{path}: providers[{index}].{exc.key}: {exc.problem}") from None
    return config


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
    environ = dict(os.environ if environ is None else environ)
    allow_private = _parse_bool(
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
