"""Writing an embedded Ray dataset (``embedkit.distributed.embed_dataset``) into the stores.

- ``write_pgvector(ds, url, ...)``: every block goes into PostgreSQL from its own worker, through binary
  ``COPY`` (an upsert, so a retried block writes nothing twice); the HNSW index is dropped before the load
  and built once at the end.
- ``load_parquet(index, path, ...)``: a FaissIndex (or any Index) filled from the Parquet files that
  ``ds.write_parquet`` wrote, in batches, without the model.

Parquet output needs nothing from here: ``embed_dataset(...).write_parquet(path)`` is Ray's own writer.
"""

from __future__ import annotations

import numpy as np

from embedkit.extras import require

from .index import Index


class StoredVectors:
    """An encoder for stores that receive precomputed vectors: it names the model and refuses to encode."""

    def __init__(self, model_name: str, dimension: int, prompts: dict | None = None):
        self.model_name, self.dimension, self.prompts = model_name, dimension, dict(prompts or {})

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode_query(self, texts, **kw):
        raise TypeError("these vectors were computed elsewhere: search with search_by_vector, or open with the model")

    encode_document = encode_query


def write_pgvector(
    ds,
    url: str,
    model_name: str,
    table: str = "documents",
    id_column: str = "id",
    text_column: str = "text",
    embedding_column: str = "embedding",
    metadata_columns: list[str] | None = None,
    concurrency: int = 2,
    maintenance_work_mem: str = "1GB",
) -> int:
    """Load ``ds`` into a pgvector table as SQLIndex keeps it; returns the number of rows written."""
    require("ray", "integrations.ray_writers")
    import ray

    from .sql import SQLIndex

    first = ds.take(1)  # streams until one row exists, not the whole job
    if not first:
        return 0
    encoder = StoredVectors(model_name, len(first[0][embedding_column]))
    dimension = encoder.dimension
    columns = (id_column, text_column, embedding_column, metadata_columns or [])
    with SQLIndex(encoder, url, table=table, chunk_tokens=0) as index, index.bulk_load(maintenance_work_mem):
        if not index.uses_pgvector:
            raise ValueError(f"{index.where}: write_pgvector needs the pgvector extension in the database")
        counts = ds.map_batches(
            _PgWriter,
            fn_constructor_kwargs={"url": url, "table": table, "dimension": dimension, "columns": columns},
            batch_size=5000,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=0,  # it waits on the database: it leaves the cores to the embedding actors and their feeders
        )
        return int(sum(counts.to_pandas()["written"]))


class _PgWriter:
    """One worker: COPY each block into the table that the driver created (its HNSW index dropped)."""

    def __init__(self, url: str, table: str, dimension: int, columns):
        from .engines import make_engine

        self.engine, self.table, self.dimension, self.columns = make_engine(url), table, dimension, columns

    def __call__(self, batch):
        import pyarrow as pa

        from . import postgres
        from .index import dumps
        from .validation import unit_vectors

        ids, texts, vectors, metadatas = _rows(batch, *self.columns)
        vectors = unit_vectors(vectors, self.dimension, len(ids))
        with self.engine.begin() as conn:
            rows = ((i, t, dumps(m), v, None, None) for i, t, m, v in zip(ids, texts, metadatas, vectors))
            postgres.copy_upsert(conn, self.table, self.dimension, rows)
        return pa.table({"written": [len(ids)]})


def load_parquet(
    index: Index,
    path: str,
    id_column: str = "id",
    text_column: str = "text",
    embedding_column: str = "embedding",
    metadata_columns: list[str] | None = None,
    batch_size: int = 10_000,
) -> int:
    """Add the rows of the Parquet files under ``path`` to ``index`` with their vectors; returns the count."""
    require("ray", "integrations.ray_writers.load_parquet")
    import pyarrow.dataset as pads

    written = 0
    for batch in pads.dataset(path, format="parquet").to_batches(batch_size=batch_size):
        ids, texts, vectors, metadatas = _rows(batch, id_column, text_column, embedding_column, metadata_columns or [])
        index.add_embeddings(vectors, texts, metadatas, ids)
        written += len(ids)
    return written


def _rows(batch, id_column, text_column, embedding_column, metadata_columns):
    """(ids, texts, vectors, metadatas) of an Arrow batch."""
    column = batch.column(embedding_column)
    flat = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    vectors = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(batch), -1)
    ids = [str(i) for i in batch.column(id_column).to_pylist()]
    texts = batch.column(text_column).to_pylist()
    extra = {name: batch.column(name).to_pylist() for name in metadata_columns}
    metadatas = [{name: values[i] for name, values in extra.items()} for i in range(len(ids))]
    return ids, texts, vectors, metadatas
