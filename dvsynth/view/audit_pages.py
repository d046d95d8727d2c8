"""The audit's pages: one blind item at a time for one reviewer, and the answer form
that commits each answer as it is given (`view.audit.record_answer`).

Nothing on these pages tells which document is which, what the judge said or which
view an item is: the item id, the query, one instruction and two documents.
"""

from __future__ import annotations

from aiohttp import web

from dvsynth.runs.store import RunStore
from dvsynth.view import audit
from dvsynth.view.server import STATE, base_app, render


def audit_app(store: RunStore, reviewer: str, token: str) -> web.Application:
    """The blind audit of the run `store` holds (as a writer) for `reviewer`."""
    app = base_app(token)
    app[STATE].update(store=store, reviewer=reviewer)
    prefix = f"/{token}"

    async def start(request: web.Request) -> web.Response:
        raise web.HTTPFound(prefix + "/audit")

    app.router.add_get(prefix + "/", start)
    app.router.add_get(prefix + "/audit", item_page)
    app.router.add_post(prefix + "/audit/answer", answer)
    return app


async def item_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store: RunStore = state["store"]
    reviewer: str = state["reviewer"]
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
        shown=audit.blind_item(db, found[position]),
        given=given.get(wanted),
        progress=progress,
        number=position + 1,
        prev=found[position - 1]["item"] if position else None,
        next=found[position + 1]["item"] if position + 1 < len(found) else None,
    )


async def answer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    item = str(form.get("item", ""))
    try:
        audit.record_answer(
            state["store"],
            item,
            state["reviewer"],
            str(form.get("doc_1", "")),
            str(form.get("doc_2", "")),
            str(form.get("note", "")),
            via="browser",
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"not recorded: {exc}\n") from None
    prefix = request.path.rsplit("/audit/answer", 1)[0]
    raise web.HTTPSeeOther(prefix + "/audit")
