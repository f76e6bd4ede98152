"""The layers hold: who may import whom (pyproject.toml ``[tool.importlinter]``, README "Layout").

``lint-imports`` (import-linter) checks the packages; the DAG files are not a package, so their imports
are read here with ``ast``. Either check fails the suite when an arrow is broken.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"mmkg", "extraction", "models", "kg_loader", "neo4j_server", "app", "bench", "dags"}
#: What a DAG file may import of the project: the packages whose functions its tasks call.
DAGS_MAY_IMPORT = {"extraction", "kg_loader", "models"}


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: bin/setup installs the test extra (import-linter)")
    return [exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"]


def test_package_layers_hold() -> None:
    run = subprocess.run(_lint_imports(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("dag_file", sorted((ROOT / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_only_the_pipeline_packages(dag_file: Path) -> None:
    assert project_imports(dag_file) <= DAGS_MAY_IMPORT


def test_the_checks_catch_a_broken_arrow(tmp_path: Path) -> None:
    """A ground module that reaches up, and a DAG that imports the app, are both caught."""
    sh = shutil
    copy = tmp_path / "tree"
    for name in ("mmkg", "extraction", "models", "kg_loader", "neo4j_server", "app", "bench"):
        sh.copytree(ROOT / name, copy / name, ignore=sh.ignore_patterns("__pycache__", "checkpoints", "target",
                                                                         "results", "*.png", "*.json"))
    sh.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "mmkg" / "leak.py").write_text("from extraction import pipeline  # the ground reaching up\n")
    cmd = _lint_imports()
    cmd[cmd.index("--config") + 1] = str(copy / "pyproject.toml")
    run = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert run.returncode != 0 and "mmkg.leak -> extraction.pipeline" in run.stdout, run.stdout + run.stderr

    dag = tmp_path / "bad_dag.py"
    dag.write_text("def f():\n    from app import demo\n")
    assert project_imports(dag) - DAGS_MAY_IMPORT == {"app"}
