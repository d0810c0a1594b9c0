"""Writing an embedded Ray dataset (``embedkit.distributed.embed_dataset``) into the stores.

- ``write_pgvector(ds, url, ...)``: every block goes into PostgreSQL from its own worker, through binary
  ``COPY`` (an upsert, so a retried block writes nothing twice); the HNSW index is dropped before the load
  and built once at the end.
- ``load_parquet(index, path, ...)``: a FaissIndex (or any Index) filled from the Parquet files that
  ``ds.write_parquet`` wrote, in batches, without the model.

Parquet output needs nothing from here: ``embed_dataset(...).write_parquet(path)`` is Ray's own writer.
Chunk rows (``embed_dataset(..., chunk_tokens=...)``: columns ``chunk``, ``chunks``, ``span``) are stored as
``Index(chunk_tokens=...)`` stores them, and a document's chunks from an earlier load that the new one
does not have are removed.
"""

from __future__ import annotations

import numpy as np

from embedkit._optional import require
from integrations._shared import validation
from integrations._shared.chunk_rows import SEP, Rows
from integrations.index import Index


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

    from integrations.sql import SQLIndex

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
        from integrations.sql.engines import make_engine

        self.engine, self.table, self.dimension, self.columns = make_engine(url), table, dimension, columns

    def __call__(self, batch):
        import pyarrow as pa

        from integrations._shared.codec import dump_span
        from integrations._shared.validation import unit_vectors
        from integrations.sql import postgres

        rows, counts = _rows(batch, *self.columns)
        vectors = unit_vectors(rows.vectors, self.dimension, len(rows.ids))
        values = zip(rows.ids, rows.texts, rows.metadata_json, vectors, rows.docs, rows.spans)
        copied = ((i, t, m, v, d, dump_span(s)) for i, t, m, v, d, s in values)
        heads = [(i, n) for i, d, n in zip(rows.ids, rows.docs, counts) if d is None]
        with self.engine.begin() as conn:
            postgres.copy_upsert(conn, self.table, self.dimension, copied)
            postgres.delete_chunks_beyond(conn, self.table, heads)
        return pa.table({"written": [len(rows.ids)]})


def load_parquet(
    index: Index,
    path: str,
    id_column: str = "id",
    text_column: str = "text",
    embedding_column: str = "embedding",
    metadata_columns: list[str] | None = None,
    batch_size: int = 10_000,
) -> int:
    """Add the rows of the Parquet files under ``path`` to ``index`` with their vectors; returns the number of
    rows read. A document is written once all its chunks have been read, whatever their order; a document
    whose chunks the files do not all hold fails the load, naming it, after the complete ones are stored."""
    require("ray", "integrations.ray_writers.load_parquet")
    import pyarrow.dataset as pads

    index._check_open()
    read, waiting = 0, {}  # document id -> [its chunk count, its rows read so far]
    for batch in pads.dataset(path, format="parquet").to_batches(batch_size=batch_size):
        rows, counts = _rows(batch, id_column, text_column, embedding_column, metadata_columns or [])
        vectors = index._check_vectors(rows.vectors, len(rows.ids))
        read += len(rows.ids)
        ready = []
        for row in zip(rows.ids, rows.texts, rows.metadata_json, vectors, rows.docs, rows.spans, counts):
            doc = row[4] or row[0]
            group = waiting.setdefault(doc, [row[6], []])
            group[1].append(row[:6])
            if len(group[1]) == group[0]:
                ready.extend(waiting.pop(doc)[1])
        if ready:
            ids, texts, metadatas, vectors, docs, spans = map(list, zip(*ready))
            index._write(Rows(ids, texts, metadatas, docs, spans, [], np.stack(vectors)))
    if waiting:
        missing = ", ".join(repr(doc) for doc in list(waiting)[:5])
        raise ValueError(
            f"{path}: the chunks of {len(waiting)} documents are incomplete ({missing}); nothing of them was stored"
        )
    return read


def _rows(batch, id_column, text_column, embedding_column, metadata_columns) -> tuple[Rows, list[int]]:
    """An Arrow batch as store rows (chunk n >= 1 under ``id + SEP + n``), with each row's document's chunk
    count."""
    column = batch.column(embedding_column)
    flat = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    vectors = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(batch), -1)
    doc_ids = validation.ids([str(i) for i in batch.column(id_column).to_pylist()])
    texts = batch.column(text_column).to_pylist()
    for doc_id, text in zip(doc_ids, texts):
        if not isinstance(text, str):
            raise TypeError(
                f"row with {id_column}={doc_id!r}: {text_column!r} holds {type(text).__name__}, not a string"
            )
        validation.check_string(text, f"the text of {doc_id!r}")
    extra = {name: batch.column(name).to_pylist() for name in metadata_columns}
    metadatas = [validation.metadata({k: v[i] for k, v in extra.items()}, i) for i in range(len(doc_ids))]
    if "chunk" in batch.column_names:
        numbers, counts = batch.column("chunk").to_pylist(), batch.column("chunks").to_pylist()
        spans = [None if span is None else tuple(span) for span in batch.column("span").to_pylist()]
    else:
        numbers, counts, spans = [0] * len(doc_ids), [1] * len(doc_ids), [None] * len(doc_ids)
    ids = [d if n == 0 else f"{d}{SEP}{n}" for d, n in zip(doc_ids, numbers)]
    docs = [None if n == 0 else d for d, n in zip(doc_ids, numbers)]
    return Rows(ids, texts, metadatas, docs, spans, [], vectors), counts
