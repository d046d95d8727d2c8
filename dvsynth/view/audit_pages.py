"""The audit's pages: one blind item at a time for one reviewer, and the answer form
that commits each answer as it is given (`view.audit.record_answer`).

Nothing on these pages tells which document is which, what the judge said or which
view an item is: the item id, the query, one instruction and two documents.
"""

from __future__ import annotations

from aiohttp import web

from dvsynth.runs.store import RunStore
from dvsynth.view import audit
from dvsynth.view.server import STATE, TEMPLATES, base_app, render


def audit_app(store: RunStore, reviewers: list[str], token: str) -> web.Application:
    """The blind audit of the run `store` holds (as a writer), one page set per reviewer
    (`/<token>/audit/<reviewer>`), so several answer at once through one server."""
    app = base_app(token)
    app[STATE].update(store=store, reviewers=list(reviewers))
    prefix = f"/{token}"

    async def start(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{prefix}/audit/{reviewers[0]}")

    app.router.add_get(prefix + "/", start)
    app.router.add_get(prefix + "/audit", start)
    app.router.add_get(prefix + "/audit/{reviewer}", item_page)
    app.router.add_post(prefix + "/audit/{reviewer}/answer", answer)
    return app


def _reviewer(request: web.Request) -> str:
    name = request.match_info["reviewer"]
    if name not in request.app[STATE]["reviewers"]:
        raise web.HTTPNotFound(text=f"no reviewer '{name}' in this audit server\n")
    return name


async def item_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store: RunStore = state["store"]
    reviewer = _reviewer(request)
    db = store.database()
    found = audit.items(db)
    progress = audit.progress(store, reviewer)
    wanted = request.query.get("item") or progress["next"]
    if wanted is None:
        return render(
            request,
            "audit_done.html",
            page="audit",
            sources=[],
            progress=progress,
            reviewer=reviewer,
            items=found,
        )
    position = next((k for k, i in enumerate(found) if i["item"] == wanted), None)
    if position is None:
        raise web.HTTPNotFound(text=f"no item '{wanted}' in this audit\n")
    given = {a["item"]: a for a in audit.answers(db, reviewer)}
    return render(
        request,
        "audit.html",
        page="audit",
        sources=[],
        reviewer=reviewer,
        here=_here(request, reviewer),
        shown=audit.blind_item(db, found[position]),
        given=given.get(wanted),
        progress=progress,
        number=position + 1,
        prev=found[position - 1]["item"] if position else None,
        next=found[position + 1]["item"] if position + 1 < len(found) else None,
    )


def _here(request: web.Request, reviewer: str) -> str:
    """The path of this reviewer's audit pages."""
    return f"{request.app[TEMPLATES].globals['base']}/audit/{reviewer}"


async def answer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    reviewer = _reviewer(request)
    form = await request.post()
    try:
        audit.record_answer(
            state["store"],
            str(form.get("item", "")),
            reviewer,
            str(form.get("doc_1", "")),
            str(form.get("doc_2", "")),
            str(form.get("note", "")),
            via="browser",
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"not recorded: {exc}\n") from None
    raise web.HTTPSeeOther(_here(request, reviewer))
