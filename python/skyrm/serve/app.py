"""The HTTP face of ``skyrm serve`` (FastAPI on uvicorn, the stack of OpenRLHF's own ``serve_rm``):

* ``POST /get_reward`` -> ``{"rewards": [...], "scores": [...], "extra_logs": {}}``, one reward per query, as
  OpenRLHF's remote reward-model client reads it (``scores``, which its dynamic filtering reads, are the rewards);
* ``POST /score`` -> ``{"scores": [...]}``, one per item;
* ``POST /compare`` -> ``{"scores_a": [...], "scores_b": [...], "margins": [...], "preferred": ["a" | "b" |
  "tie", ...]}``, one of each per pair, ``margins`` being score a minus score b;
* ``GET /health`` -> ``{"status": "ok", "model": ..., "queue": {...}}``; ``GET /metrics`` (:mod:`.metrics`).

Errors answer ``{"error": "one line"}``: 400 for a body that is not JSON or has a wrong or missing field (the
line names it: ``items[0].response: Field required``), 413 for a body over ``max_bytes`` or a request of more
than ``max_items`` items or of more sequences than the queue holds, 503 (with ``Retry-After``) when the queue is
full, 500 when scoring fails. A body's size is checked before it is read whole, and a request's room in the queue
before it is encoded, so refusals are cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from skyrm.serve.batcher import Batcher, QueueFull
from skyrm.serve.metrics import Metrics
from skyrm.serve.protocol import CompareRequest, RewardRequest, ScoreRequest, error_message
from skyrm.serve.scorer import ItemError, Scorer

__all__ = ["ServeSettings", "build_app"]

ENDPOINTS = ("/get_reward", "/score", "/compare", "/health", "/metrics")
#: How often a request waiting for its scores checks that its client is still there.
DISCONNECT_POLL_S = 0.25


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits: ``max_wait`` (seconds a request may wait for others to share its batch),
    ``max_queue`` (sequences waiting or being scored; more: 503), ``max_items`` (items, pairs or queries per
    request), ``max_bytes`` (the request body); ``model`` names the model in ``/health``."""

    model: str = ""
    max_wait: float = 0.005
    max_queue: int = 4096
    max_items: int = 512
    max_bytes: int = 16 * 2**20


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware: refuses a body over ``max_bytes`` (413) before reading it whole, and records every
    request's endpoint, status and latency in ``metrics``."""

    def __init__(self, app, max_bytes: int, metrics: Metrics) -> None:
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] == "POST":
                body = await self._body(scope, receive)
                if body is None:
                    too_big = _error(413, f"the request body is over the server's --max-request-mb "
                                          f"({self.max_bytes / 2**20:g} MiB)")  # fmt: skip
                    return await too_big(scope, receive, send_status)
                receive = _replay(body, receive)
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.request(endpoint, status, time.perf_counter() - start)

    async def _body(self, scope, receive) -> bytes | None:
        """The whole body, or None as soon as it is known to be over ``max_bytes``."""
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that gives ``body`` once, then waits on the client as ``receive`` does (disconnects)."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _parse(request: Request, model: type[BaseModel]):
    """The body as ``model``, read as JSON whatever its content type (``curl -d`` sends a form's); a 400 naming
    the field otherwise."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        raise ApiError(400, error_message(e.errors())) from None


def build_app(scorer: Scorer, settings: ServeSettings) -> FastAPI:
    """The app over ``scorer``; its batcher starts and stops with the app (FastAPI's lifespan)."""
    metrics = Metrics()
    batcher: Batcher | None = None

    @asynccontextmanager
    async def lifespan(app):
        nonlocal batcher
        batcher = Batcher(scorer, scorer.batch_tokens, settings.max_wait, settings.max_queue, metrics.batch)
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="skyrm serve", summary="Rewards of a Bradley-Terry reward model", lifespan=lifespan)
    app.add_middleware(Guard, max_bytes=settings.max_bytes, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException) -> JSONResponse:  # 404, 405: the same one-line layout
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    async def while_connected(request: Request, work) -> list[float]:
        """``work`` (scoring a request), cancelled if its client goes away meanwhile: its sequences leave the queue
        unscored, instead of making later requests wait for answers nobody reads (a client that timed out and
        retries)."""
        task = asyncio.ensure_future(work)
        while not (await asyncio.wait({task}, timeout=DISCONNECT_POLL_S))[0]:
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ApiError(499, "the client went away before its answer")  # counted in /metrics, read by none
        return task.result()

    async def rewards(request: Request, endpoint: str, field: str, values: list, sequences: int,
                      encode) -> list[float]:  # fmt: skip
        """The scores of ``values`` (the request's ``field``): admitted, encoded in a thread, batched."""
        if len(values) > settings.max_items:
            raise ApiError(413, f"{field}: {len(values)} in one request, over the server's --max-items "
                                f"{settings.max_items}; split the request")  # fmt: skip
        if sequences > settings.max_queue:  # never admitted, however long the client waits: not a 503
            raise ApiError(413, f"{field}: {sequences} sequences in one request, over the server's --max-queue "
                                f"{settings.max_queue}; split the request")  # fmt: skip
        try:
            batcher.admit(sequences)
        except QueueFull as e:
            raise ApiError(503, str(e), {"Retry-After": "1"}) from None
        try:
            scores = await while_connected(
                request, batcher.scores(sequences, lambda: scorer.encode_all(values, field, encode))
            )
        except ItemError as e:
            raise ApiError(400, str(e)) from None
        except ApiError:
            raise
        except Exception as e:
            print(f"skyrm serve: scoring failed: {type(e).__name__}: {e}", file=sys.stderr)
            raise ApiError(500, f"scoring failed: {type(e).__name__}: {e}") from None
        metrics.sequences(endpoint, sequences)
        return scores

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        """OpenRLHF's remote reward model: one reward per query (a prompt and answer in the template's format)."""
        body = await _parse(request, RewardRequest)
        values = await rewards(request, "/get_reward", "query", body.query, len(body.query), scorer.query)
        return JSONResponse({"rewards": values, "scores": values, "extra_logs": {}})

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        """One score per item: a conversation (``messages``) or a ``prompt`` and its ``response``."""
        body = await _parse(request, ScoreRequest)
        scores = await rewards(request, "/score", "items", body.items, len(body.items), scorer.item)
        return JSONResponse({"scores": scores})

    @app.post("/compare")
    async def compare(request: Request) -> JSONResponse:
        """Two responses to one prompt scored: each score, the margin (a minus b) and the preferred one."""
        body = await _parse(request, CompareRequest)
        values = await rewards(request, "/compare", "pairs", body.pairs, 2 * len(body.pairs), scorer.pair)
        a, b = values[0::2], values[1::2]
        preferred = ["a" if x > y else "b" if y > x else "tie" for x, y in zip(a, b, strict=True)]
        margins = [x - y for x, y in zip(a, b, strict=True)]
        return JSONResponse({"scores_a": a, "scores_b": b, "margins": margins, "preferred": preferred})

    def queue() -> dict:
        pending = batcher.pending if batcher is not None else 0
        return {"pending_sequences": pending, "max_queue": settings.max_queue}

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "model": settings.model, "queue": queue()})

    @app.get("/metrics")
    async def report() -> JSONResponse:
        return JSONResponse(metrics.report(queue()))

    return app
