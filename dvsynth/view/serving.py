"""Serving an app until Ctrl-C: 127.0.0.1 and a free port by default, the URL with its
token printed, the browser opened unless asked not to, and a clean stop (SIGINT or
SIGTERM) that closes every connection and database before the command returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from dvsynth.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_host(host: str, port: int) -> str | None:
    """The warning a non-local --host prints (the token is the only guard), or None."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port: {port} is not between 0 and 65535")
    if not host.strip():
        raise UserError("--host: empty")
    if host in LOCAL_HOSTS:
        return None
    return (
        f"--host {host}: anyone who can reach this machine and has the URL below (its "
        "token is the only guard) can read what it serves; share it only over a trusted "
        "network"
    )


def serve(
    app: web.Application,
    token: str,
    host: str,
    port: int,
    open_browser: bool,
    say: Callable[[str], None],
    paths: Sequence[str] = ("/",),
) -> None:
    """Serve `app` until interrupted; `say` prints a line for the user: the URL of each
    of `paths` (the browser opens the first)."""
    warning = check_host(host, port)
    if warning:
        say(f"warning: {warning}")
    try:
        asyncio.run(_serve(app, token, host, port, open_browser, say, list(paths)))
    except KeyboardInterrupt:
        pass
    say("stopped")


async def _serve(app, token, host, port, open_browser, say, paths) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the URL is out: a stop is clean
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise UserError(
                f"--host {host} --port {port}: cannot listen ({exc.strerror})"
            ) from None
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        urls = [f"http://{shown}:{bound[1]}/{token}{path}" for path in paths]
        url = urls[0]
        say(f"serving on {url}  (Ctrl-C stops)")
        for other in urls[1:]:
            say(f"       and {other}")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            with contextlib.suppress(Exception):  # no browser: the URL is printed
                webbrowser.open(url)
        await stop.wait()
    finally:
        await runner.cleanup()
