"""Helpers shared by the benchmark commands (``python -m soaklib.bench ...``)."""
from __future__ import annotations

import json
import subprocess
import sys


def child_floats(code: str, env: dict[str, str]) -> list[float]:
    """Run ``code`` in a fresh interpreter and read the numbers it prints (timings)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return [float(x) for x in r.stdout.split()]


def emit(figures: dict, as_json: bool, *, indent: int, width: int) -> None:
    """Print the figures as JSON or as aligned ``name value`` lines."""
    if as_json:
        print(json.dumps(figures, indent=indent))
    else:
        for k, v in figures.items():
            print(f"{k:{width}s} {v}")
