"""``python -m soaklib.bench report [--iterations 24] [--repeat 1]``: wall time of ``soak report``
over a synthetic run divided by the time papermill takes to execute the same number (2) of empty
notebooks, one after the other (goal <= 1.5). Also prints the ratio against two empty notebooks run
side by side, as ``soak report`` itself runs its two notebooks in parallel."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from ..testing import write_synthetic_run


def _papermill(nb: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "papermill", str(nb), str(out), "--no-progress-bar"], check=True,
                   capture_output=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench report")
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-bench-report-") as td:
        tmp = Path(td)
        # a non-simulator runner: recommendations are rule-based, so this times the report machinery
        run = write_synthetic_run(tmp / "runs", a.iterations, runner="bench",
                                  params=lambda i: {"min_interval_ms": 60 + min(i, 8)})
        empty = nbformat.v4.new_notebook()
        empty.cells = [nbformat.v4.new_code_cell("")]
        empty.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb = tmp / "empty.ipynb"
        nbformat.write(empty, str(nb))
        rep, seq, par = [], [], []
        for k in range(a.repeat):
            t = time.perf_counter()
            _papermill(nb, tmp / f"e{k}a.ipynb")
            _papermill(nb, tmp / f"e{k}b.ipynb")
            seq.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda s: _papermill(nb, tmp / f"p{k}{s}.ipynb"), "ab"))
            par.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "soaklib", "report", str(run), "--out", str(tmp / f"r{k}")],
                           check=True, capture_output=True)
            rep.append(time.perf_counter() - t)
        r, s, p = min(rep), min(seq), min(par)
        print(f"soak report ({a.iterations} iterations): {r:.2f} s")
        print(f"papermill, 2 empty notebooks sequential: {s:.2f} s; side by side: {p:.2f} s")
        print(f"ratio vs sequential: {r / s:.2f} (goal <= 1.5) {'OK' if r / s <= 1.5 else 'MISSED'}")
        print(f"ratio vs side by side: {r / p:.2f}")
    return 0
