"""`embedkit add` over files, folders and globs: ids that never collide, blank documents skipped, source
metadata, re-adding in place, and errors that name the missing index. Runs main() in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import stored

from embedkit import SentenceTransformer
from embedkit.chunking import Chunker
from integrations import SQLIndex, open_index
from integrations.cli.readers import find_files, read_file


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


@pytest.mark.slow
def test_add_a_folder(docs, cli, prompt_model_dir, monkeypatch):
    """A file is one document by default; a file of an unsupported type is counted, not read."""
    monkeypatch.chdir(docs)
    db = "sqlite:///kb.db"
    code, _, err = cli("add", db, "docs/", "-q")
    assert code == 0, err
    assert "4 added, 0 updated, 0 unchanged, 0 removed, 1 blank skipped; 4 documents in total" in err
    assert "skipped: 1 unsupported type" in err
    root = os.path.realpath(docs / "docs")
    meta = lambda source, **more: {"source": f"{root}/{source}", "root": root, **more}  # noqa: E731
    assert stored(db, prompt_model_dir) == {
        f"{root}/a/notes.txt": ("cats sleep on warm mats\n\n   \nthe sun is a star", meta("a/notes.txt")),
        f"{root}/b/notes.txt": ("bond yields rose sharply", meta("b/notes.txt")),
        f"{root}/guide.md": ("# Title\n\nFirst paragraph\nstill first.\n\n```\ncode\n\nmore\n```", meta("guide.md")),
        f"{root}/table.csv#r1": ("a row, with a comma", meta("table.csv", lang="en", id="r1")),
    }


@pytest.mark.slow
def test_units_line_and_paragraph(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    assert cli("add", "sqlite:///lines.db", "docs/a", "--unit", "line", "-q")[0] == 0
    root = os.path.realpath(docs / "docs" / "a")
    assert stored("sqlite:///lines.db", prompt_model_dir) == {
        f"{root}/notes.txt:1": ("cats sleep on warm mats", {"source": f"{root}/notes.txt", "root": root, "line": 1}),
        f"{root}/notes.txt:4": ("the sun is a star", {"source": f"{root}/notes.txt", "root": root, "line": 4}),
    }
    (docs / "docs" / "guide.md").write_text("# Tea\n\nGreen tea.\n\n## Brewing\nSteep it.\n\nNot long.\n")
    assert cli("add", "sqlite:///paras.db", "docs/guide.md", "--unit", "paragraph", "-q")[0] == 0
    first = stored("sqlite:///paras.db", prompt_model_dir)
    assert sorted((t, m["headings"], m["line"]) for t, m in first.values()) == [
        ("Green tea.", ["Tea"], 3),
        ("Not long.", ["Tea", "Brewing"], 8),
        ("Steep it.", ["Tea", "Brewing"], 5),
    ]  # headings are context, not documents
    (docs / "docs" / "guide.md").write_text(
        "# Tea\n\nA new first paragraph.\n\nGreen tea.\n\n## Brewing\nSteep it.\n\nNot long.\n"
    )
    code, _, err = cli("add", "sqlite:///paras.db", "docs/guide.md", "--unit", "paragraph", "-q")
    assert code == 0 and "1 added, 3 updated (3 metadata only), 0 unchanged" in err, err  # lines moved, not re-embedded
    assert set(first) < set(stored("sqlite:///paras.db", prompt_model_dir))


@pytest.mark.slow
def test_two_files_with_one_name_are_both_found_and_filterable(docs, cli, monkeypatch):
    monkeypatch.chdir(docs)
    db = str(docs / "faiss-idx")
    assert cli("add", db, "docs/a/notes.txt", "docs/b/notes.txt", "--unit", "line", "-q")[0] == 0
    code, out, err = cli("search", db, "bond yields rose sharply", "-k", "5", "--json")
    assert code == 0, err
    hits = json.loads(out)
    a, b = os.path.realpath(docs / "docs" / "a"), os.path.realpath(docs / "docs" / "b")
    assert {h["id"] for h in hits} == {f"{a}/notes.txt:1", f"{a}/notes.txt:4", f"{b}/notes.txt:1"}
    assert hits[0]["id"] == f"{b}/notes.txt:1"
    source = json.dumps({"source": f"{a}/notes.txt"})
    code, out, _ = cli("search", db, "anything", "--json", "--filter", source)
    assert {h["id"] for h in json.loads(out)} == {f"{a}/notes.txt:1", f"{a}/notes.txt:4"}


@pytest.mark.slow
def test_globs_reach_the_same_ids_as_the_folder(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    db = "sqlite:///kb.db"
    assert cli("add", db, "docs/*/*.txt", "-q")[0] == 0
    first = stored(db, prompt_model_dir)
    root = os.path.realpath(docs / "docs")
    assert set(first) == {f"{root}/a/notes.txt", f"{root}/b/notes.txt"}
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0 and "2 added, 0 updated, 2 unchanged" in err  # the .txt documents were already there


@pytest.mark.slow
def test_every_spelling_of_a_folder_gives_one_set_of_ids(docs, cli, prompt_model_dir, monkeypatch, at):
    db = at(docs)
    monkeypatch.chdir(docs / "docs" / "a")
    assert cli("add", db, "../../docs", "-q")[0] == 0
    monkeypatch.chdir(docs)
    assert cli("add", db, "docs", "-q")[2].count("4 unchanged") == 1
    code, _, err = cli("add", db, str(docs / "docs") + "/", "-q")
    assert code == 0 and "0 added, 0 updated, 4 unchanged, 0 removed" in err
    assert len(stored(db, prompt_model_dir)) == 4


@pytest.mark.slow
def test_re_adding_a_folder_syncs_it(docs, cli, prompt_model_dir, monkeypatch, at):
    monkeypatch.chdir(docs)
    db, root = at(docs), os.path.realpath(docs / "docs")
    assert cli("add", db, "docs", "-q")[0] == 0
    (docs / "docs" / "a" / "notes.txt").write_text("cats sleep on cold mats\n")
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0 and "0 added, 1 updated, 3 unchanged, 0 removed" in err, err
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    with open_index(db, model, create=False) as index:  # the updated document was re-embedded
        np.testing.assert_allclose(
            index.get_vectors([f"{root}/a/notes.txt"])[0],
            model.encode_document("cats sleep on cold mats", normalize_embeddings=True),
            atol=1e-5,
        )
    (docs / "docs" / "b" / "notes.txt").unlink()
    code, _, err = cli("add", db, "docs", "--no-prune", "-q")
    assert code == 0 and "0 removed" in err and f"{root}/b/notes.txt" in stored(db, prompt_model_dir)
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0 and "1 removed (1 files gone)" in err, err
    after = stored(db, prompt_model_dir)
    assert f"{root}/b/notes.txt" not in after and len(after) == 3
    code, out, _ = cli("search", db, "bond yields", "--json", "--filter", json.dumps({"source": f"{root}/b/notes.txt"}))
    assert json.loads(out) == []


@pytest.mark.slow
def test_an_index_of_the_older_cli_is_migrated_not_doubled(docs, cli, prompt_model_dir, monkeypatch, at):
    """An older CLI stored ``source`` as typed and ids PATH:LINE; adding the folder again replaces them,
    and leaves alone what an older add stored from other folders."""
    monkeypatch.chdir(docs)
    db = at(docs)
    with open_index(db, SentenceTransformer(prompt_model_dir, device="cpu")) as index:
        index.add(
            ["cats sleep on warm mats", "bond yields rose sharply", "another folder's note"],
            [
                {"source": "../x/docs/a/notes.txt", "line": 1},
                {"source": "docs/b/notes.txt", "line": 1},
                {"source": "other/a/notes.txt", "line": 1},
            ],
            ids=["../x/docs/a/notes.txt:1", "docs/b/notes.txt:1", "other/a/notes.txt:1"],
        )
    code, _, err = cli("add", db, "docs", "-q")
    assert code == 0 and "4 added" in err and "stored under older ids replaced" in err, err
    root = os.path.realpath(docs / "docs")
    kept = {f"{root}/a/notes.txt", f"{root}/b/notes.txt", f"{root}/guide.md", f"{root}/table.csv#r1"}
    kept.add("other/a/notes.txt:1")
    assert set(stored(db, prompt_model_dir)) == kept


@pytest.mark.slow
def test_undecodable_files_are_skipped_and_named(tmp_path, cli, prompt_model_dir, monkeypatch, at):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "good.txt").write_text("a good file\n")
    (tmp_path / "kb" / "bom.md").write_bytes("\ufeffwith a byte order mark\n".encode())
    (tmp_path / "kb" / "latin.txt").write_bytes("café au lait\n".encode("latin-1"))
    (tmp_path / "kb" / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    code, _, err = cli("add", at(tmp_path), "kb", "-q")
    assert code == 6, err  # a partial sync
    root = os.path.realpath(tmp_path / "kb")
    assert "2 added" in err and "skipped: 2 undecodable" in err
    assert f"{root}/latin.txt: not utf-8 text" in err and f"{root}/image.md: holds NUL bytes" in err
    docs = stored(at(tmp_path), prompt_model_dir)
    assert docs[f"{root}/bom.md"][0] == "with a byte order mark"  # no BOM kept
    code, _, err = cli("add", at(tmp_path, "latin"), "kb/latin.txt", "--encoding", "latin-1", "-q")
    assert code == 0 and stored(at(tmp_path, "latin"), prompt_model_dir)[f"{root}/latin.txt"][0] == "café au lait"
    code, _, err = cli("add", at(tmp_path, "strict"), "kb", "--strict", "-q")
    assert code == 1 and "holds NUL bytes" in err and not list(tmp_path.glob("strict*"))


@pytest.mark.slow
def test_jsonl_top_level_fields_are_metadata(tmp_path, cli, prompt_model_dir, monkeypatch, at):
    monkeypatch.chdir(tmp_path)
    rows = [
        {"key": "t1", "body": "ticket about a login bug", "status": "open", "metadata": {"team": "web"}},
        {"key": "t2", "body": "ticket about billing", "status": "closed"},
    ]
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli("add", at(tmp_path), "tickets.jsonl", "--id-field", "key", "--text-field", "body", "-q")
    assert code == 0, err
    docs = stored(at(tmp_path), prompt_model_dir)
    t1 = f"{os.path.realpath(tmp_path)}/tickets.jsonl#t1"  # a record's id is FILE#ID, its own id kept
    assert docs[t1][1] == {
        "source": t1.split("#")[0],
        "root": os.path.realpath(tmp_path),
        "status": "open",
        "team": "web",
        "key": "t1",
    }
    code, out, _ = cli("search", at(tmp_path), "ticket", "--json", "--filter", '{"status": "open"}')
    assert [h["id"] for h in json.loads(out)] == [t1]


def test_record_files_have_their_own_fields_and_may_share_ids(tmp_path, cli, prompt_model_dir, monkeypatch, at):
    """Per-file --text-field and --id-field (PATTERN=NAME, the last match winning); two files with the same
    ids keep both; an index of the previous CLI (bare record ids) is migrated, not doubled; a pattern that
    matches no file, or a malformed one, is an error before anything is written."""
    monkeypatch.chdir(tmp_path)
    kb = tmp_path / "kb"
    (kb / "faq").mkdir(parents=True)
    (kb / "tickets.jsonl").write_text('{"id": "1", "text": "login fails on mobile"}\n{"id": "2", "text": "refund"}\n')
    (kb / "faq" / "answers.csv").write_text("qid,answer,lang\n1,Reset your password from the login page,en\n")
    (kb / "faq" / "old.jsonl").write_text('{"key": "1", "body": "an old answer"}\n')
    root = os.path.realpath(kb)
    db = at(tmp_path)
    with open_index(db, SentenceTransformer(prompt_model_dir, device="cpu")) as index:  # the previous CLI's ids
        index.add(["refund"], [{"source": f"{root}/tickets.jsonl", "root": root}], ids=["2"])
    fields = ["--text-field", "faq/*.csv=answer", "--text-field", "old.jsonl=body", "--id-field", "*.csv=qid"]
    code, _, err = cli("add", db, "kb", *fields, "--id-field", "old.jsonl=key", "-q")
    assert code == 0, err
    assert "4 added, 0 updated, 0 unchanged, 0 removed, 1 stored under older ids replaced" in err, err
    docs = stored(db, prompt_model_dir)
    assert {i: t for i, (t, _) in docs.items()} == {
        f"{root}/tickets.jsonl#1": "login fails on mobile",
        f"{root}/tickets.jsonl#2": "refund",
        f"{root}/faq/answers.csv#1": "Reset your password from the login page",
        f"{root}/faq/old.jsonl#1": "an old answer",
    }
    assert docs[f"{root}/faq/answers.csv#1"][1] == {
        "source": f"{root}/faq/answers.csv",
        "root": root,
        "lang": "en",
        "qid": "1",
    }
    code, _, err = cli("add", db, "kb", *fields, "--id-field", "old.jsonl=key", "-q")
    assert code == 0 and "0 added, 0 updated, 4 unchanged, 0 removed" in err, err
    for bad, message in [
        (["--text-field", "*.tsv=body"], "--text-field '*.tsv=body': the pattern matches no .jsonl or .csv file"),
        (["--id-field", "=key"], "--id-field '=key': expected NAME or PATTERN=NAME"),
        (["--text-field", "faq/*="], "--text-field 'faq/*=': expected NAME or PATTERN=NAME"),
    ]:
        code, _, err = cli("add", db, "kb", *fields, "--id-field", "old.jsonl=key", *bad, "-q")
        assert code == 1 and message in err, err
    typo = ["--text-field", "old.jsonl=body", "--text-field", "faqs/*.csv=answer", "--id-field", "old.jsonl=key"]
    code, _, err = cli("add", db, "kb", *typo, "-q")  # named before answers.csv fails for want of it
    assert code == 1 and "--text-field 'faqs/*.csv=answer': the pattern matches no .jsonl or .csv file" in err, err
    assert stored(db, prompt_model_dir) == docs


def test_argument_errors_and_a_missing_folder_fail_before_any_model_loads(tmp_path):
    code = (
        "import sys\n"
        "from integrations.cli import main\n"
        "for args in ({k!r}, {missing!r}, {folder!r}):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        print(exc.code)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    ).format(
        k=["search", "sqlite:///x.db", "q", "-k", "0"],
        missing=["add", "sqlite:///no/such/dir/x.db", str(tmp_path)],
        folder=["add", "no/such/faiss-dir/kb", str(tmp_path)],  # a FAISS folder under a missing one
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "1", "1"]
    assert "-k: must be at least 1, got 0" in out.stderr
    assert "the folder" in out.stderr and "no/such/dir does not exist" in out.stderr
    assert "no/such/faiss-dir does not exist" in out.stderr and not (tmp_path / "no").exists()
    assert "Traceback" not in out.stderr


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
        ({}, ["*.md"], "*.md: no .txt, .md, .jsonl, .csv, .html, .htm, .rst, .pdf, .docx files match"),
        ({"a.xlsx": "x"}, ["a.xlsx"], "a.xlsx: unsupported file type"),
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
    listing = find_files([md, str(tmp_path / "sub")])
    source = os.path.join(os.path.realpath(tmp_path / "sub"), "x.md")
    assert [(f.path, f.source) for f in listing.found] == [(md, source)]  # each file once
    assert not listing.skipped and not listing.trouble


@pytest.mark.slow
def test_chunked_adds_and_hybrid_search(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    words = " ".join(f"word{i}" for i in range(200))
    (tmp_path / "long.md").write_text(f"# Title\n\n{words} quokka\n")
    add = ("add", "sqlite:///kb.db", "long.md", "--chunk-tokens", "16", "--chunk-overlap", "4", "--unit", "paragraph")
    assert cli(*add, "-q")[0] == 0
    code, out, err = cli("search", "sqlite:///kb.db", "quokka", "--mode", "keyword", "--json", "--full")
    assert code == 0, err
    (hit,) = json.loads(out)
    assert hit["id"].endswith("long.md#" + hit["id"].rsplit("#", 1)[1]) and hit["text"] == f"{words} quokka"
    start, end = hit["span"]  # the chunk that holds the word, of a paragraph longer than a chunk
    assert hit["passage"] == hit["text"][start:end] and hit["passage"].endswith("quokka") and start > 0
    assert hit["metadata"]["headings"] == hit["headings"] == ["Title"]
    code, out, _ = cli("search", "sqlite:///kb.db", "word150 quokka", "--mode", "hybrid", "--json", "-k", "1")
    (again,) = json.loads(out)
    assert again["id"] == hit["id"] and "text" not in again and 0 <= again["span"][0] < again["span"][1] <= end


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


@pytest.mark.slow
def test_search_with_a_rerank_stage(tmp_path, cli, monkeypatch, cross_dirs, prompt_model_dir):
    import json

    from embedkit import CrossEncoder

    monkeypatch.chdir(tmp_path)
    lines = ["cats sleep on warm mats", "bond yields rose", "kittens nap in the sun", "soup with basil", "a dog"]
    (tmp_path / "notes.txt").write_text("\n\n".join(lines) + "\n")
    assert cli("add", "sqlite:///kb.db", "notes.txt", "--unit", "line", "-q")[0] == 0
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


@pytest.mark.slow
def test_info_list_get_delete_and_prune(docs, cli, prompt_model_dir, monkeypatch):
    monkeypatch.chdir(docs)
    root = os.path.realpath(docs / "docs")
    for db in ("sqlite:///kb.db", str(docs / "faiss-kb")):
        assert cli("add", db, "docs", "-q")[0] == 0
        code, out, err = cli("info", db, "--json")
        assert code == 0, err
        facts = json.loads(out)
        assert facts["documents"] == 4 and facts["dimension"] == 32 and facts["bytes_on_disk"] > 0
        assert facts["store"] == ("SQLIndex" if "://" in db else "FaissIndex") and facts["sources"] == 4
        names = ("a/notes.txt", "b/notes.txt", "guide.md", "table.csv")
        assert facts["documents_per_source"] == {f"{root}/{name}": 1 for name in names}
        code, out, _ = cli("info", db)
        assert "documents: 4" in out and f"{root}/guide.md" in out
        code, out, _ = cli("list", db, "--limit", "2", "--offset", "1")
        assert out.split() == [f"{root}/b/notes.txt", f"{root}/guide.md"]  # id order, the second page of 1
        row = f"{root}/table.csv#r1"
        code, out, _ = cli("list", db, "--filter", '{"lang": "en"}')
        assert out.split() == [row]
        code, out, _ = cli("get", db, row, f"{root}/guide.md")
        assert [json.loads(line)["id"] for line in out.splitlines()] == [row, f"{root}/guide.md"]
        code, _, err = cli("get", db, "nope")
        assert code == 1 and "no documents with ids ['nope']" in err
        code, _, err = cli("delete", db, "--filter", json.dumps({"source": f"{root}/table.csv"}))
        assert code == 0 and "1 deleted; 3 documents in total" in err
        code, _, err = cli("delete", db)
        assert code == 1 and "delete needs ids, --filter or both" in err
    (docs / "docs" / "guide.md").unlink()
    for db in ("sqlite:///kb.db", str(docs / "faiss-kb")):
        code, _, err = cli("prune", db)
        assert code == 0 and "1 documents of vanished files deleted; 2 documents in total" in err, err
    code, _, err = cli("info", "sqlite:///none.db")
    assert code == 3 and "none.db does not exist" in err


def _many_notes(folder):
    for i in range(600):
        (folder / f"note{i:03d}.txt").write_text(f"note number {i} about tea and rivers " * 5)
    return ["--batch-size", "4"], 600


def _one_long_file(folder):
    from integrations.cli.batches import PART_CHUNKS

    (folder / "long.txt").write_text(" ".join(f"tea{i % 997} rivers{i % 991}" for i in range(60_000)))
    return ["--chunk-tokens", "16", "--chunk-overlap", "0", "--batch-size", str(PART_CHUNKS)], None


@pytest.mark.slow
def test_inspection_commands_load_no_model(docs, cli, prompt_model_dir, monkeypatch):
    """info, list, get, delete and prune open the index with the model it records standing in: torch is
    never imported, and the answers are those of an open with the model."""
    monkeypatch.chdir(docs)
    row = f"{os.path.realpath(docs / 'docs')}/table.csv#r1"
    commands = [["list", "DB"], ["get", "DB", row], ["delete", "DB", row], ["prune", "DB"], ["info", "DB", "--json"]]
    for db in ("sqlite:///kb.db", str(docs / "faiss-kb")):
        assert cli("add", db, "docs", "-q")[0] == 0
        before = stored(db, prompt_model_dir)
        code = (
            "import json, sys\n"
            "from integrations.cli import main\n"
            f"for args in {[[db if a == 'DB' else a for a in c] for c in commands]!r}:\n"
            "    main(args)\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'a model was loaded'\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=docs, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:4] == sorted(before) and json.loads(lines[4])["text"] == before[row][0]
        assert "1 deleted; 3 documents in total" in out.stderr
        facts = json.loads(lines[5])
        assert facts["model"] == prompt_model_dir and facts["documents"] == 3 and "chunk_tokens" not in facts
        assert stored(db, prompt_model_dir) == {k: v for k, v in before.items() if k != row}


@pytest.mark.slow
@pytest.mark.parametrize(("target", "make"), [("sqlite:///kb.db", _many_notes), ("faiss-kb", _one_long_file)])
def test_ctrl_c_during_a_large_add_keeps_what_was_written_and_a_rerun_completes_it(
    tmp_path, prompt_model_dir, target, make, monkeypatch
):
    """Many small files into SQLite, and one file long enough to be written in parts into FAISS: SIGINT
    once some batches are written (the progress bar says so) keeps them, and the rerun adds the rest."""
    import re
    import signal
    import threading
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "kb").mkdir()
    options, total = make(tmp_path / "kb")
    command = [sys.executable, "-m", "integrations.cli", "add", target, "kb", "-m", prompt_model_dir, *options]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE)
    said = []
    reader = threading.Thread(target=lambda: said.extend(iter(lambda: process.stderr.read1(4096), b"")))
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        written = [int(n) for n in re.findall(rb"added=(\d+)", b"".join(said))]
        if written and written[-1] >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join()
    err = b"".join(said).decode()
    assert process.returncode == 130, err
    kept_said = int(err.split("interrupted; ")[1].split(" documents")[0])
    assert "Run the same command again" in err and "Traceback" not in err and "Loading weights" not in err
    kept = len(stored(target, prompt_model_dir))
    total = total or -(-int(re.findall(r"/(\d+) \[", err)[-1]) // int(options[-1]))  # parts: chunks / PART_CHUNKS
    assert 3 <= kept_said == kept < total
    again = subprocess.run(command + ["-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{total - kept} added, 0 updated, {kept} unchanged" in again.stderr, again.stderr
    assert f"{total} documents in total" in again.stderr
    if make is _one_long_file:
        records = sorted(stored(target, prompt_model_dir).items(), key=lambda r: r[1][1]["part"])
        assert "".join(text for _, (text, _) in records) == (tmp_path / "kb" / "long.txt").read_text()


@pytest.mark.slow
def test_chunks_of_a_whole_markdown_file_carry_their_headings(tmp_path, cli, monkeypatch, at):
    monkeypatch.chdir(tmp_path)
    first, second = " ".join(f"alpha{i}" for i in range(120)), " ".join(f"beta{i}" for i in range(120))
    (tmp_path / "guide.md").write_text(
        f"# Tea\n\n{first}\n\n## Brewing\n\n{second} quokka steeping\n\n```\n# not a heading\n```\n"
    )
    add = ("add", at(tmp_path), "guide.md", "--chunk-tokens", "32", "--chunk-overlap", "4", "-q")
    assert cli(*add)[0] == 0
    for query, want in (("alpha7", ["Tea"]), ("quokka steeping", ["Tea", "Brewing"]), ("heading", ["Tea", "Brewing"])):
        code, out, err = cli("search", at(tmp_path), query, "--mode", "keyword", "--json", "-k", "1", "--full")
        assert code == 0, err
        (hit,) = json.loads(out)  # the chunk that holds the word, under the headings in force there
        assert hit["id"].endswith("/guide.md") and hit["headings"] == want, query  # the fenced "#" is no heading
        assert query.split()[0] in hit["passage"] and len(hit["passage"]) < len(hit["text"]) // 3
        code, out, _ = cli("search", at(tmp_path), query, "--mode", "keyword", "-k", "1")
        assert f"under: {' > '.join(want)}" in out and query.split()[0] in out.splitlines()[1]
    text = hit["text"]
    from integrations._shared.hit_view import headings_at

    assert headings_at(text, text.index("quokka")) == ["Tea", "Brewing"]
    assert headings_at(text, text.index("alpha5")) == ["Tea"] and headings_at(text, 0) == []
    assert headings_at(text, len(text)) == ["Tea", "Brewing"]


@pytest.mark.slow
def test_a_long_document_is_written_in_parts_with_progress_in_chunks(tmp_path, cli, prompt_model_dir, monkeypatch):
    """A file longer than PART_CHUNKS chunks becomes parts, each a document; the bar counts chunks."""
    from integrations.cli import batches

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batches, "PART_CHUNKS", 4)
    words = " ".join(f"w{i}" for i in range(400))
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "long.md").write_text(f"# Top\n\n{words}\n\n## Deep\n\n{words} quokka\n")
    (tmp_path / "kb" / "short.txt").write_text("tea and rivers")
    add = ("add", "sqlite:///kb.db", "kb", "--chunk-tokens", "64", "--chunk-overlap", "0")
    code, _, err = cli(*add, "--batch-size", "5")
    assert code == 0, err
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    with open_index("sqlite:///kb.db", model, create=False) as index:
        records = {r.id: r for r in index}
    text = (tmp_path / "kb" / "long.md").read_text().strip("\n")
    spans = Chunker(model, 64, 0).plan([text]).spans[0]
    parts = sorted((r for r in records.values() if "part" in r.metadata), key=lambda r: r.metadata["part"])
    n = -(-len(spans) // 4)
    source = os.path.join(os.path.realpath(tmp_path / "kb"), "long.md")
    assert len(spans) > 8 and [r.id for r in parts] == [f"{source}#part-{k}" for k in range(1, n + 1)]
    assert "".join(r.text for r in parts) == text[spans[0][0] :]  # the parts tile the file, none lost
    assert all(r.metadata["parts"] == n and r.metadata["source"] == source for r in parts)
    assert parts[0].text.startswith("# Top") and "headings" not in parts[0].metadata
    deep = next(r for r in parts if "quokka" in r.text)
    assert deep.metadata["headings"] == (["Top", "Deep"] if "## Deep" not in deep.text else ["Top"])
    total = len(spans) + 1  # the short file is one chunk
    assert f"{total}/{total}" in err and "chunk" in err
    code, _, err = cli(*add, "-q")
    assert code == 0 and f"0 added, 0 updated, {n + 1} unchanged" in err, err


def test_the_recorded_model_names_itself_and_refuses_to_embed(tmp_path, prompt_model_dir):
    from integrations.targets import recorded_model

    model = SentenceTransformer(prompt_model_dir, device="cpu")
    for target in (f"sqlite:///{tmp_path}/kb.db", str(tmp_path / "faiss-kb")):
        with open_index(target, model) as index:
            index.add(["tea"], ids=["t"])
        stand_in = recorded_model(target)
        assert (stand_in.model_name, stand_in.prompts) == (prompt_model_dir, model.prompts)
        assert stand_in.get_embedding_dimension() == model.get_embedding_dimension()
        with open_index(target, stand_in, create=False) as index:
            assert [r.id for r in index] == ["t"]
            with pytest.raises(RuntimeError, match="opened without its model .*: open it with the model to embed"):
                index.add(["more"])
            assert len(index) == 1
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "CURRENT").write_text("{}")  # an embedkit 0.1 folder records no model in a docstore
    assert recorded_model(str(tmp_path / "old")) is None


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # nothing swallowed is printed
@pytest.mark.parametrize("finalizer", ["__del__", "weakref callback"])
def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_add_at_the_next_batch(finalizer, capfd):
    """Python ignores what a finalizer raises (SQLAlchemy's pool returns connections from weakref callbacks,
    where a Ctrl-C on a busy machine once printed a traceback): the add still stops at the next batch."""
    import gc
    import signal
    import weakref

    from integrations.cli.batches import interruptible

    def interrupt(*_):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))  # the handler runs in here

    class Finalizer:
        if finalizer == "__del__":
            __del__ = interrupt

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interruptible() as check:
        doomed = Finalizer()
        callback = weakref.ref(doomed, interrupt) if finalizer != "__del__" else None
        del doomed
        gc.collect()
        assert callback is None or callback() is None
        check()  # no KeyboardInterrupt reached this line, yet the add stops here
    assert signal.getsignal(signal.SIGINT) is before
    assert "Traceback" not in capfd.readouterr().err


def test_a_ctrl_c_just_after_a_commit_counts_what_was_written(tmp_path, prompt_model_dir, at):
    """The interrupt lands after a batch's transaction committed and before it was counted (what made the
    Ctrl-C test flaky): the count, which the interrupted add prints, is what the index holds."""
    from collections import Counter

    from integrations.cli.commands import add_documents
    from integrations.cli.readers import Document

    documents = [Document(f"d{i}", f"note {i} about tea", {"n": i}) for i in range(6)]
    with open_index(at(tmp_path), SentenceTransformer(prompt_model_dir, device="cpu")) as index:
        index.add(["note 0 about tea"], [{"n": 0}], ids=["d0"])  # unchanged, and d1 relabelled below
        index.add(["note 1 about tea"], [{"n": -1}], ids=["d1"])
        commit = index.add

        def add_then_interrupted(*args, **kwargs):
            commit(*args, **kwargs)
            raise KeyboardInterrupt

        index.add = add_then_interrupted
        counts = Counter()
        with pytest.raises(KeyboardInterrupt):
            add_documents(index, documents, batch_size=3, counts=counts)
        assert sorted(r.id for r in index) == ["d0", "d1", "d2"]  # the first batch's new document landed
        assert (counts["added"], counts["updated"], counts["metadata only"]) == (1, 0, 0)


def test_transactions_are_paced_to_seconds_of_work():
    """The first transaction is small; each next one holds about two seconds of work at the last one's
    rate, grows at most fourfold, and never exceeds --batch-size."""
    from integrations.cli.batches import Pace, batches

    pace = Pace(256)
    assert pace() == 32
    pace.took(32, 0.1)  # 320 chunks a second: 640 would take 2 s, but a batch grows fourfold at most
    assert pace() == 128
    pace.took(128, 0.2)  # 640 a second: capped by --batch-size
    assert pace() == 256
    pace.took(256, 16.0)  # a slow machine: 16 chunks a second
    assert pace() == 32
    pace.took(32, 1000.0)
    assert pace() == 1
    docs = [(f"d{i}", 3) for i in range(10)]
    assert [n for _, n in batches(docs, lambda: 7)] == [6, 6, 6, 6, 6]
    size = [3]
    found = []
    for _, n in batches(docs, lambda: size[0]):  # each batch is cut at the size asked when it fills
        found.append(n)
        size[0] = 9
    assert found == [3, 9, 9, 9]
    assert Pace(8)() == 8


def test_info_lists_the_fields_a_filter_can_name_and_search_shows_the_matching_words(tmp_path, cli, at):
    records = [
        {"id": "a", "text": "Green tea is steamed.", "team": "red", "year": 2020},
        {"id": "b", "text": "Black tea is rolled.", "team": "blue"},
        {"id": "c", "text": "Coffee " * 60 + "and a steamed quokka at the very end."},
    ]
    (tmp_path / "notes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli("add", at(tmp_path), str(tmp_path / "notes.jsonl"), "-q")[0] == 0
    code, out, err = cli("info", at(tmp_path), "--json")
    assert code == 0, err
    fields = {f["name"]: (f["documents"], f["types"], f["examples"]) for f in json.loads(out)["fields"]}
    assert fields["team"] == (2, ["string"], ["red", "blue"]) and fields["year"] == (1, ["number"], [2020])
    assert fields["source"][0] == 3 and fields["id"] == (3, ["string"], ["a", "b", "c"])  # the record's own id
    code, out, _ = cli("info", at(tmp_path))
    assert "fields: " in out and "team (2, string)" in out and "year (1, number)" in out
    code, out, _ = cli("search", at(tmp_path), "steamed quokka", "--mode", "keyword", "-k", "1")
    line = out.splitlines()[1]  # the snippet starts near the words, not at the document's start
    assert "notes.jsonl#c" in line and "steamed quokka" in line and line.count("Coffee") < 20
    code, out, _ = cli("search", at(tmp_path), "steamed quokka", "--mode", "keyword", "-k", "1", "--full")
    assert records[2]["text"].strip() in out
