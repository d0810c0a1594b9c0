"""The store tests. Each module names the configurations it runs on in ``STORES`` (names from the one
registry, ``store_workers.EVERY``; ``MAIN`` when it names none); a test that takes ``backend`` or ``make``
runs once per configuration, over storage of its own."""

from __future__ import annotations

import pytest
from store_workers import MAIN, Backend


def pytest_generate_tests(metafunc):
    """``store_name`` over the module's ``STORES``, or a test's own ``@pytest.mark.stores([...])``."""
    if "store_name" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stores")
        names = marker.args[0] if marker else getattr(metafunc.module, "STORES", MAIN)
        metafunc.parametrize("store_name", names)


@pytest.fixture
def backend(store_name, tmp_path, request) -> Backend:
    return Backend(store_name, tmp_path, request)


@pytest.fixture
def make(backend):
    """Opens (and reopens) the configuration over the same storage; the encoder defaults to the torch-free
    HashEncoder, and keyword arguments go to the index."""
    return backend.open


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    """FaissIndex seals its tail every 64 rows here (20,000 in use), so that the tests' few hundred rows
    run through sealed segments with their own HNSW graphs and IVF lists, tombstones and merges, not only
    through the exact tail; SQLIndex on a SQLite file writes its changed rows as a segment at save() and
    close() from 64 rows on, likewise. Child processes keep the real sizes."""
    from integrations.faiss import segments
    from integrations.sql import segments as sql_segments

    monkeypatch.setattr(segments, "SEAL_ROWS", 64)
    monkeypatch.setattr(sql_segments, "SEAL_ROWS", 64)
