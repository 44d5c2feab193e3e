"""API keys and refresh tokens named by the config (``api_key_env``, ``refresh_token_env``).

The value of the env var (read only through ``Settings.secret_env``) is the secret itself, or — deployed —
a reference resolved through AWS:

- ``ssm:/path/to/parameter`` → SSM Parameter Store ``GetParameter(WithDecryption=True)``;
- ``secretsmanager:<arn or name>`` → Secrets Manager ``GetSecretValue`` (``SecretString``); append
  ``#<field>`` to take one field of a JSON secret (``secretsmanager:prod/llm#openai``).

Clients are injected (or created lazily on first use, then cached); resolved values are cached for
``ttl_s`` so a run does not call AWS once per provider and a rotated secret is picked up soon after.
No secret value ever appears in an error message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.settings import Settings

SSM_PREFIX = "ssm:"
SECRETS_MANAGER_PREFIX = "secretsmanager:"


class SecretUnavailable(Exception):
    """A secret reference could not be resolved. ``str(exc)`` names the env var and the reference, never a value."""


ClientSource = Callable[[], Any] | Any


class SecretResolver:
    def __init__(
        self,
        read_env: Callable[[str], str | None],
        *,
        ssm_client: ClientSource = None,
        secretsmanager_client: ClientSource = None,
        region: str | None = None,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``ssm_client`` / ``secretsmanager_client``: a boto3 client, a zero-argument factory returning one,
        or ``None`` (a boto3 client for ``region`` is created on first use)."""
        self._read_env = read_env
        self._sources = {"ssm": ssm_client, "secretsmanager": secretsmanager_client}
        self._clients: dict[str, Any] = {}
        self._region = region
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SecretResolver:
        return cls(settings.secret_env, region=settings.region, **kwargs)

    def resolve(self, env_name: str) -> str | None:
        """The secret in ``env_name``: ``None`` when unset or empty; raises ``SecretUnavailable`` when it is a
        reference that cannot be read."""
        return self.resolve_value(env_name, self._read_env(env_name))

    def resolve_value(self, env_name: str, raw: str | None) -> str | None:
        """``raw`` (the value of ``env_name``) resolved: the secret itself, or what its reference points to."""
        if not raw or not raw.strip():
            return None
        raw = raw.strip()
        if raw.startswith(SSM_PREFIX):
            return self._cached(env_name, raw, lambda: self._from_ssm(env_name, raw[len(SSM_PREFIX) :]))
        if raw.startswith(SECRETS_MANAGER_PREFIX):
            return self._cached(
                env_name, raw, lambda: self._from_secrets_manager(env_name, raw[len(SECRETS_MANAGER_PREFIX) :])
            )
        return raw

    def _cached(self, env_name: str, reference: str, load: Callable[[], str]) -> str:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(reference)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = load()
        if not value:
            raise SecretUnavailable(f"{env_name} refers to {reference}, which is empty")
        with self._lock:
            self._cache[reference] = (now, value)
        return value

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                source = self._sources[service]
                if source is None:
                    import boto3

                    self._clients[service] = boto3.client(service, region_name=self._region)
                elif callable(source) and not hasattr(source, "meta"):
                    self._clients[service] = source()
                else:
                    self._clients[service] = source
            return self._clients[service]

    def _from_ssm(self, env_name: str, name: str) -> str:
        try:
            response = self._client("ssm").get_parameter(Name=name, WithDecryption=True)
            return str(response["Parameter"]["Value"])
        except Exception as exc:
            raise SecretUnavailable(
                f"{env_name} refers to SSM parameter {name}, which could not be read ({_code(exc)})"
            ) from None

    def _from_secrets_manager(self, env_name: str, reference: str) -> str:
        secret_id, _, field = reference.partition("#")
        try:
            response = self._client("secretsmanager").get_secret_value(SecretId=secret_id)
            value = response.get("SecretString")
        except Exception as exc:
            raise SecretUnavailable(
                f"{env_name} refers to secret {secret_id}, which could not be read ({_code(exc)})"
            ) from None
        if value is None:
            raise SecretUnavailable(f"{env_name} refers to secret {secret_id}, which is binary, not a string")
        if not field:
            return str(value)
        where = f"{env_name} refers to field {field} of secret {secret_id}"
        try:
            document = json.loads(value)
        except ValueError:
            raise SecretUnavailable(f"{where}, which is not JSON") from None
        selected = document.get(field) if isinstance(document, dict) else None
        if not isinstance(selected, str) or not selected:
            raise SecretUnavailable(f"{where}, which has no such string field")
        return selected


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__
