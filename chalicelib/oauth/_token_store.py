"""Encrypted storage of OAuth tokens in DynamoDB: ``TokenRecord``, the ``TokenStore`` protocol, ``OAuthTokenStore``.

One item per provider in the catalog table, ``pk = "OAUTH#<provider id>"``, ``sk = "TOKEN"``. The refresh and
access tokens are encrypted (``KmsCipher`` deployed, ``LocalCipher`` locally; ``chalicelib.ciphers``) with the
provider id as encryption context; expiry, lease and a ``version`` are plain attributes. Every write is
conditional on the version read, so concurrent writers cannot overwrite each other.

A rotated refresh token that could not be written (storage or KMS down past every retry) is kept in this process
(``remember_unsaved``) and written before anything else by the next session here (``unsaved``): the old refresh
token is already spent, so this copy is the only way back without a new sign-in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.ciphers import TokenCipher, TokenDecryptError
from chalicelib.clock import utc_iso
from chalicelib.storage.dynamo import error_code, from_item, to_item, values

PK_PREFIX = "OAUTH#"
SORT_KEY = "TOKEN"


class TokenStoreError(Exception):
    """The token store could not be read or written (not a version conflict)."""


@dataclass(frozen=True)
class TokenRecord:
    """The stored state of one provider's tokens. ``version`` increases by one with every write. The tokens never
    appear in ``repr()``."""

    provider_id: str
    version: int
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
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
        self._unsaved: dict[str, tuple[TokenRecord, int]] = {}

    @staticmethod
    def key(provider_id: str) -> dict[str, Any]:
        return to_item({"pk": PK_PREFIX + provider_id, "sk": SORT_KEY})

    def load(self, provider_id: str) -> TokenRecord | None:
        try:
            item = self._db.get_item(TableName=self._table, Key=self.key(provider_id), ConsistentRead=True).get("Item")
        except Exception as exc:
            raise TokenStoreError(f"could not read the stored OAuth token ({_error_code(exc)})") from None
        if not item:
            return None
        fields = from_item(item)
        refresh_token = access_token = decrypt_error = None
        try:
            if fields.get("cipher", self._cipher.name) != self._cipher.name:
                raise TokenDecryptError(
                    f"the stored token was encrypted with the {fields['cipher']} cipher, "
                    f"this service uses {self._cipher.name}"
                )
            refresh_token = self._open(provider_id, fields.get("refresh_token_ct"))
            access_token = self._open(provider_id, fields.get("access_token_ct"))
        except TokenDecryptError as exc:
            # Still return the plain attributes: a new refresh token in the env var can replace the record.
            decrypt_error = str(exc)
        return TokenRecord(
            provider_id=provider_id,
            version=int(fields["version"]),
            refresh_token=refresh_token,
            access_token=access_token,
            decrypt_error=decrypt_error,
            access_issued_at=_float(fields.get("access_issued_at")),
            access_expires_at=_float(fields.get("access_expires_at")),
            seed_fingerprint=fields.get("seed_fingerprint"),
            lease_owner=fields.get("lease_owner"),
            lease_expires_at=_float(fields.get("lease_expires_at")),
            sign_in_required=bool(fields.get("sign_in_required", False)),
            last_error=fields.get("last_error"),
            updated_at=_float(fields.get("updated_epoch")) or 0.0,
        )

    def put(self, record: TokenRecord, expected_version: int | None) -> bool:
        pid = record.provider_id
        tokens = {"refresh_token_ct": record.refresh_token, "access_token_ct": record.access_token}
        try:
            sealed = {name: self._seal(pid, token) if token else None for name, token in tokens.items()}
        except Exception as exc:  # the cipher failed (KMS unavailable past its retries…)
            raise TokenStoreError(f"could not encrypt the OAuth token ({_error_code(exc)})") from None
        item = to_item(
            {
                "pk": PK_PREFIX + pid,
                "sk": SORT_KEY,
                "version": record.version,
                "cipher": self._cipher.name,
                "sign_in_required": record.sign_in_required,
                "updated_epoch": _number(record.updated_at),
                "updated_at": utc_iso(record.updated_at),
                **sealed,
                "access_issued_at": _number(record.access_issued_at),
                "access_expires_at": _number(record.access_expires_at),
                "lease_expires_at": _number(record.lease_expires_at),
                "seed_fingerprint": record.seed_fingerprint or None,
                "lease_owner": record.lease_owner or None,
                "last_error": record.last_error or None,
            }
        )
        if expected_version is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": values(expected=expected_version),
            }
        try:
            self._db.put_item(TableName=self._table, Item=item, **condition)
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise TokenStoreError(f"could not store the OAuth token ({_error_code(exc)})") from None
        return True

    def remember_unsaved(self, record: TokenRecord, expected_version: int) -> None:
        """Keep a rotated record that could not be written, to be written by the next session in this process."""
        with self._cache_lock:
            self._unsaved[record.provider_id] = (record, expected_version)

    def unsaved(self, provider_id: str) -> tuple[TokenRecord, int] | None:
        """A rotated record this process could not write yet, with the version it replaces (``forget_unsaved``
        once written)."""
        with self._cache_lock:
            return self._unsaved.get(provider_id)

    def forget_unsaved(self, provider_id: str) -> None:
        with self._cache_lock:
            self._unsaved.pop(provider_id, None)

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

    def _open(self, provider_id: str, blob: bytes | None) -> str | None:
        if not blob:
            return None
        blob = bytes(blob)
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


def _number(value: float | None) -> Decimal | None:
    """A float as DynamoDB stores it (the serializer takes ``Decimal``, not ``float``)."""
    return None if value is None else Decimal(repr(float(value)))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _error_code(exc: BaseException) -> str:
    return error_code(exc) or type(exc).__name__
