"""A fake OpenAI-compatible server with one thread per connection (no asyncio).

The project's fake (dvsynth/testing.py) is an aiohttp server: cheap per request, so it
leaves most of a small machine's CPU to the client and hides the client's own cost. A
threaded server (as many simple deployments are) spends more of the shared CPU, so a
client that wastes CPU loses throughput against it. The answers are the fake's
(`completion_body`), after a fixed latency; `/stats` reports the busy span, first
request in to last response out, as the aiohttp fake does.

    python benchmarks/threaded_server.py --latency 0.5   # prints {"api_base": ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dvsynth.testing import completion_body  # noqa: E402


class Counters:
    """Requests answered and the busy span, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.first_in: float | None = None
        self.last_out: float | None = None

    def started(self) -> None:
        with self.lock:
            if self.first_in is None:
                self.first_in = time.monotonic()

    def finished(self) -> None:
        with self.lock:
            self.total += 1
            self.last_out = time.monotonic()

    def stats(self) -> dict:
        with self.lock:
            busy = (self.last_out or 0) - (self.first_in or 0)
            return {"total": self.total, "busy_s": max(busy, 0.0)}


def make_handler(latency: float, counters: Counters) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one thread serves one connection

        def log_message(self, *args) -> None:  # no line per request on stderr
            pass

        def _send(self, status: int, data: dict) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._send(200, counters.stats())

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.endswith("/reset"):
                with counters.lock:
                    counters.reset()
                self._send(200, {"ok": True})
                return
            counters.started()
            time.sleep(latency)
            self._send(200, completion_body(json.loads(raw)))
            counters.finished()

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # 512 clients connect at once; the default backlog is 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), make_handler(args.latency, Counters()))
    port = server.server_address[1]
    print(json.dumps({"api_base": f"http://127.0.0.1:{port}/v1"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
