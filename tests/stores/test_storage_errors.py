"""When the storage under an index fails, the store says so in its own error (StorageError, an OSError),
naming the file or URL, and loses nothing acknowledged: a real full disk (a small tmpfs in a mount namespace
of the test's own) under SQLite and FAISS, a PostgreSQL server that cannot be reached, one whose connection
goes away, and one out of disk space; and a SQLite URL that names a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from store_workers import HashEncoder

from integrations import SQLIndex, open_index
from integrations.errors import NotAnIndexError, StorageError

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILL = f"""
import json, subprocess, sys, tempfile
sys.path.insert(0, {TESTS!r})
from store_workers import HashEncoder
from integrations import open_index
from integrations.errors import StorageError

out = {{}}
for name in ("sqlite", "faiss"):
    mnt = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], check=True)
    target = f"sqlite:///{{mnt}}/kb.db" if name == "sqlite" else f"{{mnt}}/faiss"
    index = open_index(target, HashEncoder())
    acknowledged, errors = 0, []
    try:
        for b in range(100_000):
            index.add([f"document {{b}} {{i}} " * 100 for i in range(20)], ids=[f"{{b}}-{{i}}" for i in range(20)])
            acknowledged += 20
    except StorageError as exc:
        errors.append(str(exc))
    seal = (lambda: index.save(force=True)) if name == "faiss" else index.save  # FAISS writes a segment here
    for step in (seal, index.close):
        try:
            step()
        except StorageError as exc:
            errors.append(str(exc))
    out[name] = dict(errors=errors, acknowledged=acknowledged, mnt=mnt,
                     reopened=len(open_index(target, HashEncoder(), create=False)))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_full_disk_is_a_storage_error_and_loses_nothing_acknowledged(tmp_path):
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]  # a tmpfs only this child sees
    done = subprocess.run([*unshare, sys.executable, "-c", FILL], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    sqlite, faiss = out["sqlite"], out["faiss"]
    assert sqlite["errors"] == [
        f"table 'documents' at sqlite:///{sqlite['mnt']}/kb.db: the disk is full; this call wrote nothing"
    ]
    assert faiss["errors"][0] == f"{faiss['mnt']}/faiss/docs.sqlite: the disk is full; this call wrote nothing"
    assert faiss["errors"][1].startswith(f"{faiss['mnt']}/faiss: the disk is full ([Errno 28] No space left on device)")
    assert faiss["errors"][1].endswith("the last saved state is kept")
    for store in (sqlite, faiss):
        assert store["acknowledged"] > 100 and store["reopened"] == store["acknowledged"]


def test_a_sqlite_url_that_names_a_folder_is_not_an_index(tmp_path):
    with pytest.raises(NotAnIndexError, match=f"^{tmp_path} is a folder, not a SQLite file"):
        open_index(f"sqlite:///{tmp_path}", HashEncoder())
    assert os.listdir(tmp_path) == []


def test_a_postgresql_server_that_cannot_be_reached(tmp_path):
    url = f"postgresql+psycopg://postgres@/postgres?host={tmp_path}"
    with pytest.raises(StorageError, match="the database server cannot be reached or went away") as raised:
        SQLIndex(HashEncoder(), url)
    assert str(tmp_path).replace("/", "%2F") in str(raised.value)  # the URL, as SQLAlchemy renders it
    assert f'socket "{tmp_path}/.s.PGSQL.5432" failed' in str(raised.value)


def test_a_postgresql_connection_that_goes_away_then_comes_back(pg_url):
    url, server = pg_url
    name = f"embedkit-{uuid.uuid4().hex[:8]}"
    index = SQLIndex(HashEncoder(), url, table=f"t_{uuid.uuid4().hex[:12]}", connect_args={"application_name": name})
    index.add(["before"], ids=["a"])
    server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}';")
    with pytest.raises(StorageError, match="the database server cannot be reached or went away") as raised:
        index.add(["lost"], ids=["b"])
    assert "terminating connection due to administrator command" in str(raised.value)
    index.add(["after"], ids=["c"])  # the pool opens a new connection
    assert sorted(r.id for r in index) == ["a", "c"]
    index.close()


def test_a_postgresql_server_out_of_disk_space(pg_url):
    url, server = pg_url
    table = f"t_{uuid.uuid4().hex[:12]}"
    index = SQLIndex(HashEncoder(), url, table=table)
    index.add(["before"], ids=["a"])
    server.psql(  # the real server sends SQLSTATE 53100, as it does when its disk fills up
        f"CREATE FUNCTION {table}_full() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;"
        f"CREATE TRIGGER full_disk BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_full();"
    )
    with pytest.raises(StorageError, match="the database server is out of resources") as raised:
        index.add(["too much"], ids=["b"])
    assert "No space left on device" in str(raised.value) and f"table '{table}'" in str(raised.value)
    server.psql(f"DROP TRIGGER full_disk ON {table};")
    assert [r.id for r in index] == ["a"]
    index.close()
