"""The limits of one provider's answer (docs/reference.md §4, "Limits"), checked without I/O.

Whatever a provider sends — a 1 MB model name, a million models, strings of control characters — its answer must
not fail anyone else's refresh: every stored item stays far below DynamoDB's 400 KB, every event below the
WebSocket limits, and the memory of a run stays bounded. So every record is bounded field by field, and the
number of models per provider too. A provider whose answer breaks a limit **fails** with a reason naming the limit
(and keeps its last good list): dropping the offending models instead would report them as ``removed`` to every
client, for a problem that is the provider's formatting, not a change of its catalog.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_MODELS_PER_PROVIDER = 50_000  # the default; a provider's ``max_models`` raises it up to MAX_MODELS_CEILING
MAX_MODELS_CEILING = 100_000
DEFAULT_MAX_RESPONSE_MB = 32  # an answer's body; a provider's ``max_response_mb`` raises it up to the ceiling
MAX_RESPONSE_MB_CEILING = 64
MAX_MODEL_ID_CHARS = 256
MAX_DISPLAY_NAME_CHARS = 256
MAX_TEXT_CHARS = 1_024  # any other string in a record (a status, a date, a modality…)
MAX_LIST_ITEMS = 64  # any list (or table) in a record
MAX_NESTING = 4  # a record nests at most this deep (``pricing.x`` is 2)
MAX_RECORD_CHARS = 16_384  # all of one record's strings, keys and list items together
MAX_ABS_NUMBER = 10**15  # token counts and prices are far below; JSON readers keep integers exact up to 2^53

_FIELD_CHARS = {"id": MAX_MODEL_ID_CHARS, "display_name": MAX_DISPLAY_NAME_CHARS}
_ID_SHOWN = 60  # how much of an offending model's id a reason quotes


def too_many_models(count: int, limit: int = MAX_MODELS_PER_PROVIDER) -> str | None:
    """Why ``count`` models are too many for one provider whose limit is ``limit`` (None: within it). The reason
    names the setting that raises the limit, while it can be raised."""
    if count <= limit:
        return None
    raise_it = (
        f" (max_models in the provider's config raises it, up to {MAX_MODELS_CEILING:,})"
        if limit < MAX_MODELS_CEILING
        else ""
    )
    return (
        f"the provider listed {count:,} models, more than the limit of {limit:,} models per provider{raise_it}; "
        "keeping the last good list"
    )


def response_limit_hint(limit_mb: int) -> str:
    """What to say after "the response is larger than the N MB limit": the setting that raises it, while it can."""
    if limit_mb >= MAX_RESPONSE_MB_CEILING:
        return ""
    return f"; max_response_mb in the provider's config raises it, up to {MAX_RESPONSE_MB_CEILING}"


def record_violation(record: Mapping[str, Any]) -> str | None:
    """The first limit a model record breaks, in words ("display_name is 614,400 characters long, over the limit
    of 256"), or None."""
    budget = MAX_RECORD_CHARS
    stack: list[tuple[str, Any, int]] = [(name, value, 1) for name, value in record.items()]
    while stack:
        path, value, depth = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            limit = _FIELD_CHARS.get(path, MAX_TEXT_CHARS)
            if len(value) > limit:
                return f"{path} is {len(value):,} characters long, over the limit of {limit:,}"
            budget -= len(value)
        elif isinstance(value, int):
            if abs(value) > MAX_ABS_NUMBER:
                return f"{path} is {_magnitude(value)}, beyond the limit of ±10^15"
        elif isinstance(value, float):
            if not math.isfinite(value) or abs(value) > MAX_ABS_NUMBER:
                return f"{path} is {value!r}, not a finite number within ±10^15"
        elif isinstance(value, (list, tuple, dict)):
            if depth >= MAX_NESTING:
                return f"{path} is nested deeper than {MAX_NESTING} levels"
            if len(value) > MAX_LIST_ITEMS:
                return f"{path} has {len(value):,} items, over the limit of {MAX_LIST_ITEMS}"
            budget -= len(value)
            if isinstance(value, dict):
                for key, item in value.items():
                    budget -= len(str(key))
                    stack.append((f"{path}.{key}", item, depth + 1))
            else:
                stack.extend((path, item, depth + 1) for item in value)
        else:
            return f"{path} holds a {type(value).__name__}, not a JSON value"
        if budget < 0:
            return f"its fields hold more than {MAX_RECORD_CHARS:,} characters together (the limit)"
    return None


# A record in the shape adapters build, whose every value is far inside the limits (checked by ``_plainly_within``
# without walking it): short strings, small lists of short words, finite numbers. Anything else is walked in full.
_SHORT = 64
_RECORD_FIELDS = frozenset(
    {"id", "display_name", "context_length", "max_output_tokens", "capabilities", "pricing", "status", "retires_at",
     "modalities"}
)


def _plainly_within(record: Mapping[str, Any], seen: set[int]) -> bool:
    """True only when ``record_violation(record)`` is None for sure (the bounds here are far tighter than the
    limits, so the character budget cannot be reached either); False means: walk it. ``seen`` holds the ids of
    lists and tables already found plain (records of one answer share them)."""
    if record.keys() != _RECORD_FIELDS:
        return False
    for name in ("id", "display_name"):
        value = record[name]
        if not (value is None or (type(value) is str and len(value) <= MAX_MODEL_ID_CHARS)):
            return False
    for name in ("status", "retires_at"):
        value = record[name]
        if not (value is None or (type(value) is str and len(value) <= _SHORT)):
            return False
    for name in ("context_length", "max_output_tokens"):
        value = record[name]
        if not (value is None or (type(value) is int and -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER)):
            return False
    pricing = record["pricing"]
    if pricing is not None and not (
        type(pricing) is dict and len(pricing) <= 8
        and all(type(key) is str and len(key) <= _SHORT and _plain_number(value) for key, value in pricing.items())
    ):
        return False
    for value in (record["capabilities"], record["modalities"]):
        if value is None or id(value) in seen:
            continue
        if type(value) is list:
            plain = _short_words(value)
        elif type(value) is dict:
            plain = len(value) <= 8 and all(
                type(key) is str and len(key) <= _SHORT and type(words) is list and _short_words(words)
                for key, words in value.items()
            )
        else:
            plain = False
        if not plain:
            return False
        seen.add(id(value))
    return True


def _plain_number(value: Any) -> bool:
    if value is None or (type(value) is int and -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER):
        return True
    return type(value) is float and math.isfinite(value) and abs(value) <= MAX_ABS_NUMBER


def _short_words(values: list[Any]) -> bool:
    return len(values) <= 16 and all(type(word) is str and len(word) <= _SHORT for word in values)


def records_violation(records: Sequence[Mapping[str, Any]], max_models: int = MAX_MODELS_PER_PROVIDER) -> str | None:
    """Why a provider's normalized answer breaks the limits (the provider then fails, keeping its last good list),
    or None. Names the first offending model, the field and the limit, and how many models break one."""
    too_many = too_many_models(len(records), max_models)
    if too_many:
        return too_many
    first: tuple[Any, str] | None = None
    offending = 0
    plain: set[int] = set()
    for record in records:
        if _plainly_within(record, plain):
            continue
        problem = record_violation(record)
        if problem is not None:
            offending += 1
            first = first or (record.get("id"), problem)
    if first is None:
        return None
    model_id, problem = first
    verb = "break" if offending > 1 else "breaks"
    share = f"{offending:,} of {len(records):,} models {verb}"
    return f"{share} the model field limits: model {_shown(model_id)}: {problem}; keeping the last good list"


def _shown(model_id: Any) -> str:
    text = str(model_id)
    return repr(text if len(text) <= _ID_SHOWN else text[:_ID_SHOWN] + "…")


def _magnitude(value: int) -> str:
    if abs(value) >= 10**4000:  # str() refuses ints this long (Python's int-to-str digit limit)
        return "a number of more than 4,000 digits"
    return f"a {len(str(abs(value))):,}-digit number"
