"""Ciphers for secrets kept at rest: the ``TokenCipher`` protocol, ``KmsCipher`` (deployed) and ``LocalCipher``
(the local stack), and ``TokenDecryptError``. ``context`` binds a blob to its owner (a provider id for OAuth
tokens), so a blob cannot be replayed for another one.

``cryptography`` (AES-GCM for ``LocalCipher``) is a dev dependency, not bundled into Lambda: it is imported
lazily, on first use of a ``LocalCipher``.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from chalicelib.logs import get_logger

_log = get_logger("oauth")  # the logger the local key file's warning has always used


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted (another key, or tampered)."""


class TokenCipher(Protocol):
    name: str

    def encrypt(self, plaintext: bytes, context: str) -> bytes: ...

    def decrypt(self, blob: bytes, context: str) -> bytes: ...


# KMS answers that mean "try again shortly" (its request quota, or an internal hiccup).
_KMS_RETRYABLE = frozenset({"ThrottlingException", "KMSInternalException", "DependencyTimeoutException"})


class KmsCipher:
    """KMS Encrypt/Decrypt under ``key_id`` with the encryption context ``{"provider_id": <id>}`` (so a blob
    cannot be replayed for another provider, and CloudTrail shows which provider's token was used).

    Throttling and KMS's transient errors are retried with exponential backoff and jitter (``attempts`` calls in
    all, on top of botocore's own retries): a rotated refresh token must not be lost because KMS was busy."""

    name = "kms"

    def __init__(
        self,
        kms_client: Any,
        key_id: str,
        *,
        attempts: int = 6,
        base_delay_s: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._kms = kms_client
        self._key_id = key_id
        self._attempts = attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        response = self._retried(
            "encrypt",
            lambda: self._kms.encrypt(
                KeyId=self._key_id, Plaintext=plaintext, EncryptionContext={"provider_id": context}
            ),
        )
        return bytes(response["CiphertextBlob"])

    def decrypt(self, blob: bytes, context: str) -> bytes:
        try:
            response = self._retried(
                "decrypt",
                lambda: self._kms.decrypt(
                    CiphertextBlob=blob, KeyId=self._key_id, EncryptionContext={"provider_id": context}
                ),
            )
        except Exception as exc:  # botocore ClientError: InvalidCiphertextException, IncorrectKeyException…
            raise TokenDecryptError(f"KMS could not decrypt the stored token ({_code(exc)})") from None
        return bytes(response["Plaintext"])

    def _retried(self, operation: str, call: Callable[[], Any]) -> Any:
        for attempt in range(self._attempts):
            try:
                return call()
            except Exception as exc:
                if _code(exc) not in _KMS_RETRYABLE or attempt == self._attempts - 1:
                    raise
                delay = min(self._base_delay_s * 2**attempt, 2.0)
                _log.warning("KMS is throttling; retrying", extra={"operation": operation, "attempt": attempt + 1})
                self._sleep(delay / 2 + random.random() * delay / 2)
        raise AssertionError("unreachable")


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code or type(exc).__name__)


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
