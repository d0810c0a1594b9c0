"""Encoding beyond one machine with Ray Data: ``embed_dataset`` adds an embedding column to a dataset by
``map_batches`` through a pool of actors, each of which loads the model once. Needs the ``ray`` extra.

    import ray
    from embedkit.distributed import embed_dataset

    ds = ray.data.read_parquet("s3://bucket/docs/")            # any dataset with a text column
    embed_dataset(ds, "all-MiniLM-L6-v2", role="document").write_parquet("s3://bucket/embeddings/")

Actors take one GPU each where the cluster has GPUs, and CPU cores otherwise. A killed actor is restarted
and its batches retried by Ray, so every row comes out once. A row whose text is not a string fails the
job with the row's id. Writers into the stores live in ``integrations.ray_writers``.
"""

from __future__ import annotations

import numpy as np

from .extras import require

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


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
):
    """``ds`` with ``output_column`` added: each row's embedding as a fixed-size list (float32, or the
    integers of ``precision``). ``model`` is a name or a folder that every node can read. ``role``
    (``"query"`` or ``"document"``) applies the model's prompt for it; ``prompt`` sets one directly.
    ``concurrency`` is the number of actors (default: one per GPU, or one per two cores), each reserving
    ``cpus_per_actor`` cores (default: one, less where that would leave no core for the reading tasks);
    ``dtype`` (``"float16"``, ``"bfloat16"``) loads the weights in that type."""
    require("ray", "embedkit.distributed")
    import ray

    if role not in (None, "query", "document"):
        raise ValueError(f"role must be None, 'query' or 'document', got {role!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if text_column not in ds.columns():
        raise ValueError(f"the dataset has no column {text_column!r} (columns: {ds.columns()})")
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0) if num_gpus is None else num_gpus
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
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),  # Ray Data restarts a dead actor, retries its batches
        num_gpus=1 if gpus else 0,
        num_cpus=cpus_per_actor,
    )


class Embedder:
    """One actor: loads the model once, then embeds batch after batch."""

    def __init__(self, model: str, text_column: str, output_column: str, id_column: str, dtype, options: dict):
        import torch

        from .model import SentenceTransformer

        kwargs = {"model_kwargs": {"dtype": getattr(torch, dtype)}} if dtype else {}
        self.model = SentenceTransformer(model, **kwargs)
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
        vectors = np.ascontiguousarray(self.model.encode(texts, show_progress_bar=False, **self.options))
        values = pa.array(vectors.reshape(-1), type=pa.from_numpy_dtype(vectors.dtype))
        column = pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])
        return batch.append_column(self.output_column, column)
