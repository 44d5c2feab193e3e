"""What every adapter shares: the fetch context, the value helpers, and the final normalization.

An adapter is a module with ``fetch_models(ctx: FetchContext) -> list[Model]``; it turns one wire format
into normalized ``Model``s and raises ``ProviderError`` (via the helpers here) when the answer has the
wrong shape. ``finalize`` (applied by ``ProviderFetcher``) then filters by ``model_filter``, drops
duplicate ids, sorts by id and turns models into records, so adapters need not. An adapter of a format that lists
tens of thousands of models (``registry``) may hand over records instead, built by ``model_fields`` with the same
helpers, without a pydantic ``Model`` each (a third of a large refresh's time went there).

Limits (``chalicelib.core.limits``): ``items_with_id`` counts the listed items before any ``Model`` is built
(``FetchContext.count_models``), so an answer of a million tiny models fails at once instead of filling the
memory; ``finalize`` turns models into records one at a time, dropping each ``Model`` as it goes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from chalicelib.core.domain import (
    CAPABILITIES,
    MODALITIES,
    MODEL_FIELDS,
    Modalities,
    Model,
    ModelRecord,
    Pricing,
    model_record,
)
from chalicelib.core.limits import too_many_models
from chalicelib.errors import ProviderError
from chalicelib.http import ProviderHttp, describe_json
from chalicelib.providers.model_filter import compile_model_filter

if TYPE_CHECKING:  # catalog_config imports providers.kinds; a runtime import here would be circular
    from chalicelib.catalog_config import ProviderConfig

_VOCABULARY = frozenset(CAPABILITIES)
MAX_PAGES = 200  # a paginating provider that never stops is a failure, not an endless loop


@dataclass
class FetchContext:
    """One provider's fetch: its config, its HTTP (deadline, redactor), its API key, and what an OAuth
    adapter needs (the token store, secret lookup that registers values with the redactor, clocks)."""

    provider: ProviderConfig
    http: ProviderHttp
    api_key: str | None = field(default=None, repr=False)
    token_store: Any = None
    read_secret: Callable[[str], str | None] = lambda _name: None
    time_left: Callable[[], float] = lambda: math.inf
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    listed: int = 0  # list items seen so far (all pages)

    @property
    def provider_id(self) -> str:
        return self.provider.id

    def count_models(self, count: int) -> None:
        """Count ``count`` more listed models (a page, a registry section): past the per-provider limit the fetch
        fails before the models are built."""
        self.listed += count
        problem = too_many_models(self.listed, self.provider.max_models)
        if problem:
            raise ProviderError(problem)

    def url(self, path: str, base: str | None = None) -> str:
        """``base_url`` (or ``base``) joined with ``path`` by exactly one slash."""
        root = (base if base is not None else self.provider.endpoint).rstrip("/")
        return root + "/" + path.lstrip("/")

    def log(self, level: int, message: str, **fields: Any) -> None:
        self.http.log(level, message, **fields)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def shape_error(expected: str, got: Any) -> ProviderError:
    return ProviderError(f"expected {expected}, got {describe_json(got)}")


def list_field(body: Any, key: str, expected: str) -> list[Any]:
    """``body[key]`` when ``body`` is an object holding a list there, else a shape error naming ``expected``."""
    if isinstance(body, dict) and isinstance(body.get(key), list):
        return body[key]
    if isinstance(body, dict) and key in body and body[key] is None:
        return []  # some servers send `"data": null` for an empty list
    raise shape_error(expected, body)


def items_with_id(items: Iterable[Any], ctx: FetchContext, id_key: str = "id") -> Iterator[tuple[str, dict[str, Any]]]:
    """The object items that carry a non-empty string id; others are skipped (and counted in a log line). A list is
    counted against the per-provider model limit first (``FetchContext.count_models``)."""
    if isinstance(items, list) and hasattr(ctx, "count_models"):
        ctx.count_models(len(items))
    skipped = 0
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(id_key), str) and item[id_key].strip():
            yield item[id_key].strip(), item
        else:
            skipped += 1
    if skipped:
        ctx.log(logging.WARNING, "skipped list items without an id", skipped=skipped, id_key=id_key)


def positive_int(value: Any) -> int | None:
    """A token count: a positive integer (or an integral float / digit string), else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value > 0 and value.is_integer() else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def first_int(item: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        number = positive_int(item.get(key))
        if number is not None:
            return number
    return None


def text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def dig(item: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def capabilities(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated, restricted to ``domain.CAPABILITIES``."""
    return tuple(sorted(set(names) & _VOCABULARY))


def capability_list(names: Iterable[str]) -> list[str]:
    """``capabilities`` as a record holds them (a JSON list)."""
    return sorted(set(names) & _VOCABULARY)


def usd_amount(value: Any) -> Decimal | None:
    """A non-negative finite price from a JSON number or numeric string; ``-1``/garbage/missing → ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return amount


def pricing(
    input_amount: Decimal | None,
    output_amount: Decimal | None,
    scale: int = 1,
    cache_read: Decimal | None = None,
    cache_write: Decimal | None = None,
) -> Pricing | None:
    """The prices (times ``scale``) as USD per million tokens, or ``None`` when the input or output price is
    unknown (a cache price alone makes no pricing). Decimal arithmetic, so "0.000003" × 1,000,000 is exactly 3.0."""
    if input_amount is None or output_amount is None:
        return None
    return Pricing(
        input_per_mtok=float(input_amount * scale),
        output_per_mtok=float(output_amount * scale),
        cache_read_per_mtok=None if cache_read is None else float(cache_read * scale),
        cache_write_per_mtok=None if cache_write is None else float(cache_write * scale),
    )


def usd_float(value: Any) -> float | None:
    """A price already in USD per million tokens, as a JSON number: ``usd_amount`` without the Decimal (with no
    scaling, ``float(Decimal(str(x)))`` is ``float(x)``); strings, booleans, negative or non-finite → ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    amount = float(value)
    return amount if math.isfinite(amount) and amount >= 0 else None


def pricing_fields(
    input_price: float | None, output_price: float | None, cache_read: float | None, cache_write: float | None
) -> dict[str, float | None] | None:
    """``Pricing`` as its record (a JSON object), or ``None`` when the input or output price is unknown."""
    if input_price is None or output_price is None:
        return None
    return {"input_per_mtok": input_price, "output_per_mtok": output_price, "cache_read_per_mtok": cache_read,
            "cache_write_per_mtok": cache_write}


def model_fields(
    model_id: str,
    *,
    display_name: str | None = None,
    context_length: int | None = None,
    max_output_tokens: int | None = None,
    capabilities: Iterable[str] = (),
    pricing: dict[str, float | None] | None = None,
    status: str = "active",
    modalities: dict[str, list[str]] | None = None,
) -> ModelRecord:
    """A model's record built directly from values the helpers here made: exactly ``model_record(Model(...))`` of
    the same values (tests/unit/test_providers_catalogs.py checks it), without building and dumping a ``Model``. A
    ``capabilities`` list is taken as a record's (``capability_list``'s: sorted, within the vocabulary)."""
    values: dict[str, Any] = {
        "id": model_id,
        "display_name": display_name,
        "context_length": context_length,
        "max_output_tokens": max_output_tokens,
        "capabilities": capabilities if isinstance(capabilities, list) else capability_list(capabilities),
        "pricing": pricing,
        "status": status,
        "retires_at": None,
        "modalities": modalities,
    }
    return {name: values[name] for name in MODEL_FIELDS}


def iso_date(value: Any) -> date | None:
    """A calendar date from an ISO-8601 date or date-time string ("2026-10-23", "2026-10-23T00:00:00Z"); anything
    else → ``None``. A date-time keeps its own calendar day (no time-zone shift)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text).date()
    except ValueError:
        return None


def modalities(inputs: Any, outputs: Any, table: Mapping[str, str] | None = None) -> Modalities | None:
    """Two wire lists of modality names as ``Modalities`` in the one vocabulary (``domain.MODALITIES``, its
    order): ``table`` renames a provider's words first; words outside the vocabulary are dropped. ``None`` when
    the provider sent neither list."""
    fields = modality_fields(inputs, outputs, table)
    return None if fields is None else Modalities(input=tuple(fields["input"]), output=tuple(fields["output"]))


def modality_fields(inputs: Any, outputs: Any, table: Mapping[str, str] | None = None) -> dict[str, list[str]] | None:
    """``modalities`` as its record (a JSON object of two lists)."""
    if not isinstance(inputs, list) and not isinstance(outputs, list):
        return None
    return {"input": list(_modality_list(inputs, table or {})), "output": list(_modality_list(outputs, table or {}))}


def _modality_list(values: Any, table: Mapping[str, str]) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    found = {table.get(v.strip().lower(), v.strip().lower()) for v in values if isinstance(v, str)}
    return tuple(name for name in MODALITIES if name in found)


class Shared:
    """One fetch's memo of small record values derived from wire values: the same capability list, modalities table
    or token count in 50,000 records is computed once and stored once (a record is never changed in place, so records
    can share them). This halves the memory of a large list's records and a third of the time to build them."""

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}

    def value(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, or the value an equal ``key`` (the hashable wire values it is computed from) gave before."""
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = compute()
            return value
        except TypeError:  # a wire value that cannot be a key (a list holding objects): nothing to share
            return compute()


def frozen(value: Any) -> Any:
    """A wire value as a memo key: lists as tuples (typed, so that a list and a string never meet)."""
    return ("list", *value) if isinstance(value, list) else (type(value).__name__, value)


def finalize(
    provider: ProviderConfig, models: Iterable[Model | ModelRecord], log: Callable[..., None] | None = None
) -> list[ModelRecord]:
    """The one normalization step after an adapter: apply ``model_filter`` (a linear-time ``search`` on the id), keep
    the first model of each id, sort by id, and turn each into its record (``chalicelib.core.domain.model_record``;
    an adapter's record is kept as it is).

    A list of models is consumed: each ``Model`` is dropped from it once its record exists, so the two forms of a
    large answer are never held in full together."""
    pattern = compile_model_filter(provider.model_filter) if provider.model_filter else None
    if isinstance(models, list):
        problem = too_many_models(len(models), provider.max_models)
        if problem:
            raise ProviderError(problem)
    unique: dict[str, ModelRecord] = {}
    duplicates = 0
    for model in _consumed(models):
        model_id = model["id"] if isinstance(model, dict) else model.id
        if pattern is not None and not pattern.search(model_id):
            continue
        if model_id in unique:
            duplicates += 1
            continue
        unique[model_id] = model if isinstance(model, dict) else model_record(model)
    if duplicates and log is not None:
        log(logging.WARNING, "provider listed some model ids more than once", duplicates=duplicates)
    return [unique[key] for key in sorted(unique)]


def _consumed(models: Iterable[Any]) -> Iterator[Any]:
    """The models in order; a list gives up each one as it is handed out (its memory goes with it)."""
    if not isinstance(models, list):
        yield from models
        return
    for index in range(len(models)):
        model, models[index] = models[index], None
        yield model
    models.clear()
