"""`embedkit add` over a folder again removes only what it saw vanish: two folders of one name keep their
own documents, and a folder that cannot be listed, a file that cannot be read or decoded, a dangling
symlink, a name that is not UTF-8 or an empty folder keep what the index holds from them, are named, and
make the exit status 6 (a partial sync). Every test runs on a SQLite file and a FAISS folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import stored

from embedkit import SentenceTransformer
from integrations import open_index

PARTIAL = 6


def write(folder, files: dict[str, str | bytes]) -> None:
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["file", "paragraph"])
def test_two_folders_of_one_name_keep_their_own_documents(tmp_path, cli, prompt_model_dir, at, unit):
    work, home = tmp_path / "work" / "kb", tmp_path / "home" / "kb"
    write(work, {"notes.md": "Green tea is steeped briefly.\n\nOolong takes longer.\n"})
    write(home, {"notes.md": "Espresso needs fine grounds.\n\nA French press wants coarse ones.\n"})
    db = at(tmp_path)
    assert cli("add", db, str(work), "--unit", unit, "-q")[0] == 0
    first = stored(db, prompt_model_dir)
    code, _, err = cli("add", db, str(home), "--unit", unit, "-q")
    assert code == 0 and "0 updated" in err and "0 removed" in err, err
    both = stored(db, prompt_model_dir)
    assert set(first) < set(both) and len(both) == 2 * len(first)  # the first folder's documents are all there
    assert {m["root"] for _, m in both.values()} == {str(work), str(home)}
    for folder in (work, home):  # each, added again, is unchanged and removes nothing of the other
        code, _, err = cli("add", db, str(folder), "--unit", unit, "-q")
        assert code == 0 and f"0 added, 0 updated, {len(first)} unchanged, 0 removed" in err, err
    assert stored(db, prompt_model_dir) == both
    code, out, _ = cli("search", db, "tea", "--json", "-k", "10", "--filter", json.dumps({"root": str(work)}))
    assert {h["metadata"]["source"] for h in json.loads(out)} == {f"{work}/notes.md"}


@pytest.mark.slow
def test_an_index_of_the_previous_cli_is_migrated_not_doubled(tmp_path, cli, prompt_model_dir, at):
    """The 0.2 CLI named files FOLDERNAME/PATH with ``root``: the files still there get their new ids
    (counted as replaced), a file that is gone is pruned, and another folder's documents stay."""
    kb = tmp_path / "kb"
    write(kb, {"a.md": "tea leaves", "sub/b.md": "river stones"})
    root, other = str(kb), str(tmp_path / "elsewhere" / "kb")
    db = at(tmp_path)
    with open_index(db, SentenceTransformer(prompt_model_dir, device="cpu")) as index:
        index.add(
            ["tea leaves", "river stones", "a deleted note", "another folder's note"],
            [
                {"source": "kb/a.md", "root": root},
                {"source": "kb/sub/b.md", "root": root},
                {"source": "kb/gone.md", "root": root},
                {"source": "kb/a.md", "root": other},
            ],
            ids=["kb/a.md", "kb/sub/b.md", "kb/gone.md", "other"],
        )
    code, _, err = cli("add", db, str(kb), "-q")
    assert code == 0 and "2 added" in err and "1 removed (1 files gone), 2 stored under older ids replaced" in err, err
    assert set(stored(db, prompt_model_dir)) == {f"{root}/a.md", f"{root}/sub/b.md", "other"}


@pytest.mark.slow
def test_a_file_that_no_longer_decodes_keeps_its_documents(tmp_path, cli, prompt_model_dir, at):
    kb = tmp_path / "kb"
    write(kb, {"a.md": "tea leaves", "b.md": "café au lait"})
    db = at(tmp_path)
    assert cli("add", db, str(kb), "-q")[0] == 0
    before = stored(db, prompt_model_dir)
    for body, why in [("café crème".encode("latin-1"), "not utf-8 text"), (b"caf\0 mid-rewrite", "holds NUL bytes")]:
        (kb / "b.md").write_bytes(body)  # another editor's encoding, or a file caught mid-rewrite
        code, _, err = cli("add", db, str(kb), "-q")
        assert code == PARTIAL, err
        assert "0 removed" in err and f"skipped {kb}/b.md: {why}" in err and "1 undecodable" in err
        assert "partial sync" in err and stored(db, prompt_model_dir) == before
    (kb / "b.md").write_text("café crème")
    code, _, err = cli("add", db, str(kb), "-q")
    assert code == 0 and "0 added, 1 updated, 1 unchanged, 0 removed" in err, err


@pytest.mark.slow
def test_a_dangling_symlink_and_a_name_that_is_not_utf8_are_skipped_and_named(tmp_path, cli, prompt_model_dir, at):
    kb = tmp_path / "kb"
    write(kb, {"good.md": "tea leaves"})
    write(tmp_path, {"elsewhere.md": "river stones"})
    (kb / "link.md").symlink_to(tmp_path / "elsewhere.md")
    odd = os.fsencode(kb) + b"/caf\xe9.txt"  # Latin-1 bytes in a name
    with open(odd, "wb") as f:
        f.write(b"a note with an odd name")
    db = at(tmp_path)
    code, _, err = cli("add", db, str(kb), "-q")
    assert code == PARTIAL, err
    assert f"skipped {kb}/caf\\xe9.txt: the name is not UTF-8" in err and "Traceback" not in err
    assert set(stored(db, prompt_model_dir)) == {f"{kb}/good.md", f"{kb}/link.md"}
    (tmp_path / "elsewhere.md").unlink()  # link.md now points at nothing: skipped, and its document kept
    code, _, err = cli("add", db, str(kb), "-q")
    assert code == PARTIAL and f"skipped {kb}/link.md: a symlink to nothing" in err, err
    assert "0 removed" in err and "1 dangling symlink, 1 name not UTF-8" in err
    assert set(stored(db, prompt_model_dir)) == {f"{kb}/good.md", f"{kb}/link.md"}


@pytest.mark.slow
def test_an_empty_folder_removes_nothing_unless_allowed(tmp_path, cli, prompt_model_dir, at):
    kb = tmp_path / "kb"
    write(kb, {"a.md": "tea leaves", "b.md": "river stones"})
    db = at(tmp_path)
    assert cli("add", db, str(kb), "-q")[0] == 0
    for name in ("a.md", "b.md"):  # what an unmounted share looks like: the folder is there, empty
        (kb / name).unlink()
    code, _, err = cli("add", db, str(kb), "-q")
    assert code == PARTIAL and "0 removed" in err, err
    assert f"skipped {kb}: holds no files; its 2 stored documents were kept (--allow-empty removes them)" in err
    assert len(stored(db, prompt_model_dir)) == 2
    code, _, err = cli("prune", db)
    assert code == 0 and "0 documents of vanished files deleted" in err, err
    code, _, err = cli("add", db, str(kb), "--allow-empty", "-q")
    assert code == 0 and "2 removed (2 files gone)" in err, err
    assert stored(db, prompt_model_dir) == {}
    code, _, err = cli("add", db, str(kb), "-q")  # empty, and nothing stored from it: nothing to say
    assert code == 0, err


def unprivileged(args: list[str]) -> list[str]:
    """``args`` run so that file modes apply: as root, without the capabilities that bypass them."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--", *args]


@pytest.mark.slow
def test_what_cannot_be_listed_or_read_is_kept(tmp_path, cli, prompt_model_dir, at):
    """A real chmod 000 on a subfolder, on a file and then on the folder itself: each sync (and
    ``embedkit prune``) keeps what the index holds from them, names them and exits 6."""
    kb = tmp_path / "kb"
    write(kb, {"a.md": "tea leaves", "sub/b.md": "river stones", "sub/c.md": "mountain air", "d.md": "sea salt"})
    db = at(tmp_path)

    def embedkit(*args):
        command = [sys.executable, "-m", "integrations.cli", *args, "-m", prompt_model_dir]
        done = subprocess.run(unprivileged(command), capture_output=True, text=True, timeout=300, cwd=tmp_path)
        return done.returncode, done.stderr

    assert cli("add", db, str(kb), "-q")[0] == 0  # readable: in this process
    before = stored(db, prompt_model_dir)
    assert len(before) == 4
    try:
        (kb / "sub").chmod(0)
        (kb / "d.md").chmod(0)
        code, err = embedkit("add", db, str(kb), "-q")
        assert code == PARTIAL, err
        assert "0 removed" in err and "1 unlisted, 1 unreadable" in err
        assert f"skipped {kb}/sub: cannot be listed (Permission denied)" in err
        assert f"skipped {kb}/d.md: cannot be read (Permission denied)" in err
        assert stored(db, prompt_model_dir) == before
        code, err = embedkit("prune", db)
        assert code == 0 and "0 documents of vanished files deleted" in err, err
        (kb / "sub").chmod(0o755)
        (kb / "d.md").chmod(0o644)
        (kb / "sub" / "c.md").unlink()
        kb.chmod(0)
        code, err = embedkit("add", db, str(kb), "-q")
        assert code == PARTIAL and f"skipped {kb}: cannot be listed" in err and "0 removed" in err, err
        assert stored(db, prompt_model_dir) == before
    finally:
        kb.chmod(0o755)
        (kb / "sub").chmod(0o755)
    code, _, err = cli("add", db, str(kb), "-q")  # readable again: the file that is gone is removed
    assert code == 0 and "1 removed (1 files gone)" in err, err
