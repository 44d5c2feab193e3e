"""The TOML config (docs/reference.md §4) as strict pydantic v2 models, and its loader.

Pure: the loader is handed the environment mapping (for the two overrides and ``${VAR}`` references);
``chalicelib.settings`` is the one module that reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from chalicelib.core.domain import CAPABILITIES, CHANGE_FIELDS, MODALITIES, Modality, Status
from chalicelib.core.limits import (
    DEFAULT_MAX_RESPONSE_MB,
    MAX_MODELS_CEILING,
    MAX_MODELS_PER_PROVIDER,
    MAX_RESPONSE_MB_CEILING,
)
from chalicelib.core.overrides import Override
from chalicelib.errors import ConfigError
from chalicelib.providers.kinds import KINDS
from chalicelib.providers.model_filter import compile_model_filter

DEFAULT_REFRESH_INTERVAL_MS = 6 * 60 * 60 * 1000
# docs/reference.md §9: the delays between webhook attempts, and how long an endpoint may keep failing.
DEFAULT_WEBHOOK_RETRY_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_WEBHOOK_DISABLE_AFTER_S = 5 * 24 * 60 * 60
MAX_WEBHOOK_DELAY_S = 7 * 24 * 60 * 60
# A manual refresh answers inside API Gateway's integration timeout: waiting for the lock, fetching, then the
# commit (reading stored lists, writing chunks, the transaction, garbage collection, release) and the inline
# fan-out (≤ 1,000 connections; more are handed to the scheduled tick) must all fit (docs/reference.md §4).
REST_TIMEOUT_MS = 29_000
COMMIT_BUDGET_MS = 4_000
INLINE_FANOUT_BUDGET_MS = 3_000
MANUAL_BUDGET_MS = REST_TIMEOUT_MS - COMMIT_BUDGET_MS - INLINE_FANOUT_BUDGET_MS  # lock wait + fetch deadline
PROVIDER_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def parse_bool(variable: str, raw: str) -> bool:
    """An env var's yes/no value; anything else is a ``ConfigError`` naming the variable."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"environment variable {variable}={raw!r}: expected 1/true/yes or 0/false/no")


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
    # Extensions beyond docs/reference.md §4, all optional.
    fetch_concurrency: Annotated[StrictInt, Field(ge=1, le=64)] = 32
    shrink_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    lock_wait_ms: PositiveMs = 5_000
    manual_run_deadline_ms: PositiveMs = 15_000
    # The scheduled function runs 300 s at most (.chalice/config.json): the fetch deadline leaves 60 s for the rest.
    scheduled_run_deadline_ms: Annotated[StrictInt, Field(gt=0, le=240_000)] = 120_000
    # Webhooks (docs/reference.md §9).
    webhook_retry_schedule_s: Annotated[
        list[Annotated[StrictInt, Field(ge=0, le=MAX_WEBHOOK_DELAY_S)]], Field(max_length=20)
    ] = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_RETRY_SCHEDULE_S))
    webhook_disable_after_s: Annotated[StrictInt, Field(ge=60)] = DEFAULT_WEBHOOK_DISABLE_AFTER_S
    webhook_concurrency: Annotated[StrictInt, Field(ge=1, le=128)] = 32

    @model_validator(mode="after")
    def _manual_refresh_fits_the_rest_timeout(self) -> CatalogOptions:
        budget = self.lock_wait_ms + self.manual_run_deadline_ms
        if budget > MANUAL_BUDGET_MS:
            raise _KeyedError(
                "model_catalog",
                f"lock_wait_ms ({self.lock_wait_ms}) + manual_run_deadline_ms ({self.manual_run_deadline_ms}) = "
                f"{budget} ms, but a manual refresh must answer within API Gateway's {REST_TIMEOUT_MS // 1000} s: "
                f"with {COMMIT_BUDGET_MS} ms for the commit and {INLINE_FANOUT_BUDGET_MS} ms for the fan-out, the two "
                f"may add up to at most {MANUAL_BUDGET_MS} ms",
            )
        return self


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
    # Limits of one answer (docs/reference.md §4.8); raising them costs memory (2.5 MB per MB of answer, and more for
    # lists of tiny entries), so they stop where a 1,024 MB function still has room.
    max_models: Annotated[StrictInt, Field(gt=0, le=MAX_MODELS_CEILING)] = MAX_MODELS_PER_PROVIDER
    max_response_mb: Annotated[StrictInt, Field(gt=0, le=MAX_RESPONSE_MB_CEILING)] = DEFAULT_MAX_RESPONSE_MB
    # managed_oauth
    token_url: StrictStr | None = None
    client_id: StrictStr | None = None
    refresh_token_env: Annotated[StrictStr, Field(pattern=ENV_NAME_PATTERN)] | None = None
    scope: StrictStr | None = None

    def __repr_args__(self) -> Any:
        """``repr()`` without secrets: header values are masked (they often carry keys), and URLs lose their
        user info and query (``${VAR}`` references may have put a token there)."""
        for name, value in super().__repr_args__():
            if name == "headers" and value:
                yield name, dict.fromkeys(value, "***")
            elif name in ("base_url", "url", "token_url") and isinstance(value, str):
                yield name, _without_credentials(value)
            else:
                yield name, value

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
            compile_model_filter(value)  # ModelFilterError (a ValueError) names what the engine refuses
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


Price = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
PositiveTokens = Annotated[StrictInt, Field(gt=0)]
Capability = Literal[CAPABILITIES]  # type: ignore[valid-type]
# The overridable Model fields (docs/reference.md §10): every one but the ids, in Model order.
OVERRIDABLE = CHANGE_FIELDS


def _calendar_date(value: Any) -> Any:
    """A TOML date (``2026-12-31``) or an ISO-8601 date string (``"2026-12-31"``); nothing looser."""
    if isinstance(value, datetime):
        raise ValueError("expected a date like 2026-12-31, not a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a date like 2026-12-31, got {value!r}")


class PricingOverride(_Strict):
    """USD per million tokens. Input and output are required; a cache price left out keeps the provider's."""

    input_per_mtok: Price
    output_per_mtok: Price
    cache_read_per_mtok: Price | None = None
    cache_write_per_mtok: Price | None = None


class ModalitiesOverride(_Strict):
    input: tuple[Modality, ...]
    output: tuple[Modality, ...]


class ModelOverride(_Strict):
    """One ``[[overrides]]`` entry: which models (``provider_id`` + exact id or glob) and the values that win."""

    provider_id: Annotated[StrictStr, Field(pattern=PROVIDER_ID_PATTERN, max_length=128)]
    model: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    display_name: Annotated[StrictStr, Field(min_length=1)] | None = None
    context_length: PositiveTokens | None = None
    max_output_tokens: PositiveTokens | None = None
    capabilities: tuple[Capability, ...] | None = None
    pricing: PricingOverride | None = None
    status: Status | None = None
    retires_at: date | None = None
    modalities: ModalitiesOverride | None = None

    @field_validator("retires_at", mode="before")
    @classmethod
    def _retires_at_is_a_date(cls, value: Any) -> Any:
        return value if value is None else _calendar_date(value)

    @model_validator(mode="after")
    def _overrides_something(self) -> ModelOverride:
        if not any(getattr(self, name) is not None for name in OVERRIDABLE):
            raise ValueError(f"names no field to override; give at least one of: {', '.join(OVERRIDABLE)}")
        return self

    def override(self) -> Override:
        """The pure core's ``Override``: the fields this entry sets, as record values (see ``domain.model_record``)."""
        values: dict[str, Any] = {}
        for name in OVERRIDABLE:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "capabilities":
                value = sorted(set(value))
            elif name == "pricing":
                value = value.model_dump(exclude_none=True)
            elif name == "modalities":
                value = {side: [m for m in MODALITIES if m in getattr(value, side)] for side in ("input", "output")}
            elif name == "retires_at":
                value = value.isoformat()
            values[name] = value
        return Override(model=self.model, values=values)


class CatalogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_catalog: CatalogOptions = Field(
        default_factory=CatalogOptions,
        validation_alias=AliasChoices("model_catalog", "modelCatalog"),
    )
    providers: tuple[ProviderConfig, ...] = ()
    overrides: tuple[ModelOverride, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> CatalogConfig:
        seen: set[str] = set()
        for index, provider in enumerate(self.providers):
            if provider.id in seen:
                raise _KeyedError(f"providers[{index}].id", f"duplicate provider id {provider.id!r}")
            seen.add(provider.id)
        return self

    @model_validator(mode="after")
    def _overrides_name_known_providers(self) -> CatalogConfig:
        known = [p.id for p in self.providers]
        for index, entry in enumerate(self.overrides):
            if entry.provider_id not in known:
                listed = ", ".join(repr(p) for p in known) or "none"
                raise _KeyedError(
                    f"overrides[{index}].provider_id",
                    f"unknown provider {entry.provider_id!r} (the config's providers: {listed})",
                )
        return self

    def provider(self, provider_id: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def overrides_for(self, provider_id: str) -> tuple[Override, ...]:
        """The overrides of one provider's models, in config order (a later one wins for the same field)."""
        return tuple(entry.override() for entry in self.overrides if entry.provider_id == provider_id)


class _KeyedError(ValueError):
    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key
        self.problem = problem


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


def _without_credentials(url: str) -> str:
    """``url`` without user info and query string (for ``repr()``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "") if "@" in parts.netloc else parts.netloc
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}" if parts.scheme else url


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


def load_config(path: Path, environ: Mapping[str, str], allow_private_urls: bool = False) -> CatalogConfig:
    """Read and validate one TOML config file, applying the env overrides of docs/reference.md §1."""
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
            section[snake] = parse_bool(variable, value)
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
            elif error["type"] == "missing" and isinstance(error["loc"][-1], str):
                # pydantic names a missing key by its camelCase alias; the documented spelling is snake_case
                key = _describe_location((*error["loc"][:-1], to_snake(error["loc"][-1])), raw)
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
