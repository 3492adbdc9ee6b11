"""Every row of soaklib.bench.directions (the table docs/SIMULATOR.md shows) holds, averaged over seeds."""
from __future__ import annotations

import numpy as np
import pytest

from soaklib.bench.directions import DIRECTIONS, kpi_value
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.sim import simulate

SEEDS = range(8)
DURATION_S = 900.0


def _mean_kpi(values: dict, scenario: str, kpi: str) -> float:
    return float(np.mean([kpi_value(simulate(values, scenario, 100 + s, DURATION_S).kpis, kpi) for s in SEEDS]))


@pytest.mark.parametrize("d", DIRECTIONS, ids=lambda d: f"{d.param}->{d.kpi}")
def test_direction(d):
    base = load_profile(d.base, registry(load_config()))
    lo = _mean_kpi({**base, d.param: d.low}, d.scenario, d.kpi)
    hi = _mean_kpi({**base, d.param: d.high}, d.scenario, d.kpi)
    assert np.sign(hi - lo) == d.sign, f"{d.param} {d.low}->{d.high}: {d.kpi} {lo:.4g} -> {hi:.4g}, expected sign {d.sign}"


def test_every_tunable_parameter_has_a_primary_direction():
    assert {d.param for d in DIRECTIONS if d.primary} == set(registry(load_config()))


def test_doc_shows_the_table():
    from pathlib import Path

    from soaklib.bench.directions import render_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "SIMULATOR.md").read_text("utf-8")
    assert render_markdown() in doc
