"""Encrypted storage of OAuth tokens in DynamoDB: ``TokenRecord``, the ``TokenStore`` protocol, ``OAuthTokenStore``.

One item per provider in the catalog table, ``pk = "OAUTH#<provider id>"``, ``sk = "TOKEN"``. The refresh and
access tokens are encrypted (``KmsCipher`` deployed, ``LocalCipher`` locally; ``chalicelib.ciphers``) with the
provider id as encryption context; expiry, lease and a ``version`` are plain attributes. Every write is
conditional on the version read, so concurrent writers cannot overwrite each other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.ciphers import TokenCipher, TokenDecryptError

PK_PREFIX = "OAUTH#"
SORT_KEY = "TOKEN"


class TokenStoreError(Exception):
    """The token store could not be read or written (not a version conflict)."""


@dataclass(frozen=True)
class TokenRecord:
    """The stored state of one provider's tokens. ``version`` increases by one with every write."""

    provider_id: str
    version: int
    refresh_token: str | None = None
    access_token: str | None = None
    access_issued_at: float | None = None  # wall clock, seconds
    access_expires_at: float | None = None
    seed_fingerprint: str | None = None  # sha256 of the env refresh token the store was seeded from
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    sign_in_required: bool = False
    last_error: str | None = None
    updated_at: float = 0.0
    decrypt_error: str | None = None  # set by load() when the stored tokens cannot be decrypted (not stored)


class TokenStore(Protocol):
    def load(self, provider_id: str) -> TokenRecord | None: ...

    def put(self, record: TokenRecord, expected_version: int | None) -> bool:
        """Write ``record`` if the stored version is still ``expected_version`` (``None``: no item yet).
        ``False`` when another writer got there first."""
        ...


class OAuthTokenStore:
    """Tokens in the DynamoDB catalog table (see the module docstring). Caches plaintext ↔ ciphertext of
    tokens it has seen, so unchanged tokens cost no KMS call when a lease or expiry is rewritten."""

    def __init__(self, dynamodb_client: Any, table_name: str, cipher: TokenCipher):
        self._db = dynamodb_client
        self._table = table_name
        self._cipher = cipher
        self._cache_lock = threading.Lock()
        self._plain: dict[tuple[str, bytes], str] = {}
        self._sealed: dict[tuple[str, str], bytes] = {}

    @staticmethod
    def key(provider_id: str) -> dict[str, Any]:
        return {"pk": {"S": PK_PREFIX + provider_id}, "sk": {"S": SORT_KEY}}

    def load(self, provider_id: str) -> TokenRecord | None:
        try:
            item = self._db.get_item(TableName=self._table, Key=self.key(provider_id), ConsistentRead=True).get("Item")
        except Exception as exc:
            raise TokenStoreError(f"could not read the stored OAuth token ({_error_code(exc)})") from None
        if not item:
            return None
        refresh_token = access_token = decrypt_error = None
        try:
            if item.get("cipher", {}).get("S", self._cipher.name) != self._cipher.name:
                raise TokenDecryptError(
                    f"the stored token was encrypted with the {item['cipher']['S']} cipher, "
                    f"this service uses {self._cipher.name}"
                )
            refresh_token = self._open(provider_id, item.get("refresh_token_ct"))
            access_token = self._open(provider_id, item.get("access_token_ct"))
        except TokenDecryptError as exc:
            # Still return the plain attributes: a new refresh token in the env var can replace the record.
            decrypt_error = str(exc)
        return TokenRecord(
            provider_id=provider_id,
            version=int(item["version"]["N"]),
            refresh_token=refresh_token,
            access_token=access_token,
            decrypt_error=decrypt_error,
            access_issued_at=_num(item.get("access_issued_at")),
            access_expires_at=_num(item.get("access_expires_at")),
            seed_fingerprint=item.get("seed_fingerprint", {}).get("S"),
            lease_owner=item.get("lease_owner", {}).get("S"),
            lease_expires_at=_num(item.get("lease_expires_at")),
            sign_in_required=bool(item.get("sign_in_required", {}).get("BOOL", False)),
            last_error=item.get("last_error", {}).get("S"),
            updated_at=_num(item.get("updated_epoch")) or 0.0,
        )

    def put(self, record: TokenRecord, expected_version: int | None) -> bool:
        pid = record.provider_id
        item: dict[str, Any] = {
            **self.key(pid),
            "version": {"N": str(record.version)},
            "cipher": {"S": self._cipher.name},
            "sign_in_required": {"BOOL": record.sign_in_required},
            "updated_epoch": {"N": repr(float(record.updated_at))},
            "updated_at": {"S": datetime.fromtimestamp(record.updated_at, UTC).isoformat().replace("+00:00", "Z")},
        }
        for name, token in (("refresh_token_ct", record.refresh_token), ("access_token_ct", record.access_token)):
            if token:
                item[name] = {"B": self._seal(pid, token)}
        for name in ("access_issued_at", "access_expires_at", "lease_expires_at"):
            value = getattr(record, name)
            if value is not None:
                item[name] = {"N": repr(float(value))}
        for name in ("seed_fingerprint", "lease_owner", "last_error"):
            value = getattr(record, name)
            if value:
                item[name] = {"S": value}
        if expected_version is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        try:
            self._db.put_item(TableName=self._table, Item=item, **condition)
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise TokenStoreError(f"could not store the OAuth token ({_error_code(exc)})") from None
        return True

    def delete(self, provider_id: str) -> None:
        """Forget a provider's tokens (sign-out; tests)."""
        self._db.delete_item(TableName=self._table, Key=self.key(provider_id))

    def _seal(self, provider_id: str, token: str) -> bytes:
        with self._cache_lock:
            cached = self._sealed.get((provider_id, token))
        if cached is not None:
            return cached
        blob = self._cipher.encrypt(token.encode("utf-8"), provider_id)
        self._remember(provider_id, token, blob)
        return blob

    def _open(self, provider_id: str, attribute: dict[str, Any] | None) -> str | None:
        if not attribute:
            return None
        blob = attribute["B"]
        blob = bytes(blob.value if hasattr(blob, "value") else blob)
        with self._cache_lock:
            cached = self._plain.get((provider_id, blob))
        if cached is not None:
            return cached
        token = self._cipher.decrypt(blob, provider_id).decode("utf-8")
        self._remember(provider_id, token, blob)
        return token

    def _remember(self, provider_id: str, token: str, blob: bytes) -> None:
        with self._cache_lock:
            if len(self._plain) > 256:  # a handful of providers; bound it anyway
                self._plain.clear()
                self._sealed.clear()
            self._plain[(provider_id, blob)] = token
            self._sealed[(provider_id, token)] = blob


def _num(attribute: dict[str, Any] | None) -> float | None:
    return float(attribute["N"]) if attribute and "N" in attribute else None


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__
