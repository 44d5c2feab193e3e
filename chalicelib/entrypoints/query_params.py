"""Query strings of the read routes (docs/reference.md §8): every bad one is ``400 invalid_parameter``.

Rules shared by ``GET /api/v1/models`` and ``GET /api/v1/changes``: a name the route does not take is refused (a
typo such as ``capabilty=tools`` must not silently widen the answer); a name given twice is refused unless the route
repeats it (``capability``); an empty value (``limit=``) counts as absent; whole numbers are plain ASCII digits.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from chalicelib.core.domain import CAPABILITIES
from chalicelib.core.query import MAX_PAGE_SIZE, MODEL_STATUSES, ModelQuery, decode_cursor
from chalicelib.errors import InvalidParameter

MODEL_PARAMETERS = ("provider_id", "capability", "min_context", "q", "status", "limit", "cursor")
CHANGES_PARAMETERS = ("since", "epoch", "limit")
REPEATABLE = frozenset({"capability"})
MAX_TEXT = 200
MAX_CONTEXT = 10**12
MAX_SEQ = 2**53 - 1
_DIGITS = re.compile(r"[0-9]{1,16}")


class QueryParams:
    """A request's query string (Chalice's ``MultiDict``, a plain dict, or None), checked against ``allowed``."""

    def __init__(self, raw: Any, allowed: Collection[str]):
        if raw is None:
            pairs: dict[str, list[str]] = {}
        elif hasattr(raw, "getlist"):
            pairs = {name: list(raw.getlist(name)) for name in raw}
        else:
            pairs = {name: value if isinstance(value, list) else [value] for name, value in dict(raw).items()}
        unknown = sorted(set(pairs) - set(allowed))
        if unknown:
            raise InvalidParameter(unknown[0][:64], f"not a parameter of this route; it takes {', '.join(allowed)}")
        self._values = {name: [value for value in values if value != ""] for name, values in pairs.items()}
        for name, values in self._values.items():
            if len(values) > 1 and name not in REPEATABLE:
                raise InvalidParameter(name, "given more than once")

    def text(self, name: str, max_length: int = MAX_TEXT) -> str | None:
        values = self._values.get(name) or []
        if not values:
            return None
        if len(values[0]) > max_length:
            raise InvalidParameter(name, f"longer than {max_length} characters")
        return values[0]

    def texts(self, name: str) -> list[str]:
        return list(self._values.get(name) or [])

    def whole_number(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not _DIGITS.fullmatch(raw):
            raise InvalidParameter(name, f"expected a whole number from {low} to {high}, got {raw[:32]!r}")
        value = int(raw)
        if not low <= value <= high:
            raise InvalidParameter(name, f"must be from {low} to {high}, got {value}")
        return value

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        raw = self.text(name)
        if raw is not None and raw not in choices:
            raise InvalidParameter(name, f"expected one of {', '.join(choices)}, got {raw[:64]!r}")
        return raw


def model_query(raw: Any) -> ModelQuery:
    """``GET /api/v1/models``'s filters and page. Whether ``provider_id`` exists is the service's to check."""
    params = QueryParams(raw, MODEL_PARAMETERS)
    capabilities = params.texts("capability")
    for capability in capabilities:
        if capability not in CAPABILITIES:
            raise InvalidParameter(
                "capability", f"unknown capability {capability[:64]!r}; expected any of {', '.join(CAPABILITIES)}"
            )
    text = params.text("q")
    cursor = params.text("cursor", max_length=2_000)
    return ModelQuery(
        provider_id=params.text("provider_id"),
        capabilities=frozenset(capabilities),
        min_context=params.whole_number("min_context", 0, MAX_CONTEXT),
        text=text.casefold() if text is not None else None,
        status=params.choice("status", MODEL_STATUSES),
        limit=params.whole_number("limit", 1, MAX_PAGE_SIZE),
        after=decode_cursor(cursor) if cursor is not None else None,
    )


def changes_query(raw: Any, default_limit: int, max_limit: int) -> tuple[int | None, str | None, int]:
    """``GET /api/v1/changes``'s ``(since, epoch, limit)``. ``since`` needs the epoch it was counted in."""
    params = QueryParams(raw, CHANGES_PARAMETERS)
    since = params.whole_number("since", 0, MAX_SEQ)
    epoch = params.text("epoch", max_length=128)
    limit = params.whole_number("limit", 1, max_limit, default_limit)
    assert limit is not None
    if since is not None and epoch is None:
        raise InvalidParameter(
            "epoch", "required with since: pass the epoch of the answer (or subscribed frame) that gave you the seq"
        )
    return since, epoch, limit
