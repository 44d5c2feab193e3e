"""Conditional GET at 20,000 models (issue 14): a ``304`` revalidation of ``GET /api/v1/models`` against reading
the whole catalog (page by page); besides, the pages and searches a client that never downloads the whole catalog makes."""

from __future__ import annotations

from typing import Any

from chalicelib.core.query import encode_cursor
from tests.bench.common import MODELS_PAGE, Goal, ScenarioResult, fmt, read_all_pages, timed
from tests.bench.data import SyntheticRegistry
from tests.bench.stackctl import running_stack
from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack

SHARE_GOAL_PERCENT = 5.0
PAGE = MODELS_PAGE


def _get(stack: LocalStack, path: str, expected_status: int, **headers: str) -> tuple[float, Any]:
    seconds, response = timed(stack.get, path, headers=headers or None, timeout=120)
    if response.status_code != expected_status:
        raise RuntimeError(f"GET {path} answered {response.status_code}, expected {expected_status}: "
                           f"{response.text[:300]}")
    return seconds, response


def _read_all(stack: LocalStack) -> tuple[float, int, str, int]:
    """The whole catalog, page by page (``read_all_pages``); (seconds, bytes, the first page's ETag, models)."""
    read = read_all_pages(stack, PAGE)
    if not read.etag:
        raise RuntimeError("GET /api/v1/models answered without an ETag")
    return read.seconds, read.size, read.etag, read.count


def run(quick: bool) -> ScenarioResult:
    size = 2_000 if quick else 20_000
    full_gets = 1 if quick else 7
    revalidations = 3 if quick else 60
    pages = 1 if quick else 7
    result = ScenarioResult("revalidate", f"Conditional GET with {size:,} models")
    result.method = [
        f"One provider of kind `registry` serving the synthetic {size:,}-model `api.json` of the 20,000-model "
        "scenario, filled by one refresh in a fresh stack.",
        f"{full_gets} × the whole catalog through `GET /api/v1/models`: every page of {PAGE:,} following `next_cursor` "
        "(unpaged, an answer this size is refused with `page_required`: deployed it would not fit one Lambda "
        "response); warm: the refresh cached the chunks in the process, so this is the fastest a full read gets and "
        "the comparison is the strictest; checked to list every model.",
        f"{revalidations} × the first page's request with `If-None-Match: <its ETag>`, checked to answer `304` with no "
        "body: the ETag is the catalog's version plus the query, so that `304` tells a client that every page it "
        "holds is current. The goal: the median revalidation costs at most 5 % of the median full read.",
        f"{pages} × each of: the first page (`limit=100`), a page from the middle (`limit=100&cursor=…`), a search "
        "(`q=` a model id: the whole catalog scanned, one match) and a filtered page (`capability=tools&min_context=100000&limit=100`): what a page that "
        "never downloads the whole catalog asks; and `GET /api/v1/providers` revalidated (`304`).",
        "Every request goes through one keep-alive HTTP session, as a gateway or a page would.",
    ]
    full = result.new_series(f"the whole catalog: `GET /api/v1/models`, every page of {PAGE:,} (warm)", "s")
    revalidate = result.new_series(f"`GET /api/v1/models?limit={PAGE:,}` revalidation (`304`)", "s")
    first_page = result.new_series("first page (`limit=100`)", "s")
    middle_page = result.new_series("a middle page (`limit=100&cursor=…`)", "s")
    search = result.new_series("search (`q=`)", "s")
    filtered = result.new_series("filtered page (`capability=tools&min_context=100000&limit=100`)", "s")
    providers_304 = result.new_series("`GET /api/v1/providers` revalidation (`304`)", "s")
    full_bytes = 0

    registry = SyntheticRegistry(size)
    with FakeProviderServer() as server:
        server.route("GET", "/api.json", body=registry.body(), headers={"Content-Type": "application/json"})
        providers = [{"id": "registry", "name": "Big registry", "kind": "registry", "url": f"{server.url}/api.json"}]
        with running_stack({}, providers) as stack:
            response = stack.post("/api/v1/providers:refresh", timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"the fill answered {response.status_code}: {response.text[:300]}")
            etag = ""
            for _ in range(full_gets):
                seconds, full_bytes, etag, count = _read_all(stack)
                if count != len(registry):
                    raise RuntimeError("GET /api/v1/models did not list every model")
                full.add(seconds)
            for _ in range(revalidations):
                seconds, answer = _get(stack, f"/api/v1/models?limit={PAGE}", 304, **{"If-None-Match": etag})
                if answer.content:
                    raise RuntimeError("a 304 came with a body")
                revalidate.add(seconds)
                result.sample_load()
            wanted = sorted(registry.document()["vendor000"]["models"])[-1]
            ids = sorted(f"{vendor}/{key}" for vendor, entry in registry.document().items() for key in entry["models"])
            middle = encode_cursor("registry", ids[len(ids) // 2])  # what `next_cursor` says there
            _, providers_answer = _get(stack, "/api/v1/providers", 200)
            for _ in range(pages):
                first_page.add(_get(stack, "/api/v1/models?limit=100", 200)[0])
                middle_page.add(_get(stack, f"/api/v1/models?limit=100&cursor={middle}", 200)[0])
                seconds, answer = _get(stack, f"/api/v1/models?q=vendor000/{wanted}", 200)
                if not answer.json()["models"]:
                    raise RuntimeError("the search found nothing")
                search.add(seconds)
                filtered.add(_get(stack, "/api/v1/models?capability=tools&min_context=100000&limit=100", 200)[0])
                providers_304.add(_get(stack, "/api/v1/providers", 304,
                                       **{"If-None-Match": providers_answer.headers["ETag"]})[0])
            result.sample_load()

    share = None
    if full.median and revalidate.median is not None:
        share = 100 * revalidate.median / full.median
    result.facts += [
        ("the whole catalog's size (all pages)", f"{full_bytes / 1e6:.1f} MB"),
        ("revalidation / full read (medians)", f"{fmt(share)} %"),
    ]
    result.goals = [
        Goal(f"{size:,} models: a `304` revalidation of `GET /api/v1/models`, as a share of reading it all",
             SHARE_GOAL_PERCENT, "%", share,
             detail=f"304 median {fmt(revalidate.median)} s vs full (warm) {fmt(full.median)} s, "
                    f"{full_bytes / 1e6:.1f} MB"),
    ]
    return result
