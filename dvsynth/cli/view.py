"""`dvsynth view` and `dvsynth audit`: the local web app over runs and exports, and the
blind audit by people. Registered on the app by `cli.app`; the work is in `dvsynth.view`."""

from __future__ import annotations

import json
from pathlib import Path
from shlex import quote
from typing import Annotated

import typer

from dvsynth.errors import UserError

PortOption = Annotated[
    int, typer.Option("--port", help="Port to serve on (0: a free one).", min=0, max=65535)
]
HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to serve on. Another than 127.0.0.1 serves the network: the URL's "
        "token is then the only guard.",
    ),
]
NoBrowserOption = Annotated[
    bool, typer.Option("--no-browser", help="Print the URL; do not open a browser.")
]


def view_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Run directories, or folders written by `dvsynth export`.")
    ],
    port: PortOption = 0,
    host: HostOption = "127.0.0.1",
    no_browser: NoBrowserOption = False,
) -> None:
    """Browse runs or an export in a local web page: overview, rows, each pair (read-only)."""
    from dvsynth.view.server import view_app
    from dvsynth.view.serving import check_host, new_token, serve
    from dvsynth.view.sources import Sources

    check_host(host, port)  # before any source is read
    sources = Sources(paths)
    try:
        token = new_token()
        serve(view_app(sources, token), token, host, port, not no_browser, typer.echo)
    finally:
        sources.close()


def audit_command(
    run: Annotated[Path, typer.Argument(help="The run directory to audit.")],
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            help="Draw this many verified pairs (once per run; later calls reuse the sample).",
            min=1,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random draw.")] = 0,
    reviewer: Annotated[
        list[str] | None,
        typer.Option(
            "--reviewer",
            help="Who answers (repeat it: one server, a page set for each; several audit "
            "the same sample apart). Default: reviewer.",
            show_default=False,
        ),
    ] = None,
    include_rejected: Annotated[
        int,
        typer.Option(
            "--include-rejected",
            help="Also draw this many pairs the judge rejected (to measure false rejects).",
            min=0,
        ),
    ] = 0,
    sheet: Annotated[
        Path | None,
        typer.Option("--sheet", help="Write the blind items to this CSV instead of serving."),
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option("--import", help="Read a filled sheet's answers for --reviewer."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Print the audit's figures, per reviewer and pooled.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="With --report: JSON.")] = False,
    port: PortOption = 0,
    host: HostOption = "127.0.0.1",
    no_browser: NoBrowserOption = False,
) -> None:
    """A blind audit by people: draw a sample, answer it in the browser (or a sheet),
    then --report the true-flip share and the judge's agreement with people."""
    from dvsynth.view import audit, audit_sheet

    chosen = [
        name for name, on in (("--sheet", sheet), ("--import", import_), ("--report", report)) if on
    ]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)}: give one of them")
    if json_output and not report:
        raise UserError("--json: only with --report")
    reviewers = [audit.check_reviewer(name) for name in dict.fromkeys(reviewer or ["reviewer"])]
    if report:
        if sample is not None or include_rejected:
            raise UserError("--report: reads the recorded sample; drop --sample")
        result = audit.report(run)
        if json_output:
            typer.echo(json.dumps(result, indent=2))
        else:
            from dvsynth.view.audit_report import print_report

            print_report(result, typer.echo)
        return
    if import_ is not None:
        if sample is not None or include_rejected:
            raise UserError("--import: the sample is the recorded one; drop --sample")
        if len(reviewers) != 1 or reviewer is None:
            raise UserError("--import: give the one --reviewer whose answers the sheet holds")
        counts = audit_sheet.import_sheet(run, import_, reviewers[0])
        typer.echo(
            f"imported {counts['answered']} answers of {reviewers[0]} from {import_} "
            f"({counts['blank']} items left blank); see `dvsynth audit {quote(str(run))} --report`"
        )
        return
    from dvsynth.view.serving import check_host

    if sheet is None:
        check_host(host, port)
    store = audit.open_audit(run, sample, seed, include_rejected)
    try:
        if sheet is not None:
            written = audit_sheet.write_sheet(store, sheet)
            typer.echo(
                f"wrote {written} blind items to {sheet}; fill doc_1_meets, doc_2_meets "
                f"(yes, no or unsure) and note, then `dvsynth audit {quote(str(run))} "
                f"--import {quote(str(sheet))} "
                "--reviewer NAME`"
            )
            return
        from dvsynth.view.audit_pages import audit_app
        from dvsynth.view.serving import new_token, serve

        token = new_token()
        for name in reviewers:
            progress = audit.progress(store, name)
            typer.echo(
                f"audit of {run}: {progress['answered']} of {progress['items']} items answered "
                f"by {name}"
            )
        paths = [f"/audit/{name}" for name in reviewers]
        serve(
            audit_app(store, reviewers, token), token, host, port, not no_browser, typer.echo, paths
        )
    finally:
        store.close()
