"""OAuth tokens for ``managed_oauth`` providers: encrypted storage in DynamoDB and the refresh protocol.

Storage: one item per provider in the catalog table, ``pk = "OAUTH#<provider id>"``, ``sk = "TOKEN"``. The
refresh and access tokens are encrypted (``KmsCipher`` deployed, ``LocalCipher`` locally) with the provider
id as encryption context; expiry, lease and a ``version`` are plain attributes. Every write is conditional
on the version read, so concurrent writers cannot overwrite each other.

Protocol (``OAuthSession.access_token``):

1. No stored token, or the env var named by ``refresh_token_env`` holds a different refresh token than the
   one the store was seeded from (the user signed in again) → seed the store from the env var.
2. A stored access token valid for more than ``min(60 s, lifetime / 2)`` → reuse it (no network).
3. Otherwise claim a lease (conditional write), spend the refresh token (RFC 6749 §6), and write the new
   access token and the rotated refresh token in one conditional write *before* either is used. A racer
   that loses the claim waits for the lease holder and then uses the tokens it stored: a refresh token is
   never spent twice.
4. ``invalid_grant`` → the record is marked "sign in again" and the provider fails with that reason until a
   new refresh token is put in the env var.

Nothing here logs or returns a token; ``on_secret`` hands every token to the fetch's redactor.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from chalicelib.errors import ProviderError
from chalicelib.logs import get_logger

_log = get_logger("oauth")

PK_PREFIX = "OAUTH#"
SORT_KEY = "TOKEN"
REUSE_MARGIN_S = 60.0
DEFAULT_ACCESS_LIFETIME_S = 600.0  # when the token endpoint omits expires_in
LEASE_MARGIN_S = 15.0
POLL_INTERVAL_S = 0.1


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted (another key, or tampered)."""


class TokenStoreError(Exception):
    """The token store could not be read or written (not a version conflict)."""


# ------------------------------------------------------------------------------------------ ciphers


class TokenCipher(Protocol):
    name: str

    def encrypt(self, plaintext: bytes, context: str) -> bytes: ...

    def decrypt(self, blob: bytes, context: str) -> bytes: ...


class KmsCipher:
    """KMS Encrypt/Decrypt under ``key_id`` with the encryption context ``{"provider_id": <id>}`` (so a blob
    cannot be replayed for another provider, and CloudTrail shows which provider's token was used)."""

    name = "kms"

    def __init__(self, kms_client: Any, key_id: str):
        self._kms = kms_client
        self._key_id = key_id

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        response = self._kms.encrypt(
            KeyId=self._key_id, Plaintext=plaintext, EncryptionContext={"provider_id": context}
        )
        return bytes(response["CiphertextBlob"])

    def decrypt(self, blob: bytes, context: str) -> bytes:
        try:
            response = self._kms.decrypt(
                CiphertextBlob=blob, KeyId=self._key_id, EncryptionContext={"provider_id": context}
            )
        except Exception as exc:  # botocore ClientError: InvalidCiphertextException, IncorrectKeyException…
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise TokenDecryptError(f"KMS could not decrypt the stored token ({code})") from None
        return bytes(response["Plaintext"])


class LocalCipher:
    """AES-256-GCM with a key kept in ``key_file`` (created 0600 on first use). For the local stack only:
    ``cryptography`` is a dev dependency, imported here lazily so the deployed code never needs it."""

    name = "local"
    _MAGIC = b"LC1"

    def __init__(self, key_file: Path):
        self._path = Path(key_file)
        self._aead: Any = None
        self._lock = threading.Lock()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return self._MAGIC + nonce + self._cipher().encrypt(nonce, plaintext, context.encode("utf-8"))

    def decrypt(self, blob: bytes, context: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if not blob.startswith(self._MAGIC) or len(blob) < len(self._MAGIC) + 12 + 16:
            raise TokenDecryptError("the stored token was not encrypted with a local key")
        nonce = blob[len(self._MAGIC) : len(self._MAGIC) + 12]
        try:
            return self._cipher().decrypt(nonce, blob[len(self._MAGIC) + 12 :], context.encode("utf-8"))
        except InvalidTag:
            raise TokenDecryptError(f"the stored token does not decrypt with the key in {self._path}") from None

    def _cipher(self) -> Any:
        with self._lock:
            if self._aead is None:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                self._aead = AESGCM(self._load_or_create_key(AESGCM))
            return self._aead

    def _load_or_create_key(self, aesgcm: Any) -> bytes:
        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(base64.b64encode(aesgcm.generate_key(bit_length=256)) + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, self._path)  # atomic: a racing process keeps the first key written
                except FileExistsError:
                    pass
            finally:
                temporary.unlink(missing_ok=True)
        mode = self._path.stat().st_mode & 0o077
        if mode:
            _log.warning("the local OAuth key file is readable by other users", extra={"key_file": str(self._path)})
        key = base64.b64decode(self._path.read_bytes().strip())
        if len(key) != 32:
            raise TokenDecryptError(f"{self._path} does not hold a 256-bit key")
        return key


# --------------------------------------------------------------------------------------------- store


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


# ------------------------------------------------------------------------------------------ protocol


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's successful answer."""

    access_token: str
    expires_in: float | None = None
    refresh_token: str | None = None


class GrantRejected(Exception):
    """The token endpoint refused the refresh token with an OAuth ``error`` code (RFC 6749 §5.2)."""

    def __init__(self, code: str, description: str | None = None):
        super().__init__(code)
        self.code = code
        self.description = description


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class OAuthSession:
    """Gets a usable access token for one provider during one fetch (see the module docstring)."""

    def __init__(
        self,
        store: TokenStore,
        provider_id: str,
        *,
        refresh_token_env: str,
        read_seed: Callable[[], str | None],
        grant: Callable[[str], TokenGrant],
        time_left: Callable[[], float],
        on_secret: Callable[[str], None] = lambda _secret: None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
    ):
        self._store = store
        self._pid = provider_id
        self._env = refresh_token_env
        self._read_seed = read_seed
        self._grant = grant
        self._time_left = time_left
        self._on_secret = on_secret
        self._now = wall_clock
        self._sleep = sleep
        self._owner = owner or uuid.uuid4().hex
        self.refreshes = 0  # how many times this session spent a refresh token

    def access_token(self, rejected: str | None = None) -> str:
        """A valid access token. ``rejected``: the provider refused this one, so it is not reused."""
        seed = self._read_seed()
        self._on_secret(seed or "")
        while True:
            if self._time_left() <= 0:
                raise ProviderError("timed out waiting for another refresh to renew the OAuth token")
            record = self._load()
            if record is None or (seed and fingerprint(seed) != record.seed_fingerprint):
                if not seed:
                    raise ProviderError(f"{self._env} is not set: sign in and put the refresh token there")
                record = self._seed(record, seed)
                if record is None:
                    continue  # another writer won; read again
            if record.decrypt_error:
                raise ProviderError(
                    f"{record.decrypt_error}; sign in again (put a new refresh token in {self._env})"
                )
            if record.sign_in_required:
                raise ProviderError(self._sign_in_reason(record.last_error or "invalid_grant"))
            now = self._now()
            if self._reusable(record, now) and record.access_token != rejected:
                return record.access_token  # type: ignore[return-value]
            if record.lease_owner and record.lease_owner != self._owner and (record.lease_expires_at or 0) > now:
                # Someone else is spending the refresh token right now: wait for its result.
                self._sleep(min(POLL_INTERVAL_S, max(self._time_left(), 0.0)))
                continue
            claim = replace(
                record,
                version=record.version + 1,
                lease_owner=self._owner,
                lease_expires_at=now + max(self._time_left(), 0.0) + LEASE_MARGIN_S,
                updated_at=now,
            )
            if not self._put(claim, record.version):
                continue
            return self._refresh(claim)

    def _refresh(self, claim: TokenRecord) -> str:
        if not claim.refresh_token:
            raise ProviderError(f"no refresh token is stored: sign in and put one in {self._env}")
        try:
            self.refreshes += 1
            granted = self._grant(claim.refresh_token)
        except GrantRejected as exc:
            if exc.code == "invalid_grant":
                failed = replace(
                    claim,
                    version=claim.version + 1,
                    access_token=None,
                    access_issued_at=None,
                    access_expires_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    sign_in_required=True,
                    last_error=exc.code,
                    updated_at=self._now(),
                )
                self._put(failed, claim.version)
                _log.warning(
                    "the OAuth refresh token was rejected", extra={"provider_id": self._pid, "error": exc.code}
                )
                raise ProviderError(self._sign_in_reason(exc.code)) from None
            self._release(claim)
            raise ProviderError(_grant_reason(exc)) from None
        except BaseException:
            self._release(claim)
            raise
        self._on_secret(granted.access_token)
        self._on_secret(granted.refresh_token or "")
        now = self._now()
        lifetime = granted.expires_in if granted.expires_in is not None else DEFAULT_ACCESS_LIFETIME_S
        done = replace(
            claim,
            version=claim.version + 1,
            refresh_token=granted.refresh_token or claim.refresh_token,
            access_token=granted.access_token,
            access_issued_at=now,
            access_expires_at=now + max(lifetime, 0.0),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        # Durable before use: the rotated refresh token replaces the spent one in this conditional write,
        # and the access token is only returned once it succeeded.
        if not self._put(done, claim.version):
            _log.error(
                "an OAuth token was renewed but another writer took the lease; the new tokens are lost",
                extra={"provider_id": self._pid},
            )
            raise ProviderError(
                "the OAuth token was renewed but could not be stored (another refresh took over); "
                "if this repeats, sign in again"
            )
        _log.info(
            "OAuth access token renewed",
            extra={
                "provider_id": self._pid,
                "rotated": bool(granted.refresh_token and granted.refresh_token != claim.refresh_token),
                "expires_in_s": lifetime,
                "version": done.version,
            },
        )
        return granted.access_token

    @staticmethod
    def _reusable(record: TokenRecord, now: float) -> bool:
        if not record.access_token or record.access_expires_at is None:
            return False
        lifetime = record.access_expires_at - (record.access_issued_at or record.access_expires_at)
        margin = min(REUSE_MARGIN_S, max(lifetime, 0.0) / 2)
        return now < record.access_expires_at - margin

    def _seed(self, current: TokenRecord | None, seed: str) -> TokenRecord | None:
        now = self._now()
        record = TokenRecord(
            provider_id=self._pid,
            version=(current.version + 1) if current else 1,
            refresh_token=seed,
            seed_fingerprint=fingerprint(seed),
            updated_at=now,
        )
        if not self._put(record, current.version if current else None):
            return None
        _log.info("OAuth refresh token taken from the environment", extra={"provider_id": self._pid, "env": self._env})
        return record

    def _release(self, claim: TokenRecord) -> None:
        try:
            released = replace(
                claim, version=claim.version + 1, lease_owner=None, lease_expires_at=None, updated_at=self._now()
            )
            self._put(released, claim.version)
        except Exception:  # best effort: the lease expires on its own
            _log.warning("could not release the OAuth lease", extra={"provider_id": self._pid})

    def _load(self) -> TokenRecord | None:
        try:
            record = self._store.load(self._pid)
        except TokenStoreError as exc:
            raise ProviderError(str(exc)) from None
        if record is not None:
            self._on_secret(record.refresh_token or "")
            self._on_secret(record.access_token or "")
        return record

    def _put(self, record: TokenRecord, expected: int | None) -> bool:
        try:
            return self._store.put(record, expected)
        except TokenStoreError as exc:
            raise ProviderError(str(exc)) from None

    def _sign_in_reason(self, code: str) -> str:
        return f"sign in again: the refresh token was rejected ({code}); put a new refresh token in {self._env}"


def _grant_reason(exc: GrantRejected) -> str:
    if exc.code in ("invalid_client", "unauthorized_client"):
        return f"the token endpoint rejected the client ({exc.code}); check client_id"
    detail = f": {exc.description}" if exc.description else ""
    return f"the token endpoint refused the refresh ({exc.code}){detail}"


__all__ = [
    "GrantRejected",
    "KmsCipher",
    "LocalCipher",
    "OAuthSession",
    "OAuthTokenStore",
    "TokenCipher",
    "TokenDecryptError",
    "TokenGrant",
    "TokenRecord",
    "TokenStore",
    "TokenStoreError",
    "fingerprint",
]
