"""A fake of OpenAI's Files and Batches endpoints, on a `FakeLLMServer`'s port.

    server = FakeLLMServer()
    fake = FakeOpenAIBatches(server, polls_to_complete=2, expire_share=0.2)
    server.start()  # the routes are added at start: attach the fake before

It serves what litellm (custom_llm_provider="openai", api_base=server.api_base) calls:
POST /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content, POST /v1/batches,
GET /v1/batches (newest first, `limit` / `after`), GET /v1/batches/{id} and
POST /v1/batches/{id}/cancel, with OpenAI's object shapes.

A batch runs every request line the way the online fake answers it: `completion_body`
of the line's body, or an error line with `answer_for`'s status when that is not 200.
The knobs and counters both batch fakes share (`polls_to_complete`,
`complete_after_s`, `expire_share`, `drop_share`, `extra_ids`,
`fail_create_after_commit` with `create_fault`; `batches_created`,
`requests_by_custom_id`, `runs_by_custom_id`, `expired_ids`, `request_headers`, `calls`,
`batches`) are documented once, in `dvsynth.fakes.common`. Here a batch is
`validating` when created, `in_progress` from the first status poll (GET
/v1/batches/{id}) and `completed` when it ends; with expired requests it ends `expired`
and they come back in the error file with code `batch_expired`; `extra_ids` lines are
added to the output file; `create_fault` is "500" unless told. This fake's own knob
(a constructor argument, also a plain attribute a test may change while a batch runs):

- `fail_batch`: the batch ends `failed` with this message in `errors` (True: a default).

This fake's own counters: `files_uploaded`, `uploads` (each uploaded file's bytes),
`authorizations` (each request's Authorization header) and `files` (the stored files).

Input lines that are not valid JSON, name another endpoint or repeat a custom_id make
the batch fail validation, as OpenAI's does.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dvsynth.fakes.common import FakeBatchAPI, batch_endpoint
from dvsynth.fakes.common import share_of as share_of  # tests draw with it
from dvsynth.testing import FakeLLMServer, answer_for, completion_body

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
DEFAULT_FAILURE = "The batch failed (fake): the provider could not process it."


def _prompt(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def _error(message: str, status: int, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status=status,
    )


@dataclass
class FakeFile:
    id: str
    content: bytes
    filename: str
    purpose: str
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class FakeBatch:
    obj: dict[str, Any]
    lines: list[tuple[str, dict[str, Any]]]
    invalid: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.obj["id"]

    @property
    def status(self) -> str:
        return self.obj["status"]


def _late_error_line(line_id: str, custom_id: str) -> dict[str, Any]:
    """A 500 line for a request whose answer is in the output file (`late_error_share`)."""
    message = "The server had an error processing your request."
    return {
        "id": line_id + "_late",
        "custom_id": custom_id,
        "response": {
            "status_code": 500,
            "request_id": "req_late",
            "body": {"error": {"message": message, "type": "server_error"}},
        },
        "error": None,
    }


class FakeOpenAIBatches(FakeBatchAPI[FakeBatch]):
    """OpenAI's Files + Batches API on the fake server's port (see the module doc)."""

    ROOT = "/v1/batches"
    ENDED = TERMINAL
    CANCELLING = "cancelling"

    def __init__(
        self, server: FakeLLMServer, *, fail_batch: bool | str = False, **shared: Any
    ) -> None:
        """`shared`: the knobs every batch fake has (`FakeBatchAPI`, dvsynth.fakes.common)."""
        super().__init__(server, **shared)
        self.fail_batch = fail_batch
        self.files: dict[str, FakeFile] = {}
        self.files_uploaded = 0
        self.uploads: list[bytes] = []
        self.authorizations: list[str | None] = []

    # ------------------------------------------------------------------ plumbing

    def _more_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/files", self._create_file),
            web.get("/v1/files/{file_id}", self._retrieve_file),
            web.get("/v1/files/{file_id}/content", self._file_content),
        ]

    async def _seen(self, request: web.Request) -> web.Response | None:
        """Record the call; a 401 when the server wants a key and this is not it."""
        with self._lock:
            self._count(request)
            self.authorizations.append(request.headers.get("Authorization"))
        want = self.server.require_key
        if want is not None and request.headers.get("Authorization") != f"Bearer {want}":
            return _error("Incorrect API key provided", 401)
        return None

    def _not_found(self, batch_id: str) -> web.Response:
        return _error(f"No batch found with id '{batch_id}'.", 404)

    def _view(self, request: web.Request, batch: FakeBatch) -> dict[str, Any]:
        return dict(batch.obj)

    # ------------------------------------------------------------------ files

    async def _create_file(self, request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        form = await request.post()
        upload = form.get("file")
        purpose = str(form.get("purpose") or "")
        if not isinstance(upload, web.FileField):
            return _error("'file' is a required multipart field", 400)
        if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data", "evals"):
            return _error(f"Invalid purpose {purpose!r}", 400)
        content = upload.file.read()
        with self._lock:
            record = FakeFile(
                self._next_id("file-fake"),
                content,
                upload.filename or "upload.jsonl",
                purpose,
                int(time.time()),
            )
            self.files[record.id] = record
            self.files_uploaded += 1
            self.uploads.append(content)
        return web.json_response(record.obj())

    async def _find_file(self, request: web.Request) -> FakeFile | web.Response:
        """The file the route names, or the 401 or 404 to answer instead."""
        if (denied := await self._seen(request)) is not None:
            return denied
        file_id = request.match_info["file_id"]
        return self.files.get(file_id) or _error(f"No such File object: {file_id}", 404)

    async def _retrieve_file(self, request: web.Request) -> web.Response:
        found = await self._find_file(request)
        return web.json_response(found.obj()) if isinstance(found, FakeFile) else found

    async def _file_content(self, request: web.Request) -> web.Response:
        found = await self._find_file(request)
        if not isinstance(found, FakeFile):
            return found
        return web.Response(body=found.content, content_type="application/octet-stream")

    def _store_file(self, lines: list[dict[str, Any]], purpose: str) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        record = FakeFile(
            self._next_id("file-fake"), content, f"{purpose}.jsonl", purpose, int(time.time())
        )
        self.files[record.id] = record
        return record.id

    # ------------------------------------------------------------------ batches

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        try:
            payload = await request.json()
        except ValueError:
            return _error("The body is not JSON", 400)
        endpoint = payload.get("endpoint")
        if endpoint != "/v1/chat/completions":
            return _error(f"Unsupported endpoint {endpoint!r} (the fake runs chat only)", 400)
        if payload.get("completion_window") != "24h":
            return _error("completion_window must be '24h'", 400)
        record = self.files.get(str(payload.get("input_file_id")))
        if record is None or record.purpose != "batch":
            return _error(f"No batch input file {payload.get('input_file_id')!r}", 400)
        metadata = payload.get("metadata")
        lines, invalid = self._read_input(record.content, endpoint)
        with self._lock:
            now = int(time.time())
            batch = FakeBatch(
                obj={
                    "id": self._next_id("batch_fake"),
                    "object": "batch",
                    "endpoint": endpoint,
                    "errors": None,
                    "input_file_id": record.id,
                    "completion_window": "24h",
                    "status": "validating",
                    "output_file_id": None,
                    "error_file_id": None,
                    "created_at": now,
                    "in_progress_at": None,
                    "expires_at": now + 24 * 3600,
                    "finalizing_at": None,
                    "completed_at": None,
                    "failed_at": None,
                    "expired_at": None,
                    "cancelling_at": None,
                    "cancelled_at": None,
                    "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "metadata": metadata if isinstance(metadata, dict) else None,
                },
                lines=lines,
                invalid=invalid,
            )
            fault = self._commit(batch, (custom_id for custom_id, _ in lines))
            answer = self._view(request, batch)
        message = "The server had an error processing your request."
        return self._created(request, answer, fault, _error(message, 500, "server_error"))

    @staticmethod
    def _read_input(
        content: bytes, endpoint: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        lines: list[tuple[str, dict[str, Any]]] = []
        invalid: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(content.decode("utf-8", "replace").split("\n"), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = None
            if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
                invalid.append({"code": "invalid_json_line", "line": number})
                continue
            custom_id = str(line.get("custom_id", ""))
            if line.get("url") != endpoint:
                invalid.append({"code": "mismatched_endpoint", "line": number})
            elif not custom_id or custom_id in seen:
                invalid.append({"code": "duplicate_custom_id", "line": number})
            else:
                seen.add(custom_id)
                lines.append((custom_id, line["body"]))
        return lines, invalid

    def _advance(self, batch: FakeBatch, poll: bool) -> None:
        """The shared life, and `in_progress` from the first poll of a batch not yet due."""
        super()._advance(batch, poll)
        if batch.status == "validating" and batch.polls >= 1:
            batch.obj.update(status="in_progress", in_progress_at=int(time.time()))
            batch.obj["request_counts"]["total"] = len(batch.lines)

    def _finish(self, batch: FakeBatch, cancelled: bool = False) -> None:
        now = int(time.time())
        obj = batch.obj
        if batch.invalid or self.fail_batch:
            errors = [
                {
                    "code": e["code"],
                    "message": f"{e['code']} on line {e['line']}",
                    "param": None,
                    "line": e["line"],
                }
                for e in batch.invalid
            ]
            if self.fail_batch and not errors:
                message = self.fail_batch if isinstance(self.fail_batch, str) else DEFAULT_FAILURE
                errors = [{"code": "batch_failed", "message": message, "param": None, "line": None}]
            obj.update(
                status="failed",
                failed_at=now,
                errors={"object": "list", "data": errors},
                request_counts={"total": 0, "completed": 0, "failed": 0},
            )
            return
        output: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        completed = failed = expired = 0
        late: list[dict[str, Any]] = []  # error lines after an answer (error file: read last)
        for index, (custom_id, body) in enumerate(batch.lines):
            line_id = f"batch_req_{batch.id[-6:]}_{index:05d}"
            fate = self._fate(custom_id, cancelled)
            if fate != "run":
                expired += 1
                message = (
                    "This request was not executed because the batch was cancelled."
                    if fate == "cancelled"
                    else "This request could not be executed before the completion window expired."
                )
                failures.append(
                    {
                        "id": line_id,
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": f"batch_{fate}", "message": message},
                    }
                )
                continue
            status, text = answer_for(_prompt(body))
            if status == 200:
                completed += 1
                answer: dict[str, Any] = completion_body(body)
                if self._bad_usage(custom_id):
                    answer["usage"] = "n/a"
                if self._late_error(custom_id):
                    late.append(_late_error_line(line_id, custom_id))
            else:
                failed += 1
                kind = "server_error" if status >= 500 else "invalid_request_error"
                answer = {"error": {"message": text, "type": kind, "param": None, "code": None}}
            if self._dropped(custom_id):
                continue  # ran, but its line never reaches the results
            line = {
                "id": line_id,
                "custom_id": custom_id,
                "response": {
                    "status_code": status,
                    "request_id": "req_" + hashlib.sha256(line_id.encode()).hexdigest()[:24],
                    "body": answer,
                },
                "error": None,
            }
            (output if status == 200 else failures).append(line)
        for number, custom_id in enumerate(self.extra_ids):
            body = {"model": "fake", "messages": [{"role": "user", "content": custom_id}]}
            output.append(
                {
                    "id": f"batch_req_{batch.id[-6:]}_extra{number}",
                    "custom_id": custom_id,
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_extra{number}",
                        "body": completion_body(body),
                    },
                    "error": None,
                }
            )
        failures += late
        state = "cancelled" if cancelled else "expired" if expired else "completed"
        obj.update(
            status=state,
            output_file_id=self._store_file(output, "batch_output"),
            error_file_id=self._store_file(failures, "batch_output"),
            request_counts={"total": len(batch.lines), "completed": completed, "failed": failed},
        )
        obj["in_progress_at"] = obj["in_progress_at"] or now
        obj[{"cancelled": "cancelled_at", "expired": "expired_at"}.get(state, "completed_at")] = now
        if state == "completed":
            obj["finalizing_at"] = now

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        try:
            limit = min(100, max(1, int(request.query.get("limit", "20"))))
        except ValueError:
            return _error("limit must be an integer", 400)
        after = request.query.get("after")
        with self._lock:
            newest_first = self._newest_first()
            if after:
                ids = [b.id for b in newest_first]
                if after not in ids:
                    return _error(f"No batch found with id '{after}'.", 404)
                newest_first = newest_first[ids.index(after) + 1 :]
            page = [self._view(request, b) for b in newest_first[:limit]]
            has_more = len(newest_first) > limit
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": has_more,
            }
        )

    @batch_endpoint
    def _cancel(self, request: web.Request, batch: FakeBatch) -> web.Response:
        if batch.status in TERMINAL:
            return _error(f"Cannot cancel a batch with status '{batch.status}'.", 409)
        if batch.status != "cancelling":
            batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(self._view(request, batch))
