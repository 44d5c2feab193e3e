"""Human log lines of the local stack (devstack/logformat.py) and the switch between them and JSON.

Pure: records are formatted in-process; the stack subprocess with MODEL_CATALOG_LOG_FORMAT=human (and the
JSON default on a pipe) is tested in test_local_stack.py.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.logs import JsonFormatter
from devstack.logformat import (
    LOG_FORMAT_ENV,
    HumanFormatter,
    install_log_format,
    log_format_choice,
    resolve_log_format,
    use_color,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CREATED = time.mktime((2026, 11, 30, 14, 3, 7, 0, 0, -1))  # local time 14:03:07


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str = "refresh finished", level: int = logging.INFO, name: str = "model_catalog.refresh",
           exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    entry = logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), exc_info, extra=extra)
    entry.created = CREATED
    return entry


def test_a_line_has_time_level_short_name_message_and_facts() -> None:
    line = HumanFormatter().format(record(trigger="manual", revision=12, changed=1, duration_ms=840.5))

    assert line == "14:03:07 INFO  refresh    refresh finished  trigger=manual revision=12 changed=1 duration_ms=840.5"


@pytest.mark.parametrize(
    ("level", "shown"),
    [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO "), (logging.WARNING, "WARN "), (logging.ERROR, "ERROR"),
     (logging.CRITICAL, "CRIT ")],
)
def test_levels_are_short_and_aligned(level: int, shown: str) -> None:
    line = HumanFormatter().format(record("x", level=level, name="model_catalog.local.stack"))

    assert line == f"14:03:07 {shown} stack      x"


def test_a_record_without_facts_ends_with_its_message() -> None:
    assert HumanFormatter().format(record("local stack stopped")).endswith("refresh    local stack stopped")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("OPENAI_API_KEY is not set", '"OPENAI_API_KEY is not set"'),
        ("", '""'),
        ("a=b", '"a=b"'),
        ("two\nlines", "two\\nlines"),
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (0.305, "0.305"),
        ({"demo": {"added": 23}}, '{"demo":{"added":23}}'),
        (["a", "b"], '["a","b"]'),
        ({"b", "a"}, '["a","b"]'),
    ],
)
def test_values_are_shown_on_one_line(value: Any, shown: str) -> None:
    assert HumanFormatter().value(value) == shown


def test_long_values_are_clipped() -> None:
    formatter = HumanFormatter(max_value_chars=20)

    assert formatter.value("x" * 500) == "x" * 19 + "…"
    assert formatter.value("word " * 100) == '"' + ("word " * 4)[:19] + '…"'
    assert formatter.value({"models": list(range(100))}) == '{"models":[0,1,2,3,…'
    line = HumanFormatter().format(record(reason="r" * 5000))
    assert len(line) < 200 and line.endswith("…")


def test_an_exception_is_printed_as_a_readable_traceback_below_the_line() -> None:
    try:
        raise ValueError("the snapshot is corrupt")
    except ValueError:
        line = HumanFormatter().format(record("snapshot failed", logging.ERROR, "model_catalog.local.dynamodb",
                                              exc_info=sys.exc_info(), path="/tmp/state/dynamodb.json"))

    first, *traceback = line.splitlines()
    assert first == "14:03:07 ERROR dynamodb   snapshot failed  path=/tmp/state/dynamodb.json"
    assert traceback[0] == "    Traceback (most recent call last):"
    assert traceback[-1] == "    ValueError: the snapshot is corrupt"
    assert all(text.startswith("    ") for text in traceback)


def test_a_multi_line_message_is_indented() -> None:
    assert HumanFormatter().format(record("first\nsecond")).endswith("first\n    second")


def test_colour_wraps_time_level_name_and_keys_and_changes_nothing_else() -> None:
    entry = record("provider fetch failed", logging.WARNING, "model_catalog.providers", provider_id="openai")

    coloured = HumanFormatter(color=True).format(entry)

    assert "\x1b[33mWARN \x1b[0m" in coloured  # yellow
    assert "\x1b[36mprovider_id\x1b[0m=openai" in coloured
    assert ANSI.sub("", coloured) == HumanFormatter().format(entry)


def test_an_error_is_red() -> None:
    assert "\x1b[31mERROR\x1b[0m" in HumanFormatter(color=True).format(record("x", logging.ERROR))


@pytest.mark.parametrize(
    ("stream", "environ", "expected"),
    [
        (Terminal(), {}, True),
        (Terminal(), {"NO_COLOR": "1"}, False),
        (Terminal(), {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        (Terminal(), {"TERM": "dumb"}, False),
        (io.StringIO(), {}, False),
        (object(), {}, False),
    ],
)
def test_colour_only_on_a_terminal_and_never_with_no_color(stream: Any, environ: dict[str, str],
                                                          expected: bool) -> None:
    assert use_color(stream, environ) is expected


@pytest.mark.parametrize(
    ("raw", "choice"),
    [(None, "auto"), ("", "auto"), ("auto", "auto"), ("human", "human"), (" JSON ", "json"), ("Human", "human")],
)
def test_the_switch_accepts_auto_human_and_json(raw: str | None, choice: str) -> None:
    environ = {} if raw is None else {LOG_FORMAT_ENV: raw}

    assert log_format_choice(environ) == choice


@pytest.mark.parametrize("raw", ["yaml", "1", "text", "pretty"])
def test_any_other_value_is_an_error_that_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=rf"{LOG_FORMAT_ENV}='{raw}': expected human, json or auto"):
        log_format_choice({LOG_FORMAT_ENV: raw})


@pytest.mark.parametrize(
    ("choice", "terminal", "resolved"),
    [
        ("auto", True, "human"),
        ("auto", False, "json"),
        ("json", True, "json"),
        ("human", False, "human"),
        ("human", True, "human"),
    ],
)
def test_auto_means_human_on_a_terminal_and_json_otherwise(choice: str, terminal: bool, resolved: str) -> None:
    assert resolve_log_format(choice, Terminal() if terminal else io.StringIO()) == resolved


@pytest.fixture
def catalog_handler() -> Iterator[logging.StreamHandler]:
    """The ``model_catalog`` logger's stream handler, pointed at a fake terminal; restored afterwards."""
    logging.getLogger("model_catalog.test")  # a logger below the root one, as the modules have
    install_log_format("json")  # makes sure chalicelib.logs installed its handler
    [handler] = [h for h in logging.getLogger("model_catalog").handlers if isinstance(h, logging.StreamHandler)]
    stream, formatter = handler.stream, handler.formatter
    handler.setStream(Terminal())
    yield handler
    handler.setStream(stream)
    handler.setFormatter(formatter)


def test_install_puts_human_lines_on_the_catalog_logger_of_a_terminal(catalog_handler: logging.StreamHandler) -> None:
    assert install_log_format("auto", environ={}) == "human"
    logging.getLogger("model_catalog.refresh").info("refresh finished", extra={"revision": 3})

    written = catalog_handler.stream.getvalue()
    assert isinstance(catalog_handler.formatter, HumanFormatter) and catalog_handler.formatter.color
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO  refresh    refresh finished  revision=3\n", ANSI.sub("", written))


def test_install_respects_no_color(catalog_handler: logging.StreamHandler) -> None:
    assert install_log_format("human", environ={"NO_COLOR": "1"}) == "human"
    assert isinstance(catalog_handler.formatter, HumanFormatter) and not catalog_handler.formatter.color


def test_install_json_keeps_the_lambda_format_even_on_a_terminal(catalog_handler: logging.StreamHandler) -> None:
    assert install_log_format("json", environ={}) == "json"
    logging.getLogger("model_catalog.refresh").info("refresh finished", extra={"revision": 3})

    assert isinstance(catalog_handler.formatter, JsonFormatter)
    entry = json.loads(catalog_handler.stream.getvalue())
    assert entry["message"] == "refresh finished" and entry["revision"] == 3
