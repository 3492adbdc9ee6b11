"""Runners: run the strategy for one iteration and report what happened (``RunnerOutput``).

``EngineRunner`` runs an in-process engine's ``simulate``: ``SimRunner`` the embedded simulator,
``HbtRunner`` the opt-in hftbacktest engine (``soaklib.sim.hbt``, same result type). The external bot runner is
``soaklib.execute.external.CommandRunner`` (same ``run`` signature, DESIGN §13). A runner never raises for
a strategy failure: it returns ``ok=False`` with a ``failure`` the loop records.
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soaklib import sim
from soaklib.core.errors import SoakError
from soaklib.execute.base import Runner, RunnerOutput
from soaklib.execute.external import CommandRunner
from soaklib.sim import hbt as hbt_engine


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:]


class EngineRunner:
    """An in-process engine as a runner: its ``simulate`` over the iteration's window. ``what`` names
    the engine in a crash's failure reason."""

    name = ""
    what = ""

    def __init__(self, simulate: Callable[..., Any], scenario: Any, duration_s: float, config: Any):
        self._simulate = simulate
        self.scenario = scenario
        self.duration_s = float(duration_s)
        self.config = config

    def run(self, params: Mapping[str, Any], *, iteration: int, seed: int, run_dir: Path | None = None,
            start_s: float = 0.0) -> RunnerOutput:
        """Simulate one iteration. Input errors (bad scenario/params) raise; engine crashes are
        reported as a failed iteration with the traceback tail."""
        t0 = time.perf_counter()
        try:
            res = self._simulate(dict(params), self.scenario, seed, self.duration_s, start_s=start_s,
                                 config=self.config)
        except SoakError:
            raise
        except Exception as exc:  # a crash of the strategy under test is a failed iteration, not ours
            return RunnerOutput.failed(f"{self.what} raised {type(exc).__name__}: {exc}",
                                       _tail(traceback.format_exc()), elapsed_s=time.perf_counter() - t0)
        reported = dict(res.params)
        return RunnerOutput(ok=True, kpis=dict(res.kpis), params=reported, runtime_guards=dict(res.runtime_guards),
                            market=dict(res.market), events=int(res.events),
                            params_missing=sorted(k for k in params if k not in reported),
                            elapsed_s=time.perf_counter() - t0)


class SimRunner(EngineRunner):
    """The embedded simulator: ``soaklib.sim.simulate``."""

    name, what = "sim", "simulator"

    def __init__(self, scenario: str | Path = "default", duration_s: float = 3600.0, config: dict | None = None):
        super().__init__(sim.simulate, scenario, duration_s, config)


class HbtRunner(EngineRunner):
    """The hftbacktest engine: ``soaklib.sim.hbt.simulate``. The scenario and the ``[hbt]`` config
    are checked on construction (before a run dir exists)."""

    name, what = "hbt", "hbt engine"

    def __init__(self, scenario: str | Path = "default", duration_s: float = 3600.0, config: dict | None = None):
        super().__init__(hbt_engine.simulate, hbt_engine.load_scenario(scenario), duration_s,
                         hbt_engine.settings(config))


def make_runner(spec: str, *, scenario: str | Path, duration_s: float, config: dict,
                timeout_s: float | None = None) -> Runner:
    """``"sim"`` → SimRunner; ``"hbt"`` → HbtRunner; anything else is an external command line
    (soaklib.execute.external)."""
    if spec == "sim":
        return SimRunner(scenario, duration_s, config)
    if spec == "hbt":
        return HbtRunner(scenario, duration_s, config)
    return CommandRunner(spec, timeout_s if timeout_s is not None else config["run"]["iteration_timeout_s"], config)
