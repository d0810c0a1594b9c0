"""SciFact quality of vector, keyword and hybrid search, with and without chunking, through Index.search.

Run through ``benchmarks/retrieval.py --mode vector|keyword|hybrid|all --chunk-tokens N --chunk-overlap M``.
Every backend stores the corpus with ``Index.add`` (so chunking is the index's own) and answers the 300
test queries with ``Index.search(query, k=100, mode=...)``. The encoder is wrapped in a cache keyed by the
text, kept in an .npz file, so each text (document, chunk or query) is embedded once across backends and
runs; the vectors are exactly the model's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time

import numpy as np
from metrics import ndcg_at_10, recall

from integrations import FaissIndex, SQLIndex

PUBLISHED = 0.64508  # all-MiniLM-L6-v2 on SciFact (MTEB), dense, texts truncated at 256 tokens


class CachedEncoder:
    """An embedkit model whose query and document embeddings are remembered by text."""

    def __init__(self, model, path: str | None, batch_size: int):
        self.model, self.path, self.batch_size = model, path, batch_size
        self.model_name, self.prompts = model.model_name, model.prompts
        self.tokenizer, self.max_seq_length, self.document_prompt = (
            model.tokenizer,
            model.max_seq_length,
            model.document_prompt,
        )
        self.cache: dict[str, np.ndarray] = {}
        if path and os.path.exists(path):
            saved = np.load(path, allow_pickle=False)
            self.cache = dict(zip(saved["keys"].tolist(), saved["vectors"]))
        self.encoded = 0

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def encode_query(self, texts, **kw) -> np.ndarray:
        return self._encode("q", texts, self.model.encode_query)

    def encode_document(self, texts, **kw) -> np.ndarray:
        return self._encode("d", texts, self.model.encode_document)

    def _encode(self, role: str, texts, encode) -> np.ndarray:
        keys = [role + hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = list({k: t for k, t in zip(keys, texts) if k not in self.cache}.items())
        if missing:
            vectors = encode([t for _, t in missing], batch_size=self.batch_size, show_progress_bar=len(missing) > 1000)
            self.cache.update(zip([k for k, _ in missing], vectors))
            self.encoded += len(missing)
        return np.stack([self.cache[k] for k in keys])

    def save(self) -> None:
        if self.path and self.encoded:
            np.savez(self.path, keys=np.array(list(self.cache)), vectors=np.stack(list(self.cache.values())))


def run(corpus, queries, qrels, encoder, modes, chunk_tokens, chunk_overlap, postgres_url, rerank=None) -> None:
    """``rerank`` (a CrossEncoder): each mode also runs with a rerank stage over its first 100 documents."""
    doc_ids, qids = list(corpus), list(queries)
    texts, query_texts = [corpus[d] for d in doc_ids], [queries[q] for q in qids]
    chunking = "off" if chunk_tokens == 0 else f"{chunk_tokens or 'model'}/{chunk_overlap}"
    print("| backend | mode | chunks (tokens/overlap) | nDCG@10 | R@100 | rows | search ms/query |")
    print("|---|---|---|---|---|---|---|")
    options = {"chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap}
    encoder.encode_query(query_texts)  # embedded once, so the timings below are search alone
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        backends = {
            "SQLIndex sqlite": lambda: SQLIndex(encoder, f"sqlite:///{tmp}/scifact.db", **options),
            "FaissIndex flat": lambda: FaissIndex(encoder, path=f"{tmp}/faiss", **options),
        }
        if postgres_url:
            backends["SQLIndex pgvector"] = lambda: SQLIndex(encoder, postgres_url, table="scifact", **options)
        for name, open_index in backends.items():
            index = stack.enter_context(open_index())
            start = time.perf_counter()
            for at in range(0, len(texts), 500):
                index.add(texts[at : at + 500], ids=doc_ids[at : at + 500])
            encoder.save()
            rows = _rows(index)
            print(f"<!-- {name}: stored in {time.perf_counter() - start:.0f} s -->", flush=True)
            for mode in modes + ([f"{m}+rerank" for m in modes] if rerank is not None else []):
                mode, reranked = mode.removesuffix("+rerank"), mode.endswith("+rerank")
                options = {"rerank": rerank, "rerank_candidates": 100} if reranked else {}
                index.search(query_texts[0], k=100, mode=mode)  # warm caches
                start = time.perf_counter()
                ranked = [[h.id for h in index.search(q, k=100, mode=mode, **options)] for q in query_texts]
                ms = (time.perf_counter() - start) * 1000 / len(query_texts)
                ndcg = float(np.mean([ndcg_at_10(r, qrels[q]) for r, q in zip(ranked, qids)]))
                r100 = float(np.mean([recall(r, qrels[q], 100) for r, q in zip(ranked, qids)]))
                assert all(len(r) == len(set(r)) for r in ranked), "one hit per document"
                assert mode == "keyword" or all(len(r) == 100 for r in ranked), "k exact"  # keyword: what matches
                label = mode + (" + rerank" if reranked else "")
                print(f"| {name} | {label} | {chunking} | {ndcg:.4f} | {r100:.4f} | {rows} | {ms:.1f} |", flush=True)
                if mode == "vector" and not reranked and chunk_tokens == 0 and abs(ndcg - PUBLISHED) > 0.002:
                    raise SystemExit(f"{name}: dense nDCG@10 {ndcg:.4f} is not the published {PUBLISHED}")


def _rows(index) -> int:
    """Stored rows (chunks), to show how much chunking multiplies the vectors."""
    if isinstance(index, FaissIndex):
        return index._store.conn.execute("SELECT count(*) FROM docs").fetchone()[0]
    with index.engine.connect() as conn:
        return conn.exec_driver_sql(f'SELECT count(*) FROM "{index.table_name}"').scalar_one()
