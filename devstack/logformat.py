"""Log lines for a person reading ``make run`` in a terminal: short, coloured, one line per event.

    14:03:07 INFO  refresh    refresh finished  trigger=manual revision=12 changed=1 duration_ms=840

Time (local, ``HH:MM:SS``), level, the logger's short name, the message, then the record's facts as
``key=value`` (long values clipped) and, for an exception, its traceback below the line.

Which format the local stack writes (``MODEL_CATALOG_LOG_FORMAT``):

- unset / ``auto``: human lines when stderr is a terminal, else JSON (tests and log tooling read the JSON);
- ``json``: always JSON (``chalicelib.logs.JsonFormatter``, the format in Lambda);
- ``human``: always human lines (coloured only on a terminal);
- anything else: a startup error.

Colour follows https://no-color.org: a non-empty ``NO_COLOR`` turns it off, as does ``TERM=dumb``. Lambda never
imports this module; there the format is always JSON.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, TextIO

from chalicelib.logs import JsonFormatter, get_logger

LOG_FORMAT_ENV = "MODEL_CATALOG_LOG_FORMAT"
AUTO, HUMAN, JSON = "auto", "human", "json"
ROOT_LOGGER = "model_catalog"
MAX_VALUE_CHARS = 80
NAME_WIDTH = 10

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "CRIT"}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_KEY = "\x1b[36m"  # cyan
_NAME = "\x1b[35m"  # magenta
_LEVEL_COLORS = {
    "DEBUG": "\x1b[34m",  # blue
    "INFO": "\x1b[32m",  # green
    "WARN": "\x1b[33m",  # yellow
    "ERROR": "\x1b[31m",  # red
    "CRIT": "\x1b[1;31m",  # bold red
}
_NEEDS_QUOTES = frozenset(" \t\"'=")


def log_format_choice(environ: Mapping[str, str]) -> str:
    """``auto``, ``human`` or ``json`` from ``MODEL_CATALOG_LOG_FORMAT``; ValueError for anything else."""
    raw = environ.get(LOG_FORMAT_ENV)
    value = (raw or "").strip().lower()
    if value in ("", AUTO):
        return AUTO
    if value in (HUMAN, JSON):
        return value
    raise ValueError(
        f"environment variable {LOG_FORMAT_ENV}={raw!r}: expected human, json or auto "
        "(the default: human lines when stderr is a terminal, JSON otherwise)"
    )


def resolve_log_format(choice: str, stream: Any) -> str:
    """``human`` or ``json``: ``auto`` becomes ``human`` only when ``stream`` is a terminal."""
    if choice == AUTO:
        return HUMAN if _isatty(stream) else JSON
    return choice


def use_color(stream: Any, environ: Mapping[str, str]) -> bool:
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class HumanFormatter(logging.Formatter):
    """One short line per record (see the module docstring); JSON-free, so a person can scan it."""

    def __init__(self, color: bool = False, max_value_chars: int = MAX_VALUE_CHARS):
        super().__init__()
        self.color = color
        self.max_value_chars = max_value_chars

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = _LEVELS.get(record.levelname, record.levelname)
        name = record.name.rsplit(".", 1)[-1]
        message = record.getMessage().replace("\n", "\n    ")
        facts = [
            f"{self._paint(_KEY, key)}={self.value(value)}"
            for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")
        ]
        line = " ".join(
            [
                self._paint(_DIM, stamp),
                self._paint(_LEVEL_COLORS.get(level, ""), f"{level:<5}"),
                self._paint(_NAME, f"{name:<{NAME_WIDTH}}"),
                message,
            ]
        )
        if facts:
            line += "  " + " ".join(facts)
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        elif record.exc_text:
            details.append(record.exc_text)
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            lines = detail.rstrip("\n").splitlines()
            for index, text in enumerate(lines):
                last = index == len(lines) - 1  # "ValueError: what went wrong"
                line += "\n    " + (self._paint(_LEVEL_COLORS["ERROR"], text) if last else text)
        return line

    def value(self, value: Any) -> str:
        """A fact's value on one line: strings bare unless they need quotes, the rest as JSON; clipped."""
        if isinstance(value, str):
            text, quote = value, value == "" or any(char in _NEEDS_QUOTES for char in value)
        elif isinstance(value, bool) or value is None:
            text, quote = json.dumps(value), False
        elif isinstance(value, int | float):
            text, quote = str(value), False
        elif isinstance(value, dict | list | tuple | set | frozenset):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
            text, quote = json.dumps(items, default=str, ensure_ascii=False, separators=(",", ":")), False
        else:
            text, quote = str(value), False
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        if len(text) > self.max_value_chars:
            text = text[: self.max_value_chars - 1] + "…"
        return json.dumps(text, ensure_ascii=False) if quote else text

    def _paint(self, color: str, text: str) -> str:
        return f"{color}{text}{_RESET}" if self.color and color else text


def install_log_format(choice: str, environ: Mapping[str, str] | None = None) -> str:
    """Put the chosen format on the ``model_catalog`` logger's handlers; returns ``human`` or ``json``.

    The handlers are the ones ``chalicelib.logs`` installs (JSON, on stderr); only their formatter changes.
    """
    environ = os.environ if environ is None else environ
    get_logger("devstack")  # makes sure the handler exists
    handlers = [h for h in logging.getLogger(ROOT_LOGGER).handlers if isinstance(h, logging.StreamHandler)]
    stream: TextIO | None = handlers[0].stream if handlers else None
    resolved = resolve_log_format(choice, stream)
    for handler in handlers:
        if resolved == HUMAN:
            handler.setFormatter(HumanFormatter(color=use_color(handler.stream, environ)))
        else:
            handler.setFormatter(JsonFormatter())
    return resolved
