"""The CLI's one error boundary: every kind of failure a user can cause ends here in one
line on stderr and exit code 2, never a traceback.

The kinds: `UserError` (raised where the mistake is understood), a database SQLite
cannot read, an OS error on a path the user gave, settings outside their bounds (the
config models hold the bounds, so the CLI, a recipe and the library refuse the same
values), and click's usage errors. Ctrl-C ends with one line and exit 130. Anything else
is a bug in dvsynth and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from typing import Any, NoReturn

from dvsynth.secrets import redact

INTERRUPTED = "interrupted: finished rows are saved; rerun the same command to resume"
INTERRUPT_EXIT = 130

#: Config fields whose CLI option is not `--` + the field name with dashes.
_OPTION_OF_FIELD = {
    "poll_s": "--poll-interval",
    "escalate_gold": "--gold",
    "rule_options.length.min_words": "--min-words",
    "rule_options.length.max_words": "--max-words",
    "rule_options.length": "--min-words / --max-words",
    "rule_options.leakage.span_words": "--leak-span",
    "rule_options.leakage.min_similarity": "--leak-similarity",
    "rule_options.rewording.max_similarity": "--max-rewording",
    "seed_format": "--format",
    "mapping": "--map",
    "engine_args": "--engine-arg",
}


def run_command() -> None:
    """Run the `dvsynth` app under the boundary, holding each run lock a command takes
    until it ends (`runs.lock.command_scope`)."""
    runs: list[str] = []
    try:
        from dvsynth.runs import lock

        with lock.command_scope(runs):
            from dvsynth.cli.app import app

            code = app(standalone_mode=False)
    except KeyboardInterrupt:
        interrupted(runs)
    except BaseException as exc:  # noqa: BLE001 - sorted below; the rest re-raised
        _end(exc, runs)
    if code == INTERRUPT_EXIT:  # typer turns a Ctrl-C inside a command into Exit(130)
        interrupted(runs)
    if isinstance(code, int) and code:
        sys.exit(code)


def interrupted(runs: list[str]) -> NoReturn:
    """Ctrl-C: one line saying what is kept (each written run's rows by outcome)."""
    _say(INTERRUPTED + _progress(runs), plain=True)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(INTERRUPT_EXIT)


def _progress(runs: list[str]) -> str:
    """' (run R: 12 verified, 3 pending, ...)' for the runs the command wrote."""
    parts = []
    for run in runs:
        try:
            from dvsynth.runs.store import RunStore

            store = RunStore.open_existing(run)
            try:
                counts = store.progress()
            finally:
                store.close()
        except BaseException:  # noqa: BLE001 - a summary must never hide the interrupt
            continue
        shown = ", ".join(f"{counts[k]} {k}" for k in ("verified", "pending", "rejected", "failed"))
        parts.append(f"{run}: {shown}")
    return f" ({'; '.join(parts)})" if parts else ""


def _end(exc: BaseException, runs: list[str]) -> NoReturn:
    from pydantic import ValidationError

    from dvsynth.errors import UserError

    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, UserError):
        fail(str(exc))
    if isinstance(exc, ValidationError):
        fail(settings_message(exc))
    if isinstance(exc, sqlite3.DatabaseError):
        fail(database_message(exc))
    if isinstance(exc, OSError) and (exc.filename or exc.filename2):
        fail(path_message(exc))
    kind = _click_kind(exc)
    if kind == "exit":
        if getattr(exc, "exit_code", 0) == INTERRUPT_EXIT:
            interrupted(runs)
        sys.exit(getattr(exc, "exit_code", 0))
    if kind == "abort":
        interrupted(runs)
    if kind == "usage":
        fail_usage(exc)
    raise exc


def fail_usage(exc: Any) -> NoReturn:
    """A mistyped option, command or value as one line like every other error, pointing
    to the command's help; bare `dvsynth` (click shows the help for it) is left as it is."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    if "NoArgsIsHelpError" in names or not message:
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    fail(f"{message} (see '{path} --help')" if path else message)


def fail(message: str) -> NoReturn:
    _say(message)
    sys.exit(2)


def _say(message: str, plain: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape

    from dvsynth.redact import redact

    # The message is text, not markup: `pip install "dvsynth[ray]"` must print as is.
    text = escape(redact(" ".join(message.split()) if "\n" in message else message))
    Console(stderr=True).print(
        text if plain else f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True
    )


def settings_message(exc: Any) -> str:
    """A pydantic ValidationError as '--option: what is wrong (got X)', first error first."""
    errors = exc.errors()
    first = errors[0]
    if not first["loc"]:  # a check across fields: its message names them
        message = first["msg"].removeprefix("Value error, ")
        return re.sub(
            r"(?<![.\w])[a-z]+(?:_[a-z]+)+\b",
            lambda m: _OPTION_OF_FIELD.get(m[0]) or "--" + m[0].replace("_", "-"),
            message,
        )
    loc = ".".join(str(p) for p in first["loc"])
    option = _OPTION_OF_FIELD.get(loc) or "--" + str(first["loc"][-1] if first["loc"] else "?")
    option = option.replace("_", "-")
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    got = first.get("input")
    # The value as typed, never a secret in it (a key pasted into --model).
    shown = "" if isinstance(got, (dict, list)) or got is None else redact(f" (got {got!r})")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{option}: {message[:1].lower() + message[1:]}{shown}{more}"


def database_message(exc: sqlite3.DatabaseError) -> str:
    """A database that broke while being read, named by the stores open in this process."""
    from dvsynth.runs.store import corrupt_database, open_databases

    paths = open_databases()
    where = ", ".join(str(p) for p in paths) if paths else "a run's dvsynth.sqlite"
    return corrupt_database(where, exc)  # type: ignore[arg-type]


def path_message(exc: OSError) -> str:
    """An OS error on a path: the path first, then what the system said, in words."""
    names = {
        FileExistsError: "a part of the path is a file, or it exists already",
        NotADirectoryError: "a part of the path is a file, not a folder",
        IsADirectoryError: "is a folder, not a file",
        FileNotFoundError: "no such file or folder",
        PermissionError: "permission denied",
    }
    reason = next(
        (text for kind, text in names.items() if isinstance(exc, kind)),
        exc.strerror or type(exc).__name__,
    )
    path = exc.filename if exc.filename is not None else exc.filename2
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and os.path.isfile(str(path)):
        reason = "is a file, not a folder"
    return f"{path}: {reason}"


def _click_kind(exc: BaseException) -> str | None:
    """'exit', 'abort' or 'usage' for click's own exceptions, else None.

    Matched by class name along the MRO: typer 0.29+ raises the classes of its vendored
    copy of click (`typer._click`), which are not `click`'s, and older typers raise
    click's. Both must end the same way.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "Exit" in names:
        return "exit"
    if "Abort" in names:
        return "abort"
    if "ClickException" in names and callable(getattr(exc, "show", None)):
        return "usage"
    return None
