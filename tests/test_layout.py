"""The house plan: one-way, acyclic imports; the public names; small modules; one error tree; and files
written before the regrouping still open and answer as they did."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys

import pytest
from store_workers import HashEncoder

import integrations
from integrations import FaissIndex, SQLIndex, errors

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("embedkit", "integrations")
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "before-house-plan"


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            parts = file.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(name: str, file: pathlib.Path, known: dict) -> set[str]:
    """The project modules that ``name`` imports anywhere in it (functions and TYPE_CHECKING blocks too)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, file, known) for name, file in known.items()}


def test_the_import_graph_is_seen():
    edges = graph()
    assert "integrations.faiss.docstore" in edges["integrations.faiss.index"]
    assert "embedkit.chunking" in edges["integrations.index"]
    assert sum(map(len, edges.values())) > 100


def test_embedkit_never_imports_integrations():
    upward = {
        (a, b)
        for a, targets in graph().items()
        if a.startswith("embedkit")
        for b in targets
        if b.startswith("integrations")
    }
    assert upward == set()


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_library_module_over_400_lines():
    long = {name: n for name, file in modules().items() if (n := len(file.read_text().splitlines())) > 400}
    assert long == {}


@pytest.mark.slow
def test_public_names_are_listed_and_load_lazily():
    code = (
        "import sys, embedkit, integrations\n"
        "assert {'SentenceTransformer', 'util', 'cos_sim', 'LoggingHandler'} <= set(dir(embedkit))\n"
        "assert {'FaissIndex', 'SQLIndex', 'open_index', 'StoreError'} <= set(dir(integrations))\n"
        "early = {'torch', 'faiss', 'sqlalchemy', 'langchain_core', 'llama_index', 'haystack'} & set(sys.modules)\n"
        "assert not early, f'imported too early: {early}'\n"
        "import embedkit.util\n"
        "names = {'SentenceTransformer', 'SparseEncoder', 'CrossEncoder', 'util', 'models', '__version__',\n"
        "         *embedkit.util.__all__}\n"
        "assert set(embedkit.__all__) == names\n"
        "assert all(getattr(embedkit, n) is not None for n in embedkit.__all__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file()


def test_help_shows_every_setting():
    for cls, settings in (
        (FaissIndex, ["kind", "precision", "rescore", "hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe"]),
        (SQLIndex, ["url", "table", "create", "chunk_tokens", "engine_kwargs"]),
    ):
        assert all(f"``{s}``" in cls.__doc__ for s in settings), cls


def test_indexes_say_what_they_are(tmp_path):
    """info() and repr carry the same facts: where and how, documents, model, chunking, bytes on disk."""
    encoder = HashEncoder()
    model = {"model": "hash-encoder", "dimension": encoder.get_embedding_dimension(), "prompts": {}}
    index = FaissIndex(encoder, path=str(tmp_path / "idx"), kind="hnsw", precision="int8", chunk_tokens=0)
    index.add(["a", "b"], ids=["a", "b"])
    folder = sum(f.stat().st_size for f in (tmp_path / "idx").rglob("*") if f.is_file())
    facts = {"path": str(tmp_path / "idx"), "kind": "hnsw", "precision": "int8", "documents": 2, **model}
    facts |= {"chunk_tokens": 0, "chunk_overlap": 0, "bytes_on_disk": folder}
    assert index.info() == facts and folder > 0
    assert repr(index) == "FaissIndex(" + ", ".join(f"{k}={v!r}" for k, v in facts.items()) + ")"
    index.close()
    assert repr(index) == f"FaissIndex(path={str(tmp_path / 'idx')!r}, kind='hnsw', precision='int8', closed=True)"
    with pytest.raises(errors.IndexClosedError):
        index.info()
    assert FaissIndex(encoder).info()["bytes_on_disk"] is None  # in memory
    sql = SQLIndex(encoder, f"sqlite:///{tmp_path}/d.db", table="notes", chunk_tokens=0)
    sql.add(["a"])
    size = sum(os.path.getsize(p) for p in (tmp_path / "d.db", tmp_path / "d.db-wal") if p.exists())
    facts = {"url": f"sqlite:///{tmp_path}/d.db", "table": "notes", "search": "exact", "documents": 1, **model}
    facts |= {"chunk_tokens": 0, "chunk_overlap": 0, "bytes_on_disk": size}
    assert sql.info() == facts and repr(sql) == "SQLIndex(" + ", ".join(f"{k}={v!r}" for k, v in facts.items()) + ")"
    sql.close()


def test_a_postgres_index_says_its_table_size(pg_url):
    url, server = pg_url
    with SQLIndex(HashEncoder(), url, table="facts_size") as index:
        index.add(["a", "b"])
        facts = index.info()
    size = int(server.psql("SELECT pg_total_relation_size('facts_size');").split()[2])
    assert facts["search"] == "pgvector" and facts["documents"] == 2 and facts["bytes_on_disk"] == size > 0


def test_one_error_tree_keeps_the_old_bases(tmp_path):
    for name in ("FilterError", "CorruptIndexError", "NotAnIndexError", "DimensionMismatchError", "IndexClosedError"):
        cls = getattr(errors, name)
        assert issubclass(cls, errors.StoreError) and issubclass(cls, ValueError) and getattr(integrations, name) is cls
    assert issubclass(errors.ReadOnlyIndexError, PermissionError) and issubclass(errors.SearchError, RuntimeError)
    assert issubclass(errors.IndexNotFoundError, FileNotFoundError) and integrations.IndexNotFoundError
    with pytest.raises(errors.IndexNotFoundError, match="no table 'documents'"):
        sqlite3.connect(tmp_path / "empty.db").close()
        SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/empty.db", create=False)
    index = SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/d.db")
    with pytest.raises(errors.DimensionMismatchError, match="holds 32-dimensional vectors"):
        SQLIndex(
            type("Wide", (HashEncoder,), {"get_embedding_dimension": lambda self: 64})(), f"sqlite:///{tmp_path}/d.db"
        )
    index.close()
    with pytest.raises(errors.IndexClosedError, match="this SQLIndex is closed"):
        index.search("x")


@pytest.mark.parametrize("store", ["faiss", "sql"])
def test_files_written_before_the_regrouping_answer_as_they_did(tmp_path, store):
    """Written by the code at 7bf7347: a FaissIndex folder (hnsw, int8, a snapshot without a checksum, a row
    after it, a delete) and a SQLIndex SQLite file, with the answers that code gave."""
    shutil.copytree(FIXTURES, tmp_path / "old")
    recorded = json.loads((FIXTURES / "answers.json").read_text())
    if store == "faiss":
        index = FaissIndex(HashEncoder(), path=str(tmp_path / "old" / "faiss"), kind="hnsw", precision="int8")
    else:
        index = SQLIndex(HashEncoder(), f"sqlite:///{tmp_path}/old/sql.db")
    answers = [[[h.id, round(h.score, 5)] for h in index.search(q, k=5, filter=f)] for q, f in recorded["queries"]]
    assert answers == recorded["answers"][store] and len(index) == recorded["answers"][f"{store}_len"]
