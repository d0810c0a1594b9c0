"""Every Python snippet of the README and of docs/*.md runs as written, each in a fresh interpreter, in a
fresh folder; the README stays short and links every page of docs/.

The dev install holds every extra that a snippet's install line names; ``DATABASE_URL`` points the
PostgreSQL snippet at the test server, ``RERANKER`` the reranking one at a fixture cross-encoder and
``SPARSE_MODEL`` the sparse one at SPLADE-tiny (the Hub cannot be reached here).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def snippets() -> list[tuple[str, str, str]]:
    """(the page, the heading above it, code) for each ```python block."""
    found = []
    for page in PAGES:
        heading = "top"
        for block in re.finditer(r"^(#+ [^\n]*)$|^```python\n(.*?)^```", page.read_text(), re.M | re.S):
            if block.group(1):
                heading = block.group(1).lstrip("# ").strip()
            else:
                found.append((page.stem, heading, block.group(2)))
    return found


SNIPPETS = snippets()


def test_the_pages_have_their_snippets():
    headings = {(page, heading) for page, heading, _ in SNIPPETS}
    expected = {("README", "Quick start"), ("stores", "Stores"), ("langchain", "LangChain")}
    assert len(SNIPPETS) >= 8 and expected <= headings
    assert ("postgresql", "PostgreSQL + pgvector") in headings


def test_the_readme_is_short_and_links_every_page():
    text = README.read_text()
    assert len(text) <= 8000
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", text))
    assert linked == {f"docs/{p.name}" for p in PAGES[1:]}


@pytest.mark.slow
@pytest.mark.parametrize(
    "code", [c for *_, c in SNIPPETS], ids=[f"{p}-{n}-{h}" for n, (p, h, _) in enumerate(SNIPPETS)]
)
def test_snippet_runs_as_written(code, tmp_path, pg_url, cross_dirs, request):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = dict(os.environ, DATABASE_URL=pg_url[0], RERANKER=cross_dirs[1])
    if "SPARSE_MODEL" in code:
        env["SPARSE_MODEL"] = request.getfixturevalue("splade_tiny")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
