"""The parameter -> KPI table on the hftbacktest engine (soaklib.bench.directions.HBT_DIRECTIONS).

docs/SIMULATOR.md shows the full measurement (``python -m soaklib.bench directions --engine hbt``:
16 seeds, 900 s windows, p < 0.01); this is a reduced version of it (8 seeds, 600 s windows) that
must keep every row's sign at p < 0.05 (two-sided Wilcoxon signed-rank on the paired differences).
Markets go to a tmp cache.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from soaklib.bench import calibration
from soaklib.bench.directions import DIRECTIONS, HBT_DIRECTIONS, measure
from soaklib.core.config import load_config
from soaklib.core.params import registry

SEEDS = list(range(5000, 5008))  # not calibration seeds (the command refuses those)
DURATION_S = 600.0
ALPHA = 0.05
DOC = Path(__file__).resolve().parents[1] / "docs" / "SIMULATOR.md"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    cfg = load_config(overrides={"hbt": {"market_cache_dir": str(tmp_path_factory.mktemp("hbt-markets"))}})
    reg = registry(cfg)
    profiles = {n: calibration.resolve_profile(n, reg, str(calibration.HBT_PROFILE_DIR))
                for n in {d.base for d in HBT_DIRECTIONS}}
    ms = measure(HBT_DIRECTIONS, engine="hbt", seeds=SEEDS, duration_s=DURATION_S, profiles=profiles, cfg=cfg,
                 alpha=ALPHA)
    return {(m.row.param, m.row.kpi): m for m in ms}


@pytest.mark.slow
@pytest.mark.parametrize("d", HBT_DIRECTIONS, ids=lambda d: f"{d.param}->{d.kpi}")
def test_hbt_direction_holds(measured, d):
    m = measured[(d.param, d.kpi)]
    assert m.holds, (f"{d.param} {d.low}->{d.high} from {d.base} in {d.scenario}: {d.kpi} differences "
                     f"{[round(x, 4) for x in m.diffs]}, p = {m.p:.3g}, expected sign {d.sign}")


def test_hbt_rows_are_the_embedded_table():
    """Same (parameter, KPI, direction) rows as the embedded engine's table, in its order; only the
    point they are measured at may differ."""
    assert [(d.param, d.kpi, d.sign, d.primary) for d in HBT_DIRECTIONS] == \
        [(d.param, d.kpi, d.sign, d.primary) for d in DIRECTIONS]
    assert all(d.base in ("best_cell", "bad") for d in HBT_DIRECTIONS)


def test_calibration_seeds_are_refused():
    from soaklib.bench.directions import main

    seed = min(calibration.market_seeds(calibration.HBT_CALIBRATION_RUN_SEEDS))
    assert main(["--engine", "hbt", "--seeds", "1", "--first-seed", str(seed)]) == 2


def test_doc_shows_every_hbt_row_as_measured():
    """The doc's hbt section is the command's output for the current rows (parameter, range, KPI,
    sign, profile, scenario); its measured columns come from the command."""
    text = DOC.read_text("utf-8")
    section = text.split("<!-- hbt-directions:start -->")[1].split("<!-- hbt-directions:end -->")[0]
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    assert len(rows) == len(HBT_DIRECTIONS)
    for r, d in zip(rows, HBT_DIRECTIONS):
        cells = [c.strip() for c in r.strip("|").split("|")]
        arrow = ("↑" if d.sign > 0 else "↓") + ("" if d.primary else " (side effect)")
        assert cells[:6] == [f"`{d.param}`", f"{d.low:g} → {d.high:g}", f"`{d.kpi}`", arrow, d.base, d.scenario], r
        assert re.fullmatch(r"yes|\*\*no\*\*", cells[-1]), r
