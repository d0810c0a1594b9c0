"""`embedkit add` over files, folders and globs: ids that never collide, blank documents skipped, source
metadata, re-adding in place, and errors that name the missing index. Runs main() in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from embedkit import SentenceTransformer
from integrations import SQLIndex, open_index
from integrations.cli.readers import find_files, read_file


@pytest.fixture
def cli(prompt_model_dir, run_cli):
    """The command in this process, with the tiny model."""
    return lambda *args: run_cli(*args, "-m", prompt_model_dir)


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "b").mkdir()
    (tmp_path / "docs" / "a" / "notes.txt").write_text("cats sleep on warm mats\n\n   \nthe sun is a star\n")
    (tmp_path / "docs" / "b" / "notes.txt").write_text("bond yields rose sharply\n")
    (tmp_path / "docs" / "guide.md").write_text("# Title\n\nFirst paragraph\nstill first.\n\n```\ncode\n\nmore\n```\n")
    (tmp_path / "docs" / "table.csv").write_text('id,text,lang\nr1,"a row, with a comma",en\nr2,   ,fr\n')
    (tmp_path / "docs" / "skip.bin").write_bytes(b"\0\1")
    return tmp_path


def stored(db: str, model_dir: str) -> dict:
    with open_index(db, SentenceTransformer(model_dir, device="cpu"), create=False) as index:
        return {r.id: (r.text, r.metadata) for r in index}


def test_add_a_folder(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    db = "sqlite:///kb.db"
    code, _, err = cli("add", db, "docs/", "-q")
    assert code == 0, err
    assert "7 added, 0 updated, 0 unchanged, 0 removed, 3 blank skipped; 7 documents in total" in err
    assert stored(db, prompt_model_dir) == {
        "docs/a/notes.txt:1": ("cats sleep on warm mats", {"source": "docs/a/notes.txt", "line": 1}),
        "docs/a/notes.txt:4": ("the sun is a star", {"source": "docs/a/notes.txt", "line": 4}),
        "docs/b/notes.txt:1": ("bond yields rose sharply", {"source": "docs/b/notes.txt", "line": 1}),
        "docs/guide.md:1": ("# Title", {"source": "docs/guide.md", "line": 1}),
        "docs/guide.md:3": ("First paragraph\nstill first.", {"source": "docs/guide.md", "line": 3}),
        "docs/guide.md:6": ("```\ncode\n\nmore\n```", {"source": "docs/guide.md", "line": 6}),
        "r1": ("a row, with a comma", {"source": "docs/table.csv", "lang": "en"}),
    }


def test_two_files_with_one_name_are_both_found_and_filterable(docs, cli, monkeypatch):
    monkeypatch.chdir(docs)
    db = str(docs / "faiss-idx")
    assert cli("add", db, "docs/a/notes.txt", "docs/b/notes.txt", "-q")[0] == 0
    code, out, err = cli("search", db, "bond yields rose sharply", "-k", "5", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert {h["id"] for h in hits} == {"docs/a/notes.txt:1", "docs/a/notes.txt:4", "docs/b/notes.txt:1"}
    assert hits[0]["id"] == "docs/b/notes.txt:1"
    code, out, _ = cli("search", db, "anything", "--json", "--filter", '{"source": "docs/a/notes.txt"}')
    assert {h["id"] for h in json.loads(out)} == {"docs/a/notes.txt:1", "docs/a/notes.txt:4"}


def test_globs_reach_the_same_ids_as_the_folder(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    db = "sqlite:///kb.db"
    assert cli("add", db, "docs/*/*.txt", "-q")[0] == 0
    first = stored(db, prompt_model_dir)
    assert set(first) == {"docs/a/notes.txt:1", "docs/a/notes.txt:4", "docs/b/notes.txt:1"}
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0 and "4 added, 0 updated, 3 unchanged" in err  # the .txt documents were already there


def test_re_adding_a_changed_folder_updates_in_place(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    db = "sqlite:///kb.db"
    assert cli("add", db, "docs", "-q")[0] == 0
    (docs / "docs" / "a" / "notes.txt").write_text("cats sleep on cold mats\n")  # line 4 is gone
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0, err
    assert "0 added, 1 updated, 5 unchanged, 1 removed, 1 blank skipped; 6 documents in total" in err
    after = stored(db, prompt_model_dir)
    assert after["docs/a/notes.txt:1"][0] == "cats sleep on cold mats" and "docs/a/notes.txt:4" not in after
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    with SQLIndex(model, db) as index:  # the updated document was re-embedded
        np.testing.assert_allclose(
            index.get_vectors(["docs/a/notes.txt:1"])[0],
            model.encode_document("cats sleep on cold mats", normalize_embeddings=True),
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "target, message",
    [
        ("sqlite:///nosuch.db", "no index at 'sqlite:///nosuch.db': nosuch.db does not exist"),
        ("sqlite:/kb.db", "'sqlite:/kb.db' looks like a URL but lacks '//'"),
        ("missing-folder", "no index at 'missing-folder'"),
        ("sqlite://", "an in-memory database starts empty"),
    ],
)
def test_search_on_a_missing_index_is_an_error(tmp_path, cli, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("search", target, "query")
    assert code == (1 if "looks like a URL" in message else 3)  # bad input, or no such index
    assert message in err and out == "" and "Traceback" not in err
    assert os.listdir(tmp_path) == []  # nothing was created


def test_a_missing_index_fails_before_the_model_loads(tmp_path):
    from argparse import Namespace

    from integrations.cli.commands import cmd_search

    def load():
        raise AssertionError("the model was loaded")

    args = Namespace(db=f"sqlite:///{tmp_path}/none.db", query="q", k=1, filter=None, json=False)
    with pytest.raises(FileNotFoundError, match="none.db does not exist"):
        cmd_search(args, load)


def test_search_on_a_database_without_the_table(tmp_path, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("x\n")
    assert cli("add", "sqlite:///kb.db", "a.txt", "-q")[0] == 0
    with pytest.raises(FileNotFoundError, match="no index at 'sqlite:///kb.db': no table 'other'"):
        SQLIndex(SentenceTransformer(prompt_model_dir, device="cpu"), "sqlite:///kb.db", table="other", create=False)


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({}, ["nothing-here"], "nothing-here: no such file or folder"),
        ({}, ["*.md"], "*.md: no .txt, .md, .jsonl, .csv files match"),
        ({"a.pdf": "x"}, ["a.pdf"], "a.pdf: unsupported file type"),
        ({"t.csv": "body\nx\n"}, ["t.csv"], "t.csv: no 'text' column (columns: ['body'])"),
        ({"t.csv": "text\nx,y\n"}, ["t.csv"], "t.csv:2: more values than the 1 columns"),
        ({"r.jsonl": '{"text": "a"}\n{"text": 1}\n'}, ["r.jsonl"], "r.jsonl:2: expected an object with a string"),
        ({"r.jsonl": '{"text": "a", "id": true}\n'}, ["r.jsonl"], "r.jsonl:1: 'id' must be a non-empty string"),
        ({"r.jsonl": '{"text": "a", "id": "x"}\n{"text": "b", "id": "x"}\n'}, ["r.jsonl"], "ids appear more than once"),
    ],
)
def test_bad_inputs_fail_before_anything_is_written(tmp_path, cli, monkeypatch, files, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.txt").write_text("a fine line\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, _, err = cli("add", "sqlite:///kb.db", "ok.txt", *args, "-q")
    assert code == 1 and message in err, err
    assert not (tmp_path / "kb.db").exists()


def test_records_are_a_library_that_raises_value_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: invalid JSON"):
        read_file(str(tmp_path / "bad.jsonl"), "bad.jsonl")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.md").write_text("a\n")
    md = str(tmp_path / "sub" / "x.md")
    assert find_files([md, str(tmp_path / "sub")]) == [(md, md)]  # each file once


def test_chunked_adds_and_hybrid_search(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    words = " ".join(f"word{i}" for i in range(200))
    (tmp_path / "long.md").write_text(f"# Title\n\n{words} quokka\n")
    assert cli("add", "sqlite:///kb.db", "long.md", "--chunk-tokens", "16", "--chunk-overlap", "4", "-q")[0] == 0
    code, out, err = cli("search", "sqlite:///kb.db", "quokka", "--mode", "keyword", "--json")
    assert code == 0, err
    (hit,) = json.loads(out)
    assert hit["id"] == "long.md:3" and hit["text"].endswith("quokka") and hit["span"] is None
    code, out, _ = cli("search", "sqlite:///kb.db", "word150 quokka", "--mode", "hybrid", "--json", "-k", "1")
    (hit,) = json.loads(out)
    assert hit["id"] == "long.md:3" and 0 <= hit["span"][0] < hit["span"][1] <= len(hit["text"])


def test_help_and_version_import_neither_torch_nor_the_stores():
    code = (
        "import sys\n"
        "from integrations.cli import main\n"
        "for args in (['--help'], ['add', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "heavy = ('torch', 'transformers', 'integrations.faiss', 'faiss', 'sqlalchemy')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: embedkit" in out.stdout and "PATH [PATH ...]" in out.stdout
    from embedkit import __version__

    assert out.stdout.rstrip().endswith(f"embedkit {__version__}")


def test_store_commands_load_no_model_or_store_until_run():
    code = "import sys, integrations.cli.commands; assert not {'torch', 'faiss', 'sqlalchemy'} & set(sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_existence_check_reads_without_an_engine_and_changes_nothing(tmp_path, monkeypatch):
    """check_index on SQLite opens the file as it is: no engine (each would set WAL mode), no file created,
    the journal mode left alone; a damaged file is named as damaged."""
    import sqlite3

    import sqlalchemy as sa

    from integrations.errors import CorruptIndexError
    from integrations.targets import check_index

    file = tmp_path / "plain.db"
    with sqlite3.connect(file) as conn:
        conn.execute("CREATE TABLE Documents (id TEXT)")
    monkeypatch.setattr(sa, "create_engine", lambda *a, **k: pytest.fail("an engine was made"))
    check_index(f"sqlite:///{file}")  # SQLite names are case-insensitive
    with pytest.raises(FileNotFoundError, match="no table 'other'"):
        check_index(f"sqlite:///{file}", "other")
    with sqlite3.connect(file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(os.listdir(tmp_path)) == ["plain.db"]
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(CorruptIndexError, match="junk.db: the database is damaged"):
        check_index(f"sqlite:///{tmp_path}/junk.db")


def test_exit_codes_tell_the_failures_apart(tmp_path, cli, monkeypatch):
    """1 bad input, 2 usage (argparse), 3 no such index, 4 a damaged file or not an index (docs/cli.md)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    code, _, err = cli("search", "sqlite:///junk.db", "q")
    assert code == 4 and "junk.db: the database is damaged" in err and "Traceback" not in err
    assert cli("search", "sqlite:///none.db", "q")[0] == 3
    assert cli("search", "sqlite:///junk.db", "q", "--filter", "{bad")[0] == 1
    assert cli("search", "sqlite:///junk.db", "q", "-k", "many")[0] == 2


def test_search_with_a_rerank_stage(tmp_path, cli, monkeypatch, cross_dirs, prompt_model_dir):
    import json

    from embedkit import CrossEncoder

    monkeypatch.chdir(tmp_path)
    lines = ["cats sleep on warm mats", "bond yields rose", "kittens nap in the sun", "soup with basil", "a dog"]
    (tmp_path / "notes.txt").write_text("\n\n".join(lines) + "\n")
    assert cli("add", "sqlite:///kb.db", "notes.txt", "-q")[0] == 0
    code, out, err = cli("search", "sqlite:///kb.db", "cats", "-k", "3", "--json", "--rerank", cross_dirs[1])
    assert code == 0, err
    hits = json.loads(out)
    with SQLIndex(SentenceTransformer(prompt_model_dir, device="cpu"), "sqlite:///kb.db") as index:
        first = index.search("cats", k=50)
    ranked = CrossEncoder(cross_dirs[1], device="cpu").rank("cats", [h.text for h in first], top_k=3)
    assert [h["id"] for h in hits] == [first[r["corpus_id"]].id for r in ranked]
    assert [h["ranks"]["rerank"] for h in hits] == [1, 2, 3]
    code, _, err = cli("search", "sqlite:///kb.db", "cats", "-k", "5", "--rerank", "x", "--rerank-candidates", "2")
    assert code == 1 and "--rerank-candidates 2 is less than -k 5" in err
