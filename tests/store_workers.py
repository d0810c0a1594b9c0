"""Code that test subprocesses run: a deterministic encoder without torch, writers, readers, crashers.

Kept free of torch imports so that spawned processes start in about a second.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
import zlib

import numpy as np

from integrations import FaissIndex, open_index

DIM = 32


class HashEncoder:
    """The same unit vector for the same text, in every process."""

    model_name = "hash-encoder"
    prompts: dict[str, str] = {}

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode_document(self, texts, **kw) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)

    encode_query = encode_document


SPARSE_DIMS = 30522  # a SPLADE vocabulary's size


class HashSparse:
    """Bag-of-words sparse vectors: a word's dimension and weight come from its hash (a query weighs each
    word once, a document by its count), the same in every process."""

    model_name = "hash-sparse"

    def encode_document(self, texts, **kw):
        return self._dense(texts, lambda count: count)

    def encode_query(self, texts, **kw):
        return self._dense(texts, lambda count: 1.0)

    def _dense(self, texts, scale):
        rows = np.zeros((len(texts), SPARSE_DIMS), np.float32)
        for row, text in zip(rows, texts):
            words, counts = np.unique(text.split(), return_counts=True)
            for word, count in zip(words, counts):
                h = zlib.crc32(word.encode())
                row[h % SPARSE_DIMS] += (0.25 + (h >> 16) % 1000 / 1000) * scale(count)
        return rows


def text_of(doc_id: str) -> str:
    return f"text of {doc_id}"


def fill(index, n=30, metadata=lambda i: {"i": i}) -> list[str]:
    """Adds documents d0 .. d{n-1} with ``metadata(i)``."""
    ids = [f"d{i}" for i in range(n)]
    index.add([text_of(i) for i in ids], [metadata(i) for i in range(n)], ids=ids)
    return ids


def write_v1_folder(folder, names=("a", "b", "c")):
    """A FaissIndex folder exactly as embedkit 0.1 saved it (flat, float32), its second row dead; document
    ``names[i]`` has metadata ``{"größe": i + 1}``. Returns the generation folder."""
    import faiss

    gen = folder / "gen-000000000003-0a0b0c0d"
    gen.mkdir(parents=True)
    (folder / "CURRENT").write_text(gen.name)
    vectors = HashEncoder().encode_document([text_of(n) for n in names])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fids = np.arange(len(names), dtype=np.int64)
    fids[1] = -1
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    index.add_with_ids(vectors, np.arange(len(names)))
    faiss.write_index(index, str(gen / "index.faiss"))
    np.save(gen / "store.npy", vectors)
    np.save(gen / "fids.npy", fids)
    db = sqlite3.connect(gen / "docs.sqlite")
    db.execute("CREATE TABLE docs (fid INTEGER PRIMARY KEY, id TEXT UNIQUE, text TEXT, metadata TEXT)")
    rows = [(i, n, text_of(n), json.dumps({"größe": i + 1})) for i, n in enumerate(names) if i != 1]
    db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    meta = {"model": "hash-encoder", "dimension": DIM, "prompts": {}, "kind": "flat", "precision": "float32"}
    (gen / "meta.json").write_text(json.dumps(dict(meta, next_fid=len(names), trained_on=len(names), ranges=None)))
    return gen


def segment_files(folder) -> list[str]:
    """The FaissIndex segment files in ``folder``."""
    return sorted(n for n in os.listdir(folder) if n.startswith("segment-"))


def manifest(folder) -> list[dict]:
    """The segment entries the docstore in ``folder`` records."""
    with sqlite3.connect(os.path.join(folder, "docs.sqlite")) as db:
        row = db.execute("SELECT value FROM info WHERE key = 'segments'").fetchone()
    return json.loads(row[0]) if row else []


def open_target(target: str, options: dict):
    return open_index(target, HashEncoder(), **options)


def writer(target: str, options: dict, worker: int, batches: int, size: int) -> None:
    """Adds ``batches`` batches of ``size`` documents, upserts one of them and deletes another."""
    index = open_target(target, options)
    for b in range(batches):
        ids = [f"w{worker}-{b}-{j}" for j in range(size)]
        index.add([text_of(i) for i in ids], [{"w": worker, "b": b} for _ in ids], ids=ids)
    index.add([text_of(f"w{worker}-0-0")], [{"w": worker, "b": 0, "upserted": True}], ids=[f"w{worker}-0-0"])
    index.add([text_of("gone")], ids=[f"gone-{worker}"])
    index.delete([f"gone-{worker}"])
    index.close()


def merger(target: str, options: dict, stop, errors) -> None:
    """Seals, merges and compacts over and over until ``stop`` is set, while writers run."""
    index = open_target(target, options)
    try:
        while not stop.is_set():
            index.save(force=True)
            index.compact()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))
    index.close()


def saver(target: str, options: dict, stop, errors) -> None:
    """Writes segments over and over (any rows changed, SQLIndex) until ``stop`` is set, while writers run."""
    index = open_target(target, options)
    try:
        while not stop.is_set():
            index.save(force=True)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))
    index.close()


def reader(target: str, options: dict, seconds: float, errors) -> None:
    """Searches while the writers run; every hit must carry the text stored under its id."""
    index = open_target(target, options)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for hit in index.search("text of w1-0-0", k=5) + index.search("x", k=3, filter={"w": 2}):
                if hit.text != text_of(hit.id) or hit.id.startswith("gone"):
                    errors.put(f"inconsistent hit {hit.id!r}: {hit.text!r}")
            len(index)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(exc).__name__}: {exc}")
    index.close()


def open_at_once(folders: list[str], barrier, results) -> None:
    """Opens each folder together with the other processes at the barrier; reports (folder, documents)."""
    for folder in folders:
        barrier.wait(timeout=120)
        index = open_index(folder, HashEncoder())
        results.put((folder, len(index)))
        index.close()


def crasher(target: str, options: dict, saves: bool, started) -> None:
    """Adds batches of 20 (and seals them, merging, after each when ``saves``) until it is killed; sets ``started``
    once the first batch is in."""
    index = open_target(target, options)
    b = 0
    while True:
        ids = [f"p{os.getpid()}-{b}-{j}" for j in range(20)]
        index.add([text_of(i) for i in ids], [{"batch": f"p{os.getpid()}-{b}"} for _ in ids], ids=ids)
        if saves:
            index.save(force=True)
        started.set()
        b += 1


FAISS = [
    f"faiss-{kind}-{precision}" for kind in ("flat", "hnsw", "ivf") for precision in ("float32", "int8", "ubinary")
]
EVERY = [*FAISS, "sqlite", "postgres"]  # the registry: every store configuration the tests open
MAIN = ["faiss-flat-float32", "faiss-hnsw-int8", "faiss-ivf-ubinary", "sqlite", "postgres"]  # one of each kind


class Backend:
    """One store configuration of the registry (``faiss-KIND-PRECISION``, ``sqlite``, ``postgres``), opened
    and reopened over the same storage: ``target`` and ``options`` are what ``open_index`` takes."""

    def __init__(self, name, tmp_path, request):
        if name not in EVERY:
            raise ValueError(f"{name!r} is not in the registry: {EVERY}")
        self.name, self.options = name, {}
        self.path = str(tmp_path / "faiss")
        if name.startswith("faiss"):
            _, kind, precision = name.split("-")
            self.target, self.options = self.path, {"kind": kind, "precision": precision}
        elif name == "sqlite":
            self.target = self.url = f"sqlite:///{tmp_path}/docs.db"
            self.table = "documents"
        else:
            self.target = self.url = request.getfixturevalue("pg_url")[0]
            self.table = f"t_{uuid.uuid4().hex[:12]}"
            self.options = {"table": self.table}

    def open(self, encoder=None, **kwargs):
        return open_index(self.target, encoder or HashEncoder(), **self.options, **kwargs)

    def reopen(self, index, encoder):
        if isinstance(index, FaissIndex):
            index.save()
        return self.open(encoder)


def unit(rng, n, d=32):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
