"""Failure reasons a user can act on: what a JSON value is, the provider's own message in an error body, its
error codes, status texts, what an exception was caused by, and ``_Failure`` (one attempt's failure)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_MESSAGE_LIMIT = 200


def describe_json(value: Any) -> str:
    """What a JSON value is, in words ("a JSON array", "a JSON object with keys error, message")."""
    if isinstance(value, dict):
        if not value:
            return "an empty JSON object"
        keys = list(value)[:6]
        more = ", …" if len(value) > 6 else ""
        return "a JSON object with keys " + ", ".join(str(k) for k in keys) + more
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return "JSON null"


def provider_message(data: Any) -> str | None:
    """The human message inside a provider's error body, whatever its shape (OpenAI/Anthropic/Google
    ``{"error": {"message"}}``, xAI/Ollama/vLLM ``{"error": "..."}``, Mistral ``{"message"}``/``{"detail"}``,
    OAuth ``{"error", "error_description"}``)."""
    if not isinstance(data, dict):
        return None
    message: Any = None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("error_description")
    elif isinstance(error, str):
        message = data.get("error_description") or error
    if not message:
        message = data.get("message") or data.get("detail") or data.get("error_description")
    if isinstance(message, list):  # FastAPI-style validation details
        message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
    if not isinstance(message, str) or not message.strip():
        return None
    text = " ".join(message.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _error_codes(data: Any) -> set[str]:
    """Machine-readable codes in an error body (``code``, ``type``, ``status``, Google ``details[].reason``)."""
    codes: set[str] = set()
    if not isinstance(data, dict):
        return codes
    error = data.get("error")
    for source in (data, error if isinstance(error, dict) else {}):
        for key in ("code", "type", "status"):
            if isinstance(source.get(key), str):
                codes.add(source[key].lower())
        for detail in source.get("details") or []:
            if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
                codes.add(detail["reason"].lower())
    return codes


_BAD_KEY_MESSAGE = re.compile(r"(?i)api[ _-]?key.*\b(invalid|incorrect|not valid|wrong|expired)\b|"
                              r"\b(invalid|incorrect)\b.*api[ _-]?key")


def _looks_like_rejected_key(status: int, data: Any, message: str | None) -> bool:
    if status in (401, 403):
        return True
    if status == 400:
        codes = _error_codes(data)
        if "api_key_invalid" in codes or "invalid_api_key" in codes:
            return True
        return bool(message and _BAD_KEY_MESSAGE.search(message))
    return False


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


@dataclass
class _Failure:
    head: str
    detail: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    rate_limited: bool = False

    def reason(self, suffix: str = "") -> str:
        text = self.head + suffix
        return f"{text}: {self.detail}" if self.detail else text


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    if n >= 1024:
        return f"{n / 1024:g} KB"
    return f"{n} bytes"


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body[:512].lstrip().lower()
    return "html" in content_type.lower() or head.startswith(
        (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<!--", b"<h1", b"<p>", b"<div")
    )


def _try_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _parse_json(body: bytearray, content_type: str, expect: str, members: bool = False) -> Any:
    """The JSON value of a response body, or a ``_Failure`` saying what the body is instead.

    The buffer is *consumed*: it is decoded to text and emptied before the text is parsed, so a large answer is
    never held three times (bytes, text and the parsed value) at once. With ``members``, a top-level object is not
    parsed here: the answer is its ``JsonMembers``, parsed one member at a time as they are read (any other value
    is parsed whole)."""
    if not body or body.isspace():
        return _Failure(f"expected {expect}, got an empty response")
    head = bytes(body[:512])
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")  # what json.loads does with bytes
    except UnicodeDecodeError:
        return _Failure(f"expected {expect}, got a response that is not UTF-8 text")
    finally:
        body.clear()
    start = _WHITESPACE.match(text).end()
    if members and text.startswith("{", start):
        return JsonMembers(text, start, _Reader(head, content_type, expect))
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _Reader(head, content_type, expect).failure(exc)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class _Reader:
    """What a parse failure is called, for one answer."""

    head: bytes
    content_type: str
    expect: str

    def failure(self, exc: Exception) -> _Failure:
        if isinstance(exc, json.JSONDecodeError):
            if _looks_like_html(self.head, self.content_type):
                return _Failure(f"expected {self.expect}, got HTML")
            return _Failure(
                f"expected {self.expect}, got invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            )
        if isinstance(exc, RecursionError):
            return _Failure(f"expected {self.expect}, got JSON nested too deeply to read")
        # e.g. a number longer than Python's int-to-str digit limit
        return _Failure(f"expected {self.expect}, got JSON that cannot be read ({str(exc)[:100]})")


class JsonMembers:
    """A top-level JSON object read one member at a time: ``items()`` parses each ``(key, value)`` as it is asked
    for, so a large answer is never held whole as Python objects (its text is, until the last member is read).
    Exactly ``json.loads``'s reading, member by member; a syntax error anywhere fails the read when it is reached
    (``ProviderError`` with the reason ``json.loads`` would have given). ``keys`` are the keys read so far."""

    def __init__(self, text: str, start: int, reader: _Reader):
        self._text: str | None = text
        self._start = start
        self._reader = reader
        self.keys: list[str] = []

    def items(self) -> Iterable[tuple[str, Any]]:
        from chalicelib.errors import ProviderError

        text = self._text
        if text is None:
            raise RuntimeError("the members of a JSON answer are read once")
        self._text = None  # the text goes once the caller is done with the iterator
        try:
            yield from self._members(text)
        except (ValueError, RecursionError) as exc:
            raise ProviderError(self._reader.failure(exc).reason()) from None

    def _members(self, text: str) -> Iterable[tuple[str, Any]]:
        index = _WHITESPACE.match(text, self._start + 1).end()
        if text.startswith("}", index):
            return self._end(text, index + 1)
        while True:
            if not text.startswith('"', index):
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, index)
            key, index = json.decoder.scanstring(text, index + 1)
            index = _WHITESPACE.match(text, index).end()
            if not text.startswith(":", index):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            index = _WHITESPACE.match(text, index + 1).end()
            value, index = _DECODER.raw_decode(text, index)
            self.keys.append(key)
            yield key, value
            index = _WHITESPACE.match(text, index).end()
            if text.startswith("}", index):
                return self._end(text, index + 1)
            if not text.startswith(",", index):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            comma, index = index, _WHITESPACE.match(text, index + 1).end()
            if text.startswith("}", index):
                raise json.JSONDecodeError("Illegal trailing comma before end of object", text, comma)

    @staticmethod
    def _end(text: str, index: int) -> None:
        index = _WHITESPACE.match(text, index).end()
        if index != len(text):
            raise json.JSONDecodeError("Extra data", text, index)


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                stack.append(nested)


def _short_cause(exc: BaseException) -> str:
    from http.client import IncompleteRead, RemoteDisconnected

    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return "could not resolve the host name"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(cause, IncompleteRead):
            return "the connection closed before the whole response arrived"
        if type(cause).__name__ in ("SSLCertVerificationError",):
            return "certificate verify failed"
    return type(exc).__name__


def _never_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached the server (no connection was made), so even a POST
    may be retried."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    return any(isinstance(c, (NewConnectionError, NameResolutionError, ConnectionRefusedError)) for c in _causes(exc))
