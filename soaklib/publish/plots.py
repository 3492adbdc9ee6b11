"""Charts for the report notebooks. Each function returns a matplotlib Figure and writes no files.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state), at a fixed size and dpi
from ``[report]`` so the rendered HTML stays small; ``reports`` turns them into PNG once. Titles are
placed at ``y=1.0`` explicitly: the same place matplotlib would pick (no axis here has top ticks),
without it measuring every tick label at each draw to decide.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from soaklib.judge.recommend import better

_GUARD_COLOURS = {
    "bounds": "#7f7f7f", "velocity": "#d62728", "cooldown": "#1f77b4", "oscillation": "#9467bd",
    "frozen": "#17becf", "steady_state": "#2ca02c", "last_iteration": "#bcbd22",
}


def _fig(cfg: Mapping[str, Any], rows: int = 1, cols: int = 1, height_per_row: float = 2.6):
    rep = cfg["report"]
    # a bare Figure (no pyplot): no global state, nothing auto-shown twice, cheaper to import
    fig = Figure(figsize=(float(rep["figure_width_in"]), height_per_row * rows), dpi=float(rep["figure_dpi"]))
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _hide_unused(axes, used: int, rows: int, cols: int) -> None:
    """Blank the grid cells after the first ``used`` (a grid is filled row by row)."""
    for k in range(used, rows * cols):
        axes[k // cols][k % cols].axis("off")


def _layout(fig) -> None:
    # fixed margins: tight_layout measures every text artist and costs ~0.2 s per figure
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.9, wspace=0.22, hspace=0.45)


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(np.nan, index=df.index)


def _message(cfg, text: str):
    fig, ax = _fig(cfg, 1, 1, 1.0)
    ax[0][0].axis("off")
    ax[0][0].text(0.5, 0.5, text, ha="center", va="center")
    return fig


def _shade_window(ax, window: Sequence[int]) -> None:
    if window:
        ax.axvspan(min(window) - 0.5, max(window) + 0.5, color="#f2f2f2", zorder=0, label="last-N window")


def kpi_trends(iterations: pd.DataFrame, goals: Mapping[str, Mapping[str, Any]], window: Sequence[int],
               cfg: Mapping[str, Any]):
    """One panel per goal KPI over the iterations, with its hard (and soft) goal line."""
    names = [g for g in goals if g in iterations.columns]
    if not names or iterations.empty:
        return _message(cfg, "no goal KPIs in this run")
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = _fig(cfg, rows, cols)
    x = iterations.index.to_numpy()
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        g = goals[name]
        _shade_window(ax, window)
        ax.plot(x, _num(iterations, name).to_numpy(), marker="o", ms=3, lw=1.2, color="#1f77b4", label=name)
        ax.axhline(float(g["hard"]), color="#d62728", ls="--", lw=1, label=f"goal {g['op']} {g['hard']} ({g['agg']})")
        if g.get("soft") is not None:
            ax.axhline(float(g["soft"]), color="#ff7f0e", ls=":", lw=1, label=f"soft {g['soft']}")
        ax.set_title(name, fontsize=9, y=1.0)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    _hide_unused(axes, len(names), rows, cols)
    _layout(fig)
    return fig


PNL_PARTS = ("gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps")


def pnl_decomposition(iterations: pd.DataFrame, cfg: Mapping[str, Any]):
    """Per iteration: the bps components as the runner reported them (fees drawn as a cost) and net."""
    parts = [p for p in PNL_PARTS if p in iterations.columns]
    if not parts or iterations.empty:
        return _message(cfg, "no PnL components in this run")
    fig, axes = _fig(cfg, 2, 1)
    ax = axes[0][0]
    x = iterations.index.to_numpy()
    pos = np.zeros(len(x))
    neg = np.zeros(len(x))
    for p in parts:
        v = _num(iterations, p).fillna(0.0).to_numpy()
        if p == "fees_eff_bps":
            v = -np.abs(v)
        base = np.where(v >= 0, pos, neg)
        ax.bar(x, v, bottom=base, width=0.8, label=p if p != "fees_eff_bps" else "-fees_eff_bps")
        pos = pos + np.where(v >= 0, v, 0)
        neg = neg + np.where(v < 0, v, 0)
    if "net_bps" in iterations.columns:
        ax.plot(x, _num(iterations, "net_bps").to_numpy(), color="black", marker="o", ms=3, label="net_bps")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title("PnL decomposition (bps)", fontsize=9, y=1.0)
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    ax.tick_params(labelsize=7)
    ax2 = axes[1][0]
    if "pnl_quote" in iterations.columns:
        ax2.plot(x, _num(iterations, "pnl_quote").fillna(0.0).cumsum().to_numpy(), label="cumulative pnl_quote")
    if "drawdown_quote" in iterations.columns:
        ax2.bar(x, -_num(iterations, "drawdown_quote").fillna(0.0).to_numpy(), color="#d62728", alpha=0.5,
                label="-drawdown_quote")
    ax2.set_title("PnL (quote)", fontsize=9, y=1.0)
    ax2.legend(fontsize=6, loc="upper left")
    ax2.tick_params(labelsize=7)
    _layout(fig)
    return fig


def latency(iterations: pd.DataFrame, goals: Mapping[str, Mapping[str, Any]], cfg: Mapping[str, Any]):
    """p50/p95/p99 latency per iteration with the p95 goal line."""
    cols = [c for c in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms") if c in iterations.columns]
    if not cols or iterations.empty:
        return _message(cfg, "no latency figures in this run")
    fig, axes = _fig(cfg)
    ax = axes[0][0]
    x = iterations.index.to_numpy()
    for c in cols:
        ax.plot(x, _num(iterations, c).to_numpy(), marker=".", label=c)
    g = goals.get("p95_latency_ms")
    if g:
        ax.axhline(float(g["hard"]), color="#d62728", ls="--", lw=1, label=f"p95 goal {g['op']} {g['hard']}")
    ax.set_title("latency (ms)", fontsize=9, y=1.0)
    ax.legend(fontsize=6, loc="upper left")
    ax.tick_params(labelsize=7)
    _layout(fig)
    return fig


def inventory(iterations: pd.DataFrame, cfg: Mapping[str, Any]):
    """Inventory utilisation and inventory PnL per iteration."""
    have = [c for c in ("inventory_utilisation", "inventory_bps") if c in iterations.columns]
    if not have or iterations.empty:
        return _message(cfg, "no inventory figures in this run")
    fig, axes = _fig(cfg, 1, len(have))
    x = iterations.index.to_numpy()
    for k, c in enumerate(have):
        ax = axes[0][k]
        ax.plot(x, _num(iterations, c).to_numpy(), marker=".", color="#2ca02c")
        ax.set_title(c, fontsize=9, y=1.0)
        ax.tick_params(labelsize=7)
    _layout(fig)
    return fig


def block_reasons(blocks: pd.DataFrame, cfg: Mapping[str, Any]):
    """Stacked bars of order-block reasons per iteration."""
    num = blocks.apply(pd.to_numeric, errors="coerce").fillna(0.0) if not blocks.empty else blocks
    num = num[[c for c in num.columns if c not in ("total", "allowed") and num[c].sum() > 0]] if not num.empty else num
    if num.empty or not len(num.columns):
        return _message(cfg, "no order blocks recorded")
    fig, axes = _fig(cfg)
    ax = axes[0][0]
    x = num.index.to_numpy()
    bottom = np.zeros(len(x))
    for c in num.columns:
        v = num[c].to_numpy(dtype=float)
        ax.bar(x, v, bottom=bottom, width=0.8, label=str(c))
        bottom += v
    ax.set_title("order blocks by reason", fontsize=9, y=1.0)
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    ax.tick_params(labelsize=7)
    _layout(fig)
    return fig


def param_trajectories(params: pd.DataFrame, decisions: pd.DataFrame, reg, cfg: Mapping[str, Any]):
    """Each parameter's value per iteration, its registry bounds, and guard events marked."""
    names = [p for p in params.columns if p in reg] if not params.empty else []
    if not names:
        return _message(cfg, "no parameter values recorded")
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = _fig(cfg, rows, cols, 2.0)
    x = params.index.to_numpy()
    ev = decisions
    if not ev.empty and {"guard", "verdict", "iteration", "param"} <= set(ev.columns):
        ev = ev[ev["guard"].notna() & ev["verdict"].isin(["clamped", "blocked"])]
    else:
        ev = ev.iloc[0:0] if not ev.empty else ev
    seen: set[str] = set()
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        p = reg[name]
        y = _num(params, name)
        ax.step(x, y.to_numpy(), where="post", color="#1f77b4", lw=1.2)
        ax.axhline(p.min, color="#7f7f7f", ls="--", lw=0.8)
        ax.axhline(p.max, color="#7f7f7f", ls="--", lw=0.8)
        if not ev.empty:
            mine = ev[ev["param"] == name]
            for guard, rows_g in mine.groupby("guard"):
                its = rows_g["iteration"].to_numpy()
                yy = y.reindex(its).to_numpy()
                lab = None if guard in seen else str(guard)
                seen.add(str(guard))
                ax.scatter(its, yy, marker="x", s=24, color=_GUARD_COLOURS.get(str(guard), "#e377c2"),
                           label=lab, zorder=3)
        ax.set_title(f"{name} [{p.min:g}, {p.max:g}] {p.unit}", fontsize=8, y=1.0)
        ax.tick_params(labelsize=6)
    _hide_unused(axes, len(names), rows, cols)
    if seen:
        fig.legend(fontsize=6, loc="lower right", title="guard events", title_fontsize=6)
    _layout(fig)
    return fig


def recommendation_chart(advice: Any, cfg: Mapping[str, Any]):
    """Bar chart: each candidate's change of each target goal's value against the baseline."""
    if advice.mode != "simulated" or not advice.candidates or not advice.targets:
        return None
    fig, axes = _fig(cfg, 1, len(advice.targets))
    for k, goal in enumerate(advice.targets):
        ax = axes[0][k]
        base = advice.baseline.goals[goal].get("value")
        vals = [(x.goals[goal].get("value") or np.nan) - (base or 0.0) for x in advice.candidates]
        ax.barh([x.label for x in advice.candidates], vals, color=["#2ca02c" if better(v, advice.goals[goal]["op"])
                                                                  else "#d62728" for v in vals])
        ax.axvline(0, color="black", lw=0.6)
        ax.set_title(f"Δ {goal} vs baseline", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


_CLASS_COLOURS = {"BETTER": "#2ca02c", "EQUIVALENT": "#1f77b4", "WORSE": "#d62728", "INCONCLUSIVE": "#ff7f0e"}


def paired_differences(diffs: pd.DataFrame, comparison: Any, cfg: Mapping[str, Any]):
    """One panel per compared KPI: candidate − baseline on each paired window (points), the
    Hodges–Lehmann estimate (line) and its interval (band, coloured by the KPI's class), ±margin
    (dashed) and zero. ``diffs``: ``compare.paired_frame``; ``comparison``: ``compare.Comparison``."""
    verdicts = {k.kpi: k for k in comparison.kpis if k.kind != "count"}
    names = [k for k in verdicts if k in set(diffs["kpi"])] if not diffs.empty else []
    if not names:
        return _message(cfg, "no paired windows with a value in both arms")
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = _fig(cfg, rows, cols)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        v = verdicts[name]
        d = diffs[diffs["kpi"] == name]
        colour = _CLASS_COLOURS.get(v.verdict, "#7f7f7f")
        x = d["pair"].to_numpy()
        ax.axhline(0.0, color="black", lw=0.6)
        if v.ci_low is not None and v.ci_high is not None:
            ax.axhspan(v.ci_low, v.ci_high, color=colour, alpha=0.2, lw=0,
                       label=f"interval [{v.ci_low:.3g}, {v.ci_high:.3g}]")
        if v.estimate is not None:
            ax.axhline(v.estimate, color=colour, lw=1.2, label=f"estimate {v.estimate:+.3g}")
        if v.margin:
            for m in (-v.margin, v.margin):
                ax.axhline(m, color="#7f7f7f", ls="--", lw=0.8)
        ax.plot(x, d["difference"].to_numpy(), "o", ms=3, color="#444444", label="window")
        better = "higher" if v.direction == "higher" else "lower"
        ax.set_title(f"{name}: {v.verdict} (n={v.n}; {better} is better, ±{v.margin:.3g})", fontsize=8, y=1.0)
        ax.set_xlabel("paired window", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    _hide_unused(axes, len(names), rows, cols)
    _layout(fig)
    return fig
