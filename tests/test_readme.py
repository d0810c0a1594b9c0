"""Every Python snippet of the README runs as written, each in a fresh interpreter, in a fresh folder.

The dev install holds every extra that a snippet's install line names; ``DATABASE_URL`` points the
PostgreSQL snippet at the test server.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[tuple[str, str]]:
    """(the heading above it, code) for each ```python block."""
    found, heading = [], "top"
    for block in re.finditer(r"^(#+ [^\n]*)$|^```python\n(.*?)^```", README.read_text(), re.M | re.S):
        if block.group(1):
            heading = block.group(1).lstrip("# ").strip()
        else:
            found.append((heading, block.group(2)))
    return found


SNIPPETS = snippets()


def test_the_readme_has_its_snippets():
    headings = [h for h, _ in SNIPPETS]
    assert len(SNIPPETS) >= 6 and {"Quick start", "Stores", "LangChain", "PostgreSQL + pgvector"} <= set(headings)


@pytest.mark.parametrize("code", [c for _, c in SNIPPETS], ids=[f"{n}-{h}" for n, (h, _) in enumerate(SNIPPETS)])
def test_snippet_runs_as_written(code, tmp_path, pg_url):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = dict(os.environ, DATABASE_URL=pg_url[0])
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
