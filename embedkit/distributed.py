"""Encoding beyond one machine with Ray Data: ``embed_dataset`` adds an embedding column to a dataset by
``map_batches`` through a pool of actors, each of which loads the model once. Needs the ``ray`` extra.

    import ray
    from embedkit.distributed import embed_dataset

    ds = ray.data.read_parquet("s3://bucket/docs/")            # any dataset with a text column
    embed_dataset(ds, "all-MiniLM-L6-v2", role="document").write_parquet("s3://bucket/embeddings/")

With ``chunk_tokens`` (``None`` for chunks as long as the model takes, or N tokens), each long text becomes
one row per chunk, as the stores keep them: every chunk row carries the document's id and other columns,
``chunk`` (0, 1, ...), ``chunks`` (the document's count) and ``span`` (the chunk's characters, null for a
text that is one chunk); the text column holds the whole text on chunk 0 and "" on later chunks, so a
corpus is written once. The writers in ``integrations.ray_writers`` store such rows as ``Index(chunk_tokens=...)``
does.

Actors take one GPU each where the cluster has GPUs, and CPU cores otherwise. A killed actor is restarted
and its batches retried by Ray, so every row comes out once. A row whose text is not a string fails the
job with the row's id. Writers into the stores live in ``integrations.ray_writers``.
"""

from __future__ import annotations

import numpy as np

from ._optional import require
from .chunking import Chunker, piece
from .quantization import PRECISIONS

CHUNK_COLUMNS = ("chunk", "chunks", "span")


def embed_dataset(
    ds,
    model: str,
    text_column: str = "text",
    output_column: str = "embedding",
    *,
    id_column: str = "id",
    role: str | None = None,
    batch_size: int = 256,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    cpus_per_actor: float | None = None,
    dtype: str | None = None,
    precision: str = "float32",
    prompt: str | None = None,
    normalize_embeddings: bool = False,
    truncate_dim: int | None = None,
    chunk_tokens: int | None = 0,
    chunk_overlap: int = 32,
    backend: str = "torch",
):
    """``ds`` with ``output_column`` added: each row's embedding as a fixed-size list (float32, or the
    integers of ``precision``). ``model`` is a name or a folder that every node can read. ``role``
    (``"query"`` or ``"document"``) applies the model's prompt for it; ``prompt`` sets one directly.
    ``concurrency`` is the number of actors (default: one per GPU, or one per two cores), each reserving
    ``cpus_per_actor`` cores (default: one, less where that would leave no core for the reading tasks);
    ``dtype`` (``"float16"``, ``"bfloat16"``) loads the weights in that type; ``backend="onnx"`` runs int8
    ONNX Runtime on CPU actors. ``chunk_tokens`` (default 0: a row per text, cut at the model's limit as
    ``encode`` does) and ``chunk_overlap`` split long texts as the stores do (``embedkit.chunking``)."""
    require("ray", "embedkit.distributed")
    import ray

    if role not in (None, "query", "document"):
        raise ValueError(f"role must be None, 'query' or 'document', got {role!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if text_column not in ds.columns():
        raise ValueError(f"the dataset has no column {text_column!r} (columns: {ds.columns()})")
    taken = sorted(set(CHUNK_COLUMNS) & set(ds.columns()))
    if chunk_tokens != 0 and taken:
        raise ValueError(f"chunking adds the columns {CHUNK_COLUMNS}, and the dataset already has {taken}")
    if backend == "onnx" and num_gpus:
        raise ValueError("backend='onnx' runs on CPU actors; leave num_gpus unset")
    resources = ray.cluster_resources()
    gpus = 0 if backend == "onnx" else resources.get("GPU", 0) if num_gpus is None else num_gpus
    total = resources.get("CPU", 1)
    if concurrency is None:
        concurrency = int(gpus) if gpus else max(1, int(total // 2))
    if cpus_per_actor is None:  # CPU actors leave a core to the tasks that feed them, or the job stalls
        cpus_per_actor = 1.0 if gpus else max(0.25, min(1.0, (total - 1) / concurrency))
    options = {
        "role": role,
        "prompt": prompt,
        "precision": precision,
        "normalize_embeddings": normalize_embeddings,
        "truncate_dim": truncate_dim,
        "batch_size": min(batch_size, 128),
    }
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "model": model,
            "text_column": text_column,
            "output_column": output_column,
            "id_column": id_column,
            "dtype": dtype,
            "options": options,
            "chunking": {"chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap},
            "backend": backend,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),  # Ray Data restarts a dead actor, retries its batches
        num_gpus=1 if gpus else 0,
        num_cpus=cpus_per_actor,
    )


class Embedder:
    """One actor: loads the model once, then embeds batch after batch."""

    def __init__(
        self, model: str, text_column: str, output_column: str, id_column: str, dtype, options, chunking, backend
    ):
        import torch

        from .model import SentenceTransformer

        kwargs = {"model_kwargs": {"dtype": getattr(torch, dtype)}} if dtype else {}
        self.model = SentenceTransformer(model, backend=backend, **kwargs)
        self.chunker = Chunker(self.model, **chunking) if chunking["chunk_tokens"] != 0 else None
        self.text_column, self.output_column, self.id_column = text_column, output_column, id_column
        options = dict(options)
        role = options.pop("role")
        if options["prompt"] is None and role is not None:
            options["prompt"] = self.model.query_prompt if role == "query" else self.model.document_prompt
        self.options = options

    def __call__(self, batch):
        import pyarrow as pa

        texts = batch.column(self.text_column).to_pylist()
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            where = (
                f"row with {self.id_column}={batch.column(self.id_column)[bad].as_py()!r}"
                if self.id_column in batch.column_names
                else f"row {bad} of a batch"
            )
            kind = "null" if texts[bad] is None else type(texts[bad]).__name__
            raise ValueError(f"{where}: {self.text_column!r} holds {kind}, not a string")
        options = dict(self.options)
        if self.chunker is not None:
            batch, texts, token_ids = self._chunk(batch, texts)
            if options["prompt"] == self.chunker.prompt:  # the ids were made with this prompt
                options["token_ids"] = token_ids
        vectors = np.ascontiguousarray(self.model.encode(texts, show_progress_bar=False, **options))
        values = pa.array(vectors.reshape(-1), type=pa.from_numpy_dtype(vectors.dtype))
        column = pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])
        return batch.append_column(self.output_column, column)

    def _chunk(self, batch, texts: list[str]):
        """A row per chunk (see the module's docstring), the chunks' texts and their token ids where known."""
        import pyarrow as pa

        plan = self.chunker.plan(texts)
        rows, numbers, counts, spans, pieces, heads, token_ids = [], [], [], [], [], [], []
        for i, (text, chunks, ids) in enumerate(zip(texts, plan.spans, plan.token_ids)):
            for n, span in enumerate(chunks or [None]):
                token_ids.append(ids)
                rows.append(i)
                numbers.append(n)
                counts.append(len(chunks or [None]))
                spans.append(None if span is None else list(span))
                pieces.append(piece(text, span))
                heads.append(text if n == 0 else "")
        out = batch.take(pa.array(rows, pa.int64()))
        out = out.set_column(out.column_names.index(self.text_column), self.text_column, pa.array(heads, pa.string()))
        out = out.append_column("chunk", pa.array(numbers, pa.int32()))
        out = out.append_column("chunks", pa.array(counts, pa.int32()))
        out = out.append_column("span", pa.array(spans, pa.list_(pa.int64(), 2)))
        return out, pieces, token_ids
