"""The viewer's web app (aiohttp + Jinja2): Overview, Rows and One pair over the sources
of `dvsynth view`, and the blind audit pages of `dvsynth audit` (`view.audit_pages`).

Every URL starts with a random token (`/<token>/...`); a request without it is refused,
so another user of the machine (or of the network, with `--host`) who finds the port
cannot read the runs. Every page is rendered with autoescape on: documents are untrusted
text. The Content-Security-Policy admits only the bundled stylesheet and script, so even
markup that slipped through could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader

from dvsynth.view import overview
from dvsynth.view.counts import Counts
from dvsynth.view.pair import other_negatives, reasons, verdict_grid, word_diff
from dvsynth.view.queries import PAGE_SIZE, Catalog, Filter
from dvsynth.view.sources import Sources

HERE = Path(__file__).resolve().parent
STATIC = {"view.css": "text/css", "audit.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token never leaves in a Referer header
    "Cache-Control": "no-store",
}
TEMPLATES = web.AppKey("templates", Environment)
STATE = web.AppKey("state", dict)


def environment(token: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    base = f"/{token}"
    env.globals.update(base=base, urlencode=urlencode)
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["pct"] = lambda x: "" if x is None else f"{100 * x:.1f}%"
    return env


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    text = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)


def token_guard(token: str):
    """Refuse every request whose path does not start with the token."""

    @web.middleware
    async def guard(request: web.Request, handler):
        first = request.path.lstrip("/").split("/", 1)[0]
        if not hmac.compare_digest(first.encode(), token.encode()):
            response = web.Response(
                status=403, text="forbidden: open the URL dvsynth printed, with its token\n"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # as a response, so it gets the headers too
                response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
        response.headers.update(HEADERS)
        return response

    return guard


def base_app(token: str) -> web.Application:
    """The app every page set shares: the token guard, templates, the bundled files."""
    app = web.Application(middlewares=[token_guard(token)])
    app[TEMPLATES] = environment(token)
    app[STATE] = {}
    prefix = f"/{token}"

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(
            body=(HERE / "static" / name).read_bytes(), content_type=STATIC[name], charset="utf-8"
        )

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound(prefix + "/")

    app.router.add_get(prefix, root)
    app.router.add_get(prefix + "/static/{name}", static)
    return app


def view_app(sources: Sources, token: str) -> web.Application:
    """Overview, Rows and One pair over `sources` (read-only)."""
    app = base_app(token)
    catalog = Catalog([s.database for s in sources.items], index=True)
    state = app[STATE]
    state.update(
        sources=sources,
        catalog=catalog,
        counts=Counts(sources.items),
        summary=None,
        task=None,
        indexing=None,
        stop=threading.Event(),
    )
    prefix = f"/{token}"
    app.router.add_get(prefix + "/", overview_page)
    app.router.add_get(prefix + "/rows", rows_page)
    app.router.add_get(prefix + "/pair", pair_page)

    async def warm(app: web.Application) -> None:
        """Start the overview's pass now: the first visit finds it done, or nearer."""
        state["indexing"] = asyncio.get_running_loop().run_in_executor(None, catalog.refresh_index)
        state["task"] = asyncio.ensure_future(_compute(state, catalog.version()))

    async def closing(app: web.Application) -> None:
        state["stop"].set()  # an unfinished pass ends at its next row
        for name in ("task", "indexing"):
            if state[name] is not None:
                with contextlib.suppress(BaseException):
                    await state[name]
        state["counts"].close()
        catalog.close()

    app.on_startup.append(warm)
    app.on_cleanup.append(closing)
    return app


#: How long the first visit waits for the first count before it shows its progress.
FIRST_WAIT_S = 0.5


async def _summary(request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    """The overview's figures, and None; or, while they are recomputed after a change,
    the previous ones and the time they were computed; or (None, None) while the first
    count is not done (a large run: the page says how far it got)."""
    state = request.app[STATE]
    version = state["catalog"].version()
    cached = state["summary"]
    if cached is not None and cached[0] == version:
        return cached[1], None
    task = state["task"]
    if task is None or task.done():
        task = state["task"] = asyncio.ensure_future(_compute(state, version))
    if cached is not None:
        return cached[1], cached[2]
    await asyncio.wait([task], timeout=FIRST_WAIT_S)
    if not task.done():
        return None, None
    return task.result(), None


async def _compute(state: dict[str, Any], version: tuple) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, state["counts"].summarize, state["stop"])
    state["summary"] = (version, data, time.strftime("%H:%M:%S"))
    return data


#: How long a page waits for the index to catch up with a commit before it reads the
#: rows themselves instead (a refresh reads the changed chunks only, after one scan).
CATCH_UP_S = 1.0


async def _catalog(request: web.Request) -> Catalog:
    """The catalog, its index brought up to date if that is quick."""
    state = request.app[STATE]
    catalog: Catalog = state["catalog"]
    if not catalog.indexed():
        task = state["indexing"]
        if task is None or task.done():
            task = asyncio.get_running_loop().run_in_executor(None, catalog.refresh_index)
            state["indexing"] = task
        await asyncio.wait([task], timeout=CATCH_UP_S)
    return catalog


def _sources(request: web.Request):
    return request.app[STATE]["sources"].items


async def overview_page(request: web.Request) -> web.Response:
    summary, stale = await _summary(request)
    if summary is None:
        done, total = request.app[STATE]["counts"].progress
        return render(
            request,
            "counting.html",
            page="overview",
            sources=_sources(request),
            done=done,
            total=total,
        )
    return render(
        request,
        "overview.html",
        page="overview",
        stale=stale,
        sources=_sources(request),
        summary=summary,
        spend=overview.spend_rows(summary["all"]["stats"]),
    )


def _filter(request: web.Request) -> Filter:
    try:
        return Filter.parse(request.query, len(_sources(request)))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"bad filter: {exc}\n") from None


async def rows_page(request: web.Request) -> web.Response:
    where = _filter(request)
    raw = request.query.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 10**9:
        raise web.HTTPBadRequest(text=f"bad page: '{raw[:20]}' is not a whole number from 1\n")
    page = int(raw)
    catalog = await _catalog(request)
    total = catalog.count(where)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "rows.html",
        page="rows",
        sources=_sources(request),
        where=where,
        rows=catalog.page(where, page - 1),
        total=total,
        number=page,
        pages=pages,
        size=PAGE_SIZE,
        stages=catalog.stages(),
    )


async def pair_page(request: web.Request) -> web.Response:
    where = _filter(request)
    src, seed_id = request.query.get("src", ""), request.query.get("id", "")
    if not src.isdigit() or int(src) >= len(_sources(request)):
        raise web.HTTPBadRequest(text="bad pair: src must name one of the sources\n")
    catalog = await _catalog(request)
    found = catalog.record(int(src), seed_id)
    if found is None:
        raise web.HTTPNotFound(text="no such pair in this source\n")
    record, outcome, dedup = found
    diff_a, diff_b = word_diff(record.get("instruction_a") or "", record.get("instruction_b") or "")
    return render(
        request,
        "pair.html",
        page="pair",
        sources=_sources(request),
        source=_sources(request)[int(src)],
        where=where,
        row=record,
        outcome=outcome,
        reasons=reasons(record, dedup),
        diff_a=diff_a,
        diff_b=diff_b,
        grid=verdict_grid(record),
        negatives=other_negatives(record),
        around=catalog.neighbours(where, int(src), seed_id),
        total=catalog.count(where),
    )
