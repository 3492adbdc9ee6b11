"""The layer contract (pyproject [tool.importlinter]) holds, and it does catch violations.

``lint-imports`` runs on the real package; then on a copy with a deliberate upward import and a
deliberate cycle, where it must fail and name them (a contract that cannot fail checks nothing).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_layer_contract_holds():
    res = _lint(ROOT, ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "BROKEN" not in res.stdout


def test_contract_names_every_subpackage():
    """Every subpackage of soaklib is in the layers contract (``exhaustive`` also enforces it)."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    subs = sorted(p.name for p in (ROOT / "soaklib").iterdir() if (p / "__init__.py").is_file())
    for name in subs:
        assert f'"{name}' in text or f"| {name}" in text, f"soaklib.{name} missing from the layers contract"


@pytest.mark.parametrize("case", ["upward", "cycle"])
def test_contract_catches_a_violation(tmp_path, case):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "soaklib", tmp_path / "soaklib", ignore=shutil.ignore_patterns("__pycache__"))
    if case == "upward":  # the core reaching up into publishing
        target, line, expect = "core/numbers.py", "from soaklib.publish import plots  # noqa\n", "soaklib.core"
    else:  # two store modules importing each other
        target, line, expect = "store/legacy.py", "from soaklib.store import loader  # noqa\n", "cycles"
    f = tmp_path / "soaklib" / target
    f.write_text(f.read_text("utf-8") + line, "utf-8")
    res = _lint(tmp_path, tmp_path)
    assert res.returncode != 0, res.stdout[-2000:]
    assert "BROKEN" in res.stdout and expect in res.stdout, res.stdout[-2000:]
