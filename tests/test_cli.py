"""The `embedkit encode`, `add` and `search` commands: in this process, and once each through the real entry
point (``python -m integrations.cli`` in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from embedkit import SentenceTransformer


def spawn(*args):
    return subprocess.run([sys.executable, "-m", "integrations.cli", *args], capture_output=True, text=True)


@pytest.fixture
def run(run_cli):
    """The command in this process, with a subprocess's result attributes."""

    def call(*args):
        code, out, err = run_cli(*args)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call


@pytest.mark.slow
def test_encode_lines_and_jsonl(tmp_path, prompt_model_dir, run):
    texts = ["first line", "second, longer line of text", ""]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    model = SentenceTransformer(prompt_model_dir, device="cpu")

    out = spawn("encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "a.npy"), "-m", prompt_model_dir)
    assert out.returncode == 0, out.stderr
    assert "Encoding" in out.stderr  # the progress bar
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), model.encode(texts), atol=1e-6)

    out = run(
        "encode",
        str(tmp_path / "in.jsonl"),
        "-o",
        str(tmp_path / "b.npy"),
        "-m",
        prompt_model_dir,
        "--role",
        "document",
        "--precision",
        "ubinary",
        "-q",
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert np.array_equal(np.load(tmp_path / "b.npy"), model.encode_document(texts, precision="ubinary"))


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "ok"}\nnot json\n', "bad.jsonl:2: invalid JSON"),
        ('{"body": "x"}\n', "bad.jsonl:1: expected an object with a string 'text' field"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, prompt_model_dir, content, message, run):
    (tmp_path / "bad.jsonl").write_text(content)
    out = run("encode", str(tmp_path / "bad.jsonl"), "-m", prompt_model_dir, "-o", str(tmp_path / "x.npy"))
    assert out.returncode != 0 and message in out.stderr
    assert not (tmp_path / "x.npy").exists()


def test_missing_model_is_a_clean_error(tmp_path, run):
    (tmp_path / "in.txt").write_text("x\n")
    out = run("encode", str(tmp_path / "in.txt"), "-m", str(tmp_path / "nope"), "-o", str(tmp_path / "x.npy"))
    assert out.returncode != 0
    assert "embedkit encode: Model" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_add_and_search_sqlite_and_faiss(tmp_path, prompt_model_dir, run):
    records = [
        {"id": "a", "text": "cats sleep on warm mats", "metadata": {"source": "pets.txt", "page": 1}},
        {"id": "b", "text": "bond yields rose sharply", "metadata": {"source": "news.txt", "page": 2}},
        {"id": "c", "text": "kittens nap in the sun", "metadata": {"source": "pets.txt", "page": 3}},
    ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    for db, run in ((f"sqlite:///{tmp_path}/d.db", spawn), (str(tmp_path / "faiss-idx"), run)):
        out = run("add", db, str(tmp_path / "docs.jsonl"), "-m", prompt_model_dir)
        assert out.returncode == 0, out.stderr
        assert "Adding" in out.stderr and "3 added, 0 updated, 0 unchanged, 0 removed" in out.stderr
        assert "0 blank skipped; 3 documents in total" in out.stderr
        out = run(
            "search",
            db,
            "cats sleep on warm mats",
            "-k",
            "2",
            "--json",
            "-m",
            prompt_model_dir,
            "--filter",
            '{"source": "pets.txt", "page": {"$gte": 1}}',
        )
        assert out.returncode == 0, out.stderr
        hits = json.loads(out.stdout)
        source = os.path.join(os.path.realpath(tmp_path), "docs.jsonl")  # a record's id is FILE#ID
        assert [h["id"] for h in hits] == [f"{source}#a", f"{source}#c"]
        q = model.encode_query("cats sleep on warm mats")
        d = model.encode_document("cats sleep on warm mats")
        assert abs(hits[0]["score"] - float(q @ d / np.linalg.norm(q) / np.linalg.norm(d))) < 1e-4
        assert hits[0]["metadata"] == {"source": "pets.txt", "page": 1, "root": os.path.realpath(tmp_path), "id": "a"}
        text = run("search", db, "finance", "-m", prompt_model_dir, "-k", "1")
        assert text.stdout.startswith("Q: finance\n  1. ")


def test_search_reports_bad_filters(tmp_path, prompt_model_dir, run):
    db = f"sqlite:///{tmp_path}/d.db"
    (tmp_path / "a.txt").write_text("one document\n")
    assert run("add", db, str(tmp_path / "a.txt"), "-m", prompt_model_dir, "-q").returncode == 0
    out = run("search", db, "x", "-m", prompt_model_dir, "--filter", "{not json")
    assert out.returncode != 0 and "--filter is not valid JSON" in out.stderr
    out = run("search", db, "x", "-m", prompt_model_dir, "--filter", '{"page": {"$near": 1}}')
    assert out.returncode != 0 and "unknown operator '$near'" in out.stderr and "Traceback" not in out.stderr


def test_encode_resume_continues_a_run(tmp_path, prompt_model_dir, run):
    texts = [f"line {i}" for i in range(30)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    out = tmp_path / "out.npy"
    model.encode_to_file(texts[:10], str(out), chunk_size=10, show_progress_bar=False)
    # Turn the finished 10-row file into an interrupted 30-row run that stopped after 10 rows.
    (tmp_path / "out.npy.progress.json").write_text(json.dumps({"rows": 10, "dim": 32, "dtype": "<f4"}))
    result = run("encode", str(tmp_path / "in.txt"), "-o", str(out), "-m", prompt_model_dir, "--resume", "-q")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(out), model.encode(texts), atol=1e-5)
    assert not (tmp_path / "out.npy.progress.json").exists()


@pytest.mark.slow
def test_add_keeps_sparse_vectors_and_search_finds_by_them(tmp_path, prompt_model_dir, splade_tiny, run):
    """``add --sparse-model`` makes the index keep SPLADE vectors; later ``add`` and ``search --mode sparse``
    or ``hybrid`` load the model the index records, and the scores are the model's dot products."""
    from embedkit import SparseEncoder

    docs = tmp_path / "docs"
    docs.mkdir()
    texts = {"a.txt": "Aspirin inhibits COX enzymes.", "b.txt": "The court ruled on the patent."}
    for name, text in texts.items():
        (docs / name).write_text(text)
    db = f"sqlite:///{tmp_path}/kb.db"
    out = run("add", db, str(docs), "-m", prompt_model_dir, "-q", "--sparse-model", splade_tiny)
    assert out.returncode == 0, out.stderr
    (docs / "c.txt").write_text("Ibuprofen also inhibits COX.")
    texts["c.txt"] = "Ibuprofen also inhibits COX."
    assert run("add", db, str(docs), "-m", prompt_model_dir, "-q").returncode == 0  # its own sparse model
    out = run("search", db, "COX inhibitor", "-m", prompt_model_dir, "--mode", "sparse", "--json", "-q", "-k", "3")
    assert out.returncode == 0, out.stderr
    splade = SparseEncoder(splade_tiny)
    scores = (
        splade.encode_query(["COX inhibitor"]).to_dense() @ splade.encode_document(list(texts.values())).to_dense().T
    )[0]
    expected = sorted(((float(s), name) for name, s in zip(texts, scores) if s > 0), reverse=True)
    hits = json.loads(out.stdout)
    assert [os.path.basename(h["id"]) for h in hits] == [name for _, name in expected]
    assert [h["score"] for h in hits] == pytest.approx([s for s, _ in expected], rel=1e-4)
    out = run("search", db, "COX inhibitor", "-m", prompt_model_dir, "--mode", "hybrid", "--json", "-q")
    assert "sparse" in json.loads(out.stdout)[0]["ranks"]


def test_help_where_a_new_user_stumbles_comes_before_any_model_loads(tmp_path, prompt_model_dir, run):
    """A SQLite file given without sqlite:///, a JSONL without the text field, a misspelt reranker: each is
    named with its fix before the model loads (``-m`` names no model here, so loading it would fail)."""
    import sqlite3

    nowhere = str(tmp_path / "no-such-model")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Tea\nGreen tea is steamed.\n")
    sqlite3.connect(tmp_path / "kb.db").execute("CREATE TABLE t (x)").connection.commit()
    for command in (["add", str(tmp_path / "kb.db"), str(notes)], ["search", str(tmp_path / "kb.db"), "tea"]):
        out = run(*command, "-m", nowhere)
        assert out.returncode == 4, out.stderr
        assert f"kb.db is a SQLite file; give it as a URL: sqlite:///{tmp_path}/kb.db" in out.stderr
    (tmp_path / "plain.txt").write_text("x")
    out = run("add", str(tmp_path / "plain.txt"), str(notes), "-m", nowhere)
    assert (
        out.returncode == 4
        and "plain.txt is a file, not a FaissIndex folder; a database is given as a URL" in out.stderr
    )
    (tmp_path / "r.jsonl").write_text('{"body": "green tea", "lang": "en"}\n')
    out = run("add", f"sqlite:///{tmp_path}/new.db", str(tmp_path / "r.jsonl"), "-m", nowhere)
    assert out.returncode == 1
    assert (
        "expected an object with a string 'text' field (its fields: body, lang); --text-field NAME (or "
        "PATTERN=NAME for some files) names the field" in out.stderr
    )
    db = f"sqlite:///{tmp_path}/ok.db"
    assert run("add", db, str(notes), "-m", prompt_model_dir, "-q").returncode == 0
    out = run("search", db, "tea", "-m", nowhere, "--rerank", str(tmp_path / "no-such-reranker"))
    assert out.returncode == 1 and "no-such-reranker" in out.stderr and "no-such-model" not in out.stderr


def test_a_filter_field_no_document_has_is_named(tmp_path, prompt_model_dir, run):
    db = f"sqlite:///{tmp_path}/d.db"
    (tmp_path / "a.jsonl").write_text(
        '{"text": "green tea", "term": "spring"}\n{"text": "black tea", "term": "fall"}\n'
    )
    assert run("add", db, str(tmp_path / "a.jsonl"), "-m", prompt_model_dir, "-q").returncode == 0
    misspelt = '{"$or": [{"teem": "spring"}, {"$not": {"term": "fall"}}]}'
    for command in (["search", db, "tea"], ["list", db], ["delete", db]):
        out = run(*command, "-m", prompt_model_dir, "--filter", misspelt)
        assert out.returncode == 0, out.stderr
        assert "warning: no document has the field 'teem'" in out.stderr and "'term'" not in out.stderr
    out = run("search", db, "tea", "-m", prompt_model_dir, "--filter", '{"term": "spring"}')
    assert "warning" not in out.stderr


def test_every_argument_is_described():
    import argparse

    from integrations.cli.main import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undescribed = [
        (name, action.dest)
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert undescribed == []
