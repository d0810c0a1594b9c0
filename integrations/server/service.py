"""What the server serves: a model (through the batcher), an optional reranker and named indexes. Their
work runs off the event loop, in the threads of ``integrations.server.work``; tokenizing in two others."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from integrations._shared.rerank import scorer, scores_of
from integrations._shared.validation import surrogate_at
from integrations.index import Index
from integrations.server.batcher import Batcher
from integrations.server.work import Serialized, ShuttingDown, Work
from integrations.sparse import vectors_of


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


@dataclass
class Limits:
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_inputs: int = 2048
    max_body_bytes: int = 16 * 2**20
    auto_truncate: bool = False  # cut every over-long input to the model's length (TEI's --auto-truncate)


class Metrics:
    """The Prometheus metrics, in a registry of their own (``/metrics``)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedkit_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "embedkit_request_seconds", "Time to answer a request", ["endpoint"], registry=self.registry
        )
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
        self.batch_texts = Histogram(
            "embedkit_batch_texts", "Texts per model batch", registry=self.registry, buckets=sizes
        )
        self.batch_tokens = Histogram(
            "embedkit_batch_tokens", "Tokens per model batch", registry=self.registry, buckets=[s * 16 for s in sizes]
        )
        self.queue_depth = Gauge("embedkit_queue_depth", "Requests waiting for the model", registry=self.registry)

    def batch(self, texts: int, tokens: int, depth: int) -> None:
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.queue_depth.set(depth)


class Service:
    def __init__(
        self,
        model,
        model_id: str,
        reranker=None,
        reranker_id: str | None = None,
        indexes: dict[str, Index] | None = None,
        limits: Limits | None = None,
        sparse_model=None,
        model_names: list[str] = (),
    ):
        self.model, self.model_id, self.reranker, self.reranker_id = model, model_id, reranker, reranker_id
        self.model_names = list(model_names) or [model_id]  # what /v1/models lists; requests may name any
        self.indexes = dict(indexes or {})
        self.limits = limits or Limits()
        self.tokenizing = ThreadPoolExecutor(2, thread_name_prefix="embedkit-tokenize")
        self.metrics = Metrics()
        self.work = Work(list(self.indexes), self.metrics.registry)
        lock = self.work.model_lock  # the models run one call at a time, whichever thread calls
        encoding = ("encode", "encode_query", "encode_document")
        for index in self.indexes.values():
            index.encoder = Serialized(index.encoder, lock, encoding)
            if index.sparse.encoder is not None:
                index.sparse.encoder = Serialized(index.sparse.encoder, lock, encoding)
        self.sparse_model = None if sparse_model is None else Serialized(sparse_model, lock, encoding)
        if reranker is not None:
            self.reranker = Serialized(reranker, lock, ("predict",))
        self.batcher = Batcher(
            self._encode,
            self.work.model,
            self.limits.max_batch_tokens,
            self.limits.max_wait_ms,
            self.limits.max_queue,
            self.metrics.batch,
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.batcher.start()

    def drain(self, timeout: float | None) -> None:
        """SIGTERM arrived (call from any thread): once ``timeout`` seconds pass (None: never), work that
        has not started is refused, and its requests answered 503; what runs finishes."""
        if self.loop is not None and timeout is not None:
            self.loop.call_soon_threadsafe(self.loop.call_later, timeout, self.refuse_waiting)

    def refuse_waiting(self) -> None:
        self.work.refuse_waiting()
        self.batcher.refuse(ShuttingDown)

    async def stop(self) -> None:
        await self.batcher.stop()
        self.work.shutdown()
        self.tokenizing.shutdown(wait=True)
        for index in self.indexes.values():
            index.close()

    # ----------------------------------------------------------------- embeddings
    def check_model(self, name: str | None, reranker: bool = False) -> None:
        """A request's ``model`` must be a name the model is served under, or its id (a folder, or its last
        part); None asks for no particular one."""
        served = self.reranker_id if reranker else self.model_id
        names = [] if reranker else self.model_names
        if name is not None and name not in (served, str(served).rstrip("/").rsplit("/", 1)[-1], *names):
            shown = names if names and names != [served] else served
            raise APIError(
                404, f"model {name!r} is not served here; this server serves {shown!r}", code="model_not_found"
            )

    def prompt(self, input_type: str | None, prompt_name: str | None) -> str:
        """The prompt text: the query or document prompt for ``input_type``, a named one, or the default."""
        if prompt_name is not None:
            if prompt_name not in self.model.prompts:
                raise APIError(400, f"unknown prompt_name {prompt_name!r}; the model has {sorted(self.model.prompts)}")
            return self.model.prompts[prompt_name]
        if input_type == "query":
            return self.model.query_prompt
        if input_type in ("document", "passage"):
            return self.model.document_prompt
        default = self.model.default_prompt_name
        return self.model.prompts.get(default, "") if default else ""

    def check_inputs(self, texts: list, what: str = "input") -> list[str]:
        if not texts:
            raise APIError(400, f"{what} must not be empty", param=what)
        if len(texts) > self.limits.max_inputs:
            raise APIError(413, f"{what} holds {len(texts)} texts; at most {self.limits.max_inputs} per request")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise APIError(400, f"{what}[{i}] must be a string; token arrays are not supported", param=what)
            check_text(text, f"{what}[{i}]", what)
        return texts

    async def embed(self, texts: list[str], prompt: str, dimensions, normalize: bool, truncate: bool):
        """(rows, tokens used) for ``texts``; each text tokenized once, here, and batched with others."""
        if dimensions is not None and dimensions > self.model.get_sentence_embedding_dimension():
            raise APIError(
                400, f"dimensions {dimensions} exceeds the model's {self.model.get_sentence_embedding_dimension()}"
            )
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(self.tokenizing, self._token_ids, [prompt + t for t in texts])
        limit = self.model.max_seq_length
        if not (truncate or self.limits.auto_truncate):
            for i, row in enumerate(ids):
                if len(row) > limit:
                    raise APIError(
                        400,
                        f"input[{i}] is {len(row)} tokens long; the model takes at most {limit} "
                        "(send truncate: true to cut it, or start the server with --auto-truncate)",
                        param="input",
                        code="context_length_exceeded",
                    )
        used = sum(min(len(row), limit) for row in ids)
        rows = await self.batcher.embed((prompt, dimensions, normalize), list(zip(texts, ids)), used)
        return rows, used

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def _encode(self, options: tuple, items: list) -> np.ndarray:
        prompt, dimensions, normalize = options
        texts, ids = [t for t, _ in items], [i for _, i in items]
        with self.work.model_lock:
            return self.model.encode(
                texts,
                prompt=prompt or None,
                token_ids=ids,
                batch_size=64,
                truncate_dim=dimensions,
                normalize_embeddings=normalize,
                convert_to_numpy=True,
            )

    async def embed_sparse(self, texts: list[str], prompt_name: str | None, truncate: bool) -> list:
        """The (dimensions, weights) of each text's sparse vector, by the server's sparse model."""
        model = self.sparse_model
        if model is None:
            raise APIError(404, "no sparse model is served here (start the server with --sparse-model MODEL)")
        if prompt_name is not None and prompt_name not in model.prompts:
            raise APIError(400, f"unknown prompt_name {prompt_name!r}; the sparse model has {sorted(model.prompts)}")

        def encode():
            if not (truncate or self.limits.auto_truncate):
                prompt = model.prompts.get(prompt_name, "") if prompt_name else ""
                ids = model.tokenizer([prompt + t for t in texts], add_special_tokens=True)["input_ids"]
                for i, row in enumerate(ids):
                    if len(row) > model.max_seq_length:
                        raise APIError(
                            400,
                            f"inputs[{i}] is {len(row)} tokens long; the sparse model takes at most "
                            f"{model.max_seq_length} (send truncate: true to cut it)",
                            param="inputs",
                            code="context_length_exceeded",
                        )
            return vectors_of(model.encode(texts, prompt_name=prompt_name, batch_size=32), len(texts))

        return await self.work.run("model", encode)

    # ----------------------------------------------------------------- reranking and indexes
    async def rerank(self, query: str, documents: list[str]) -> np.ndarray:
        if self.reranker is None:
            raise APIError(404, "no reranker is served here (start the server with --reranker MODEL)")
        check_text(query, "query", "query")
        score = scorer(self.reranker, len(documents), 1)
        return np.asarray(await self.work.run("model", lambda: scores_of(score, query, documents)), dtype=np.float64)

    def index(self, name: str) -> Index:
        if name not in self.indexes:
            raise APIError(404, f"no index {name!r}; served: {sorted(self.indexes)}", code="index_not_found")
        return self.indexes[name]

    async def read(self, name: str, fn, *args, **kwargs) -> Any:
        """``fn`` (a read of index ``name``) in the pool of index readers."""
        self.index(name)
        return await self.work.run("read", lambda: fn(*args, **kwargs))

    async def write(self, name: str, fn, *args, **kwargs) -> Any:
        """``fn`` (a write to index ``name``) in that index's lane, after the writes that came before it."""
        self.index(name)
        return await self.work.run(name, lambda: fn(*args, **kwargs))


def check_text(text: str, name: str, param: str) -> None:
    """A 400 for a blank text or one that is not valid UTF-8 (a lone surrogate), naming it."""
    if not text.strip():
        raise APIError(400, f"{name} is empty", param=param)
    if (at := surrogate_at(text)) is not None:
        raise APIError(400, f"{name} contains a lone surrogate at position {at} (not valid UTF-8)", param=param)
