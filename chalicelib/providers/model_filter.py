"""``model_filter`` (docs/reference.md §4): a regular expression on model ids, run by a linear-time engine.

Python's ``re`` backtracks: a pattern like ``(a+)+$`` against a long id takes exponential time, and a config is
not trusted to be free of such patterns. RE2 (``google-re2``) matches in time linear in the id, whatever the
pattern; it has no backreferences or lookaround, so a pattern that needs them is a startup error. The library is
imported on first use: it is not needed to load a config without filters.
"""

from __future__ import annotations

from typing import Any


class ModelFilterError(ValueError):
    """The pattern is not one the linear-time engine accepts (the message says why)."""


def compile_model_filter(pattern: str) -> Any:
    """The compiled pattern (``.search(model_id)``); ``ModelFilterError`` when RE2 refuses it."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the reason is in the exception; RE2 would also print it to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", errors="replace")
        raise ModelFilterError(
            f"not a regular expression the linear-time engine (RE2) accepts: {detail} "
            "(backreferences and lookaround are not supported)"
        ) from None
