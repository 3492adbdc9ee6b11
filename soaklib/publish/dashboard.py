"""Grafana dashboard of a release bundle (``grafana_dashboard.json``), built with grafana-foundation-sdk.

It watches the series the canary rules watch, through the same label selector (``--selector`` or
``[bundle] alert_selector``) narrowed by the dashboard variables ``$job`` and ``$instance``:

- one panel per gate goal whose KPI has a Prometheus gauge, its thresholds the goal's hard and soft
  values (``[goals]``, the numbers the gate, the canary phases and the warning-tier alerts use) in the
  gauge's base units;
- the other exported KPIs grouped by unit;
- a panel per registry parameter (``soak_param_value``) with the registry's bounds;
- guard activity (runtime guards in the strategy, tuning guards between iterations, blocked orders);
- the state of the bundle's canary alerts (``ALERTS`` of the shipped rules).

Every target is a plain PromQL expression whose only Grafana variables are ``$job`` and ``$instance``
(no ``$__rate_interval`` and the like), so a test can run each one against a real Prometheus.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat as gstat
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as mdash

from soaklib.core import io as _io
from soaklib.core.goals import Goal, goals_from_config
from soaklib.core.kpis import KPI, PROM_KPIS, Kpi
from soaklib.core.params import registry

DASHBOARD = "grafana_dashboard.json"
UID = "soaklib-canary"
VARIABLES = ("job", "instance")  # label -> dashboard variable of the same name
ALL_VALUE = ".*"  # what "All" stands for in the =~ matchers (Grafana inserts a custom all value unescaped)
# the dashboard's datasource is chosen on import (a datasource variable), never a uid of this machine
DATASOURCE = mdash.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana units of the exported gauges' base units (KPI unit -> Grafana unit id)
UNITS = {"bps": "none", "ms": "s", "ratio": "percentunit", "quote": "none"}
UNIT_TITLES = {"bps": "Edge, basis points", "ms": "Latency and order age", "ratio": "Ratios",
               "quote": "PnL and drawdown, quote currency"}
PARAM_UNITS = {"ms": "ms", "ratio": "none", "bps": "none"}
RED, YELLOW, GREEN = "red", "yellow", "green"
WIDTH = 24


def _matchers(matchers: Sequence[tuple[str, str, str]]) -> list[str]:
    """The selector's matchers (as the rules have them) plus ``label=~"$label"`` per variable."""
    return [f'{k}{op}"{v}"' for k, op, v in matchers] + [f'{v}=~"${v}"' for v in VARIABLES]


def _sel(matchers: Sequence[tuple[str, str, str]], extra: str = "") -> str:
    parts = _matchers(matchers) + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}"


def goal_thresholds(goal: Goal, scale: float) -> list[dict[str, Any]]:
    """Grafana threshold steps (value = the step's lower edge, None = -inf) of a goal in base units:
    FAIL past ``hard`` red, WARN between ``hard`` and ``soft`` yellow, PASS green."""
    hard = round(goal.hard * scale, 12)
    soft = None if goal.soft is None else round(goal.soft * scale, 12)
    if goal.op in (">=", ">"):  # higher is better
        steps = [(None, RED), (hard, YELLOW if soft is not None and soft != hard else GREEN)]
        if soft is not None and soft != hard:
            steps.append((soft, GREEN))
    else:
        steps = [(None, GREEN)]
        if soft is not None and soft != hard:
            steps.append((soft, YELLOW))
        steps.append((hard, RED))
    return [{"value": v, "color": c} for v, c in steps]


def _thresholds(steps: list[dict[str, Any]]) -> gdash.ThresholdsConfig:
    return (gdash.ThresholdsConfig().mode(mdash.ThresholdsMode.ABSOLUTE)
            .steps([mdash.Threshold(value=s["value"], color=s["color"]) for s in steps]))


def _query(expr: str, legend: str, ref: str) -> gprom.Dataquery:
    return gprom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range().datasource(DATASOURCE)


def _refs(n: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else f"Q{i}" for i in range(n)]


def _timeseries(title: str, description: str, targets: list[tuple[str, str]], *, unit: str, h: int = 8,
                w: int = 12, thresholds: list[dict[str, Any]] | None = None, lo: float | None = None,
                hi: float | None = None, stacked: bool = False) -> gts.Panel:
    p = (gts.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).height(h).span(w)
         .line_width(1).fill_opacity(10 if not stacked else 60).show_points(mcommon.VisibilityMode.AUTO)
         .span_nulls(False).legend(gcommon.VizLegendOptions().display_mode(mcommon.LegendDisplayMode.LIST)
                                   .placement(mcommon.LegendPlacement.BOTTOM).show_legend(True)))
    for (expr, legend), ref in zip(targets, _refs(len(targets))):
        p = p.with_target(_query(expr, legend, ref))
    if thresholds is not None:
        p = (p.thresholds(_thresholds(thresholds))
             .thresholds_style(gcommon.GraphThresholdsStyleConfig().mode(mcommon.GraphThresholdsStyleMode.DASHED)))
    if lo is not None:
        p = p.min(lo)
    if hi is not None:
        p = p.max(hi)
    if stacked:
        p = p.draw_style(mcommon.GraphDrawStyle.BARS).stacking(
            gcommon.StackingConfig().mode(mcommon.StackingMode.NORMAL))
    return p


def _goal_panel(goal: Goal, kpi: Kpi, sel: str) -> gts.Panel:
    thr = goal_thresholds(goal, kpi.prom_scale)
    soft = "" if goal.soft is None else f", soft {goal.soft:g}"
    desc = (f"{kpi.prom_name}: {kpi.prom_help}. Gate goal: {goal.agg} over the window {goal.op} {goal.hard:g} "
            f"{kpi.unit}{soft} ([goals.{goal.kpi}]); red = FAIL (roll back), yellow = WARN (hold).")
    targets = [(f"{kpi.prom_name}{sel}", "{{instance}}")]
    if goal.kpi == "maker_taker_ratio":  # the exporter's harmonic mean over the last ok iterations
        targets.append((f"soak_maker_taker_ratio_hmean{sel}", "hmean of {{window}} iterations, {{instance}}"))
    return _timeseries(f"{goal.kpi} (goal {goal.op} {goal.hard:g})", desc, targets, unit=UNITS.get(kpi.unit, "none"),
                       thresholds=thr, lo=0 if kpi.bounded or kpi.nonneg else None, hi=1 if kpi.bounded else None)


def _stat(title: str, description: str, expr: str, legend: str, *, unit: str = "none", w: int = 6,
          thresholds: list[dict[str, Any]] | None = None) -> gstat.Panel:
    p = (gstat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).height(4).span(w)
         .with_target(_query(expr, legend, "A"))
         .color_mode(mcommon.BigValueColorMode.BACKGROUND).graph_mode(mcommon.BigValueGraphMode.NONE)
         .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if thresholds is not None:
        p = p.thresholds(_thresholds(thresholds))
    return p


def panel_targets(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every target of every panel (rows included) of a dashboard JSON."""
    out = []

    def walk(panels):
        for p in panels or []:
            for t in p.get("targets") or []:
                out.append((p.get("title", ""), t.get("refId", ""), t.get("expr", "")))
            walk(p.get("panels"))

    walk(doc.get("panels"))
    return out


def build_dashboard(cfg: Mapping[str, Any], *, version: str, matchers: Sequence[tuple[str, str, str]],
                    alerts: Sequence[str]) -> dict[str, Any]:
    """The dashboard as plain JSON data. ``matchers``: the parsed alert selector (``bundle.parse_selector``);
    ``alerts``: the names of the shipped alert rules (their ``ALERTS`` series)."""
    sel = _sel(matchers)
    goals = [g for g in goals_from_config(cfg) if g.kpi in KPI and KPI[g.kpi].prom_name]
    goal_kpis = {g.kpi for g in goals}
    reg = registry(cfg)

    d = (gdash.Dashboard(f"soak canary {version}").uid(UID).tags(["soaklib", "canary", "release"])
         .description(f"Release {version}: the soak_* series the canary rules watch, with the gate's goals, the "
                      "tuned parameters, guard activity and the canary alerts (generated by soak bundle).")
         .time("now-6h", "now").refresh("30s").timezone("utc").editable()
         .tooltip(mdash.DashboardCursorSync.CROSSHAIR))
    d = d.with_variable(gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    for i, var in enumerate(VARIABLES):
        # each variable lists the values present under the selector and the variables before it
        scope = "{" + ",".join([f'{k}{op}"{v}"' for k, op, v in matchers]
                               + [f'{x}=~"${x}"' for x in VARIABLES[:i]]) + "}"
        d = d.with_variable(
            gdash.QueryVariable(var).label(var).datasource(DATASOURCE)
            .query(f"label_values(soak_iterations_total{scope}, {var})")
            .refresh(mdash.VariableRefresh.ON_DASHBOARD_LOAD).sort(mdash.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(ALL_VALUE)
            .current(mdash.VariableOption(selected=True, text="All", value="$__all")))

    # ---- overview
    d = d.with_row(gdash.Row("Run"))
    d = d.with_panel(_stat("Last iteration verdict", "KPI verdict of the last ok iteration against [goals]",
                           f"soak_iteration_kpi_verdict{sel} == 1", "{{verdict}}", w=6))
    d = d.with_panel(_stat("Iterations", "iterations completed (ok and failed)", f"soak_iterations_total{sel}",
                           "{{instance}}", w=6))
    d = d.with_panel(_stat("Failed iterations", "iterations that failed", f"soak_failed_iterations_total{sel}",
                           "{{instance}}", w=6, thresholds=[{"value": None, "color": GREEN},
                                                            {"value": 1, "color": RED}]))
    d = d.with_panel(_stat("Maker share", "maker share of the last ok iteration's fills",
                           f"soak_maker_share_ratio{sel}", "{{instance}}", unit="percentunit", w=6))

    # ---- KPIs against the gate's goals
    d = d.with_row(gdash.Row("KPIs against the gate's goals"))
    for g in goals:
        d = d.with_panel(_goal_panel(g, KPI[g.kpi], sel))

    # ---- the other exported KPIs, one panel per unit
    d = d.with_row(gdash.Row("Other KPIs"))
    by_unit: dict[str, list[Kpi]] = {}
    for k in PROM_KPIS:
        if k.name not in goal_kpis:
            by_unit.setdefault(k.unit, []).append(k)
    for unit, kpis in by_unit.items():
        d = d.with_panel(_timeseries(UNIT_TITLES.get(unit, unit), "; ".join(f"{k.prom_name}: {k.prom_help}"
                                                                            for k in kpis),
                                     [(f"{k.prom_name}{sel}", f"{k.name} {{{{instance}}}}") for k in kpis],
                                     unit=UNITS.get(unit, "none")))
    d = d.with_panel(_timeseries("Fills by liquidity", "fills over the run (soak_fills_total), by maker/taker",
                                 [(f"sum by (job, instance, liquidity) (soak_fills_total{sel})",
                                   "{{liquidity}} {{instance}}")], unit="none"))

    # ---- parameters
    d = d.with_row(gdash.Row("Parameters"))
    for name in reg:
        p = reg[name]
        psel = _sel(matchers, 'param="' + name + '"')
        d = d.with_panel(_timeseries(
            f"{name} ({p.unit})", f"{p.doc}; registry bounds [{p.min:g}, {p.max:g}] {p.unit}, subsystem {p.subsystem}",
            [(f"soak_param_value{psel}", "{{instance}}")],
            unit=PARAM_UNITS.get(p.unit, "none"), w=6, lo=p.min, hi=p.max))

    # ---- guards
    d = d.with_row(gdash.Row("Guards"))
    d = d.with_panel(_timeseries("Runtime guards (in the strategy)",
                                 "runtime guard flags at the end of the last iteration (1 = active)",
                                 [(f"soak_runtime_guard_active{sel}", "{{guard}} {{instance}}")], unit="none",
                                 lo=0, hi=1))
    d = d.with_panel(_timeseries("Latency guard spread add",
                                 "spread the latency buffer added in the last iteration, basis points",
                                 [(f"soak_latency_spread_add_ratio{sel} * 10000", "{{instance}}")], unit="none"))
    d = d.with_panel(_timeseries("Tuning guards (between iterations)",
                                 "tuning guard states after the last iteration (1 = active), frozen parameters",
                                 [(f"soak_tuning_guard_active{sel}", "{{guard}} {{instance}}"),
                                  (f"soak_param_frozen{sel}", "frozen {{param}} {{instance}}")],
                                 unit="none", lo=0, hi=1))
    d = d.with_panel(_timeseries("Blocked orders by reason", "orders blocked by the strategy's limits over the run",
                                 [(f"sum by (job, instance, reason) (soak_blocks_total{sel})",
                                   "{{reason}} {{instance}}")], unit="none"))

    # ---- canary alerts
    d = d.with_row(gdash.Row("Canary alerts"))
    asel = _sel(matchers, 'alertname=~"' + "|".join(sorted(alerts)) + '"')
    d = d.with_panel(_timeseries(
        "Canary alerts (pending and firing)",
        "ALERTS of the bundle's rules (canary_alerts.rules.yml): critical = roll back now, warning = hold; "
        "see CANARY_CHECKLIST.md", [(f"ALERTS{asel}",
                                     "{{alertname}} {{alertstate}} ({{severity}})")],
        unit="none", w=WIDTH, lo=0, hi=1))

    doc = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    for i, p in enumerate(doc["panels"], 1):  # Grafana keys panel state (links, edits) by a unique id
        p["id"] = i
    return doc


def dashboard_json(cfg: Mapping[str, Any], *, version: str, matchers: Sequence[tuple[str, str, str]],
                   alerts: Sequence[str]) -> str:
    """``grafana_dashboard.json`` as written into the bundle (sorted keys: same input, same bytes)."""
    return _io.dumps(build_dashboard(cfg, version=version, matchers=matchers, alerts=alerts)) + "\n"
