"""The FastAPI application: OpenAI-, Cohere- and TEI-shaped endpoints, index endpoints, health, metrics
and the search page. Errors come back in OpenAI's shape, never as a traceback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import importlib.resources
import logging
import time
import uuid

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from integrations.errors import (
    DimensionMismatchError,
    FilterError,
    IndexClosedError,
    InvalidInputError,
    ReadOnlyIndexError,
    RerankError,
    StoreError,
    UnknownIdsError,
)
from integrations.server import schemas
from integrations.server.batcher import QueueFull
from integrations.server.service import APIError, Service
from integrations.server.work import ShuttingDown

logger = logging.getLogger(__name__)


def create_app(service: Service, api_key: str | None = None, cors_origins: list[str] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="embedkit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(Internal)  # innermost: the metrics count its 500s
    app.add_middleware(BodyLimit, limit=service.limits.max_body_bytes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"], allow_headers=["*"])
    _errors(app)
    _metrics(app, service)
    key = Depends(_key_check(api_key))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return (importlib.resources.files("integrations.server") / "page.html").read_text(encoding="utf-8")

    @app.get("/metrics", dependencies=[key])
    async def metrics():
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[key])
    async def models():
        served = service.model_names + ([service.reranker_id] if service.reranker is not None else [])
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "embedkit"} for m in served],
        }

    @app.post("/v1/embeddings", dependencies=[key])
    async def embeddings(body: schemas.Embeddings, request: Request):
        service.check_model(body.model)
        texts = service.check_inputs([body.input] if isinstance(body.input, str) else body.input)
        prompt = service.prompt(body.input_type, body.prompt_name)
        rows, used = await _unless_gone(request, service.embed(texts, prompt, body.dimensions, False, body.truncate))
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(row, body.encoding_format)}
            for i, row in enumerate(rows)
        ]
        return {
            "object": "list",
            "data": data,
            "model": service.model_id,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }

    @app.post("/embed", dependencies=[key])
    async def tei_embed(body: schemas.TeiEmbed, request: Request):
        texts = service.check_inputs([body.inputs] if isinstance(body.inputs, str) else body.inputs, "inputs")
        prompt = service.prompt(None, body.prompt_name)
        rows, _ = await _unless_gone(request, service.embed(texts, prompt, None, body.normalize, body.truncate))
        return rows.tolist()

    @app.post("/embed_sparse", dependencies=[key])
    async def tei_embed_sparse(body: schemas.TeiEmbedSparse, request: Request):
        texts = service.check_inputs([body.inputs] if isinstance(body.inputs, str) else body.inputs, "inputs")
        rows = await _unless_gone(request, service.embed_sparse(texts, body.prompt_name, body.truncate))
        return [[{"index": int(d), "value": float(w)} for d, w in zip(*row)] for row in rows]

    @app.post("/v1/rerank", dependencies=[key])
    async def rerank(body: schemas.Rerank):
        service.check_model(body.model, reranker=True)
        texts = service.check_inputs([d if isinstance(d, str) else d.text for d in body.documents], "documents")
        scores = await service.rerank(body.query, texts)
        order = np.argsort(-scores, kind="stable")[: body.top_n]
        results = [
            {"index": int(i), "relevance_score": float(scores[i])}
            | ({"document": {"text": texts[i]}} if body.return_documents else {})
            for i in order
        ]
        return {"id": str(uuid.uuid4()), "model": service.reranker_id, "results": results}

    @app.post("/rerank", dependencies=[key])
    async def tei_rerank(body: schemas.TeiRerank):
        texts = service.check_inputs(body.texts, "texts")
        scores = await service.rerank(body.query, texts)
        order = np.argsort(-scores, kind="stable")
        return [
            {"index": int(i), "score": float(scores[i])} | ({"text": texts[i]} if body.return_text else {})
            for i in order
        ]

    from integrations.server.index_routes import index_routes

    app.include_router(index_routes(service), dependencies=[key])
    return app


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _unless_gone(request: Request, work):
    """``await work``, unless the client disconnects first: then the work is cancelled (a request still
    in the batcher's queue is dropped before it reaches the model)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task not in done:
        task.cancel()
        raise ClientGone
    return task.result()


def _encoded(row: np.ndarray, encoding_format: str):
    row = np.asarray(row, dtype=np.float32)
    return (
        base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") if encoding_format == "base64" else row.tolist()
    )


def _key_check(api_key: str | None):
    """A dependency that wants ``Authorization: Bearer KEY``, compared in constant time."""
    expected = None if not api_key else f"Bearer {api_key}".encode()

    async def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise APIError(401, "a valid API key is needed: send Authorization: Bearer KEY", code="invalid_api_key")

    return check


def _error(status: int, message: str, type: str = "invalid_request_error", param=None, code=None, headers=None):
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return _error(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(ClientGone)
    async def client_gone(request, exc):
        return Response(status_code=499)  # nobody reads it; counted in the metrics

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request, exc):
        message = "the server is shutting down and did not run this request (nothing of it was done); retry"
        return _error(503, message, "server_busy", headers={"Retry-After": "1"})

    @app.exception_handler(QueueFull)
    async def queue_full(request, exc):
        return _error(503, f"the server is busy ({exc}); retry shortly", "server_busy", headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "))
        return _error(400, f"{where}: {first.get('msg', 'invalid')}", param=where)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return _error(
            exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "invalid_request_error"
        )

    @app.exception_handler(StoreError)
    async def store_error(request, exc: StoreError):
        if isinstance(exc, FilterError):
            return _error(400, f"filter: {exc}", param="filter")
        if isinstance(exc, (InvalidInputError, DimensionMismatchError)):
            return _error(400, str(exc))
        if isinstance(exc, UnknownIdsError):
            return _error(404, str(exc), "not_found")
        if isinstance(exc, ReadOnlyIndexError):
            return _error(403, "the index is read-only here", "permission_error")
        if isinstance(exc, IndexClosedError):
            return _error(503, "the index is closed: the server is shutting down", "server_busy")
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        if isinstance(exc, RerankError):  # the served reranker's fault, said as the index search says it
            return _error(500, str(exc), "server_error")
        return _error(500, f"the store failed: {type(exc).__name__} (the server log has the details)", "server_error")


def _metrics(app: FastAPI, service: Service) -> None:
    metrics = service.metrics

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response


class BodyLimit:
    """Answers 413 to a request body over ``limit`` bytes, whether or not it says its length up front: the
    body is read (up to the limit) before the application sees it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = _error(413, f"the request body is over {self.limit} bytes")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_big(scope, receive, send)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await too_big(scope, receive, send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class Internal:
    """Any other exception is a bug of ours, whatever its type: the server log gets the traceback and the
    client a 500 that tells nothing internal (Starlette's own handler would close the connection)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            logger.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            await _error(500, "internal error (the server log has the details)", "server_error")(scope, receive, send)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with no deadline of its own for the requests in flight (uvicorn's would cancel them
    and answer 500 while their work may still land): the first SIGTERM or Ctrl-C starts the service's
    drain, whose ``drain_timeout`` refuses only work that has not started."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_timeout: float | None):
        super().__init__(config)
        self.service, self.drain_timeout = service, drain_timeout

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            self.service.drain(self.drain_timeout)
        super().handle_exit(sig, frame)
