"""Smoke tests: each example script and `embedkit demo` run and print what they promise."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(args, cwd):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, expected",
    [
        ("rag_retrieval.py", ["[health-2] Vaccines train the immune system", "Prompt for the LLM"]),
        (
            "hybrid_rag.py",
            [
                "8 articles, 28 chunks",
                "[biology] fused 0.0328, ranks {'vector': 1, 'keyword': 1}, chunk 119-261 of 414 characters",
                "CRISPR-Cas9 cuts DNA at a chosen sequence, which lets researchers edit genes precisely.",
            ],
        ),
        ("faiss_binary_rescore.py", ["Same top-3 as exact search for", "48 bytes per vector"]),
        (
            "metadata_filters.py",
            ['filter {"topic": "space"}', "A malformed filter is refused: filter['year']['$between']"],
        ),
        (
            "postgres_pgvector.py",
            ["40 documents in table example_docs (pgvector HNSW: True)", "health-3  Walking thirty minutes"],
        ),
        (
            "langchain_rag.py",
            ["Top documents for: How do bees help flowers?", "  [bio-4] Bees pollinate", "Only history:\n  [hist-"],
        ),
    ],
)
def test_example_runs(script, expected, tmp_path):
    stdout = run([str(ROOT / "examples" / script)], cwd=tmp_path)
    for text in expected:
        assert text in stdout


@pytest.mark.slow
def test_demo_is_the_main_job(tmp_path):
    stdout = run(["-m", "integrations.cli", "demo", "-q"], cwd=tmp_path)
    assert "Indexed 40 documents into sqlite:///embedkit-demo.db" in stdout
    assert "1. 0.636  bio-1      Photosynthesis" in stdout  # the top answer to the first query, with its cosine
    assert (tmp_path / "embedkit-demo.db").exists()
    again = run(["-m", "integrations.cli", "demo", "-q"], cwd=tmp_path)  # re-running upserts: still 40 stored
    assert "(40 stored)" in again
