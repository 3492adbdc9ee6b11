"""``python -m soaklib.bench report [--iterations 24] [--repeat 3]``: wall time of ``soak report``
over a synthetic run divided by the time papermill takes to execute the same number of empty
notebooks as ``soak report`` runs (``reports.NOTEBOOKS``, 2), one after the other (goal <= 1.5).
Also prints the ratio against those empty notebooks run side by side, as ``soak report`` itself
runs its notebooks in parallel.

Both sides are timed in the same process run, as subprocesses of the same interpreter (the same
papermill, the same kernel), interleaved per repeat; each side's best of the repeats is compared,
so a burst of load from other processes on a shared machine does not decide the ratio."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from soaklib.publish.reports import NOTEBOOKS
from soaklib.store.synthetic import write_synthetic_run


def _papermill(nb: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "papermill", str(nb), str(out), "--no-progress-bar"], check=True,
                   capture_output=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench report")
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3)
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
        n_nb = len(NOTEBOOKS)  # as many empty notebooks as `soak report` executes
        rep, seq, par = [], [], []
        for k in range(a.repeat):
            t = time.perf_counter()
            for j in range(n_nb):
                _papermill(nb, tmp / f"e{k}-{j}.ipynb")
            seq.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(n_nb) as pool:
                list(pool.map(lambda j, k=k: _papermill(nb, tmp / f"p{k}-{j}.ipynb"), range(n_nb)))
            par.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "soaklib", "report", str(run), "--out", str(tmp / f"r{k}")],
                           check=True, capture_output=True)
            rep.append(time.perf_counter() - t)
        r, s, p = min(rep), min(seq), min(par)
        print(f"soak report ({a.iterations} iterations): {r:.2f} s")
        print(f"papermill, {n_nb} empty notebooks sequential: {s:.2f} s; side by side: {p:.2f} s")
        print(f"ratio vs sequential: {r / s:.2f} (goal <= 1.5) {'OK' if r / s <= 1.5 else 'MISSED'}")
        print(f"ratio vs side by side: {r / p:.2f}")
        if a.repeat > 1:
            print("per repeat (report / sequential): "
                  + ", ".join(f"{x:.2f}/{y:.2f} s = {x / y:.2f}" for x, y in zip(rep, seq)))
    return 0
