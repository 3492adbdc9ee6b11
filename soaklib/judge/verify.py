"""Delta verification (DESIGN §8, issue 4): did the tuner's changes actually land?

Per iteration pair n → n+1 and per registry parameter: expected = params(n) + tuning.deltas(n),
observed = params(n+1) (what the runner reports it ran with). Outcomes:

- ``full_apply``: a delta was applied (possibly guard-clamped) and observed == expected;
- ``guard_skipped``: a delta was proposed, a guard blocked it, and the value stayed (guard named);
- ``mismatch``: observed != expected (a runner that ignores a parameter, or a change nobody decided);
- ``missing``: the parameter is absent from the observed params (``delta_nested_miss_paths_total``);
- ``unchanged``: nothing proposed and nothing changed (checked, not counted in the ratio).

``full_apply_ratio`` = full ÷ (proposed − guard_skipped); 1.0 when that denominator is 0 (said so in
``ratio_note``). JSON and Markdown are rendered from the same ``VerifyReport`` (the Markdown by
``soaklib.publish.markdown.verify_markdown``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soaklib.core.io import display_path
from soaklib.core.numbers import finite
from soaklib.core.params import registry
from soaklib.core.run import Run


@dataclass
class VerifyReport:
    """One verification of one run; its JSON (``to_json``) and Markdown (``publish.markdown``) come from
    this same object."""

    run_path: str
    threshold: float
    pairs: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    full_apply_ratio: float = 1.0
    ratio_note: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def denominator(self) -> int:
        return self.counts["proposed"] - self.counts["guard_skipped"]

    @property
    def passed(self) -> bool:
        """Ratio at or above the threshold and no change that nobody decided."""
        return (bool(self.pairs) and self.full_apply_ratio >= self.threshold - 1e-12
                and self.counts["unexpected_changes"] == 0)

    @property
    def verdict(self) -> str:
        """PASS / FAIL, or INCONCLUSIVE when not one iteration pair could be checked (never a pass)."""
        if not self.pairs:
            return "INCONCLUSIVE"
        return "PASS" if self.passed else "FAIL"

    def to_json(self) -> dict[str, Any]:
        c = self.counts
        return {
            "schema_version": "1.0",
            "run": self.run_path,
            "threshold": self.threshold,
            "full_apply_ratio": round(self.full_apply_ratio, 6),
            "ratio_note": self.ratio_note,
            "verdict": self.verdict,
            # seed --json fields (reference §5.3), now true: partial_ok = guard skips, fail = mismatches
            "full_apply_count": c["full_apply"], "partial_ok_count": c["guard_skipped"],
            "fail_count": c["mismatch"] + c["missing"], "proposed_count": c["proposed"],
            "signature_stuck_count": c["signature_stuck"],
            "delta_nested_miss_paths_total": c["missing"],
            "counts": dict(c),
            "pairs": self.pairs,
            "warnings": list(self.warnings),
        }

    def pair_rows(self) -> list[dict[str, Any]]:
        """One summary row per checked pair: proposed keys, guards, whether the params matched, why."""
        rows = []
        for p in self.pairs:
            prop = [k["param"] for k in p["keys"] if k["proposed_delta"] is not None]
            bad = [k for k in p["keys"] if k["outcome"] in ("mismatch", "missing")]
            rows.append({"from": p["from"], "to": p["to"], "proposed": prop, "applied": p["applied"],
                         "guards": sorted({k["guard"] for k in p["keys"] if k["guard"]}),
                         "match": "N" if bad else ("Y" if prop else "N/A"),
                         "reason": "; ".join(f"{k['param']}: {k['outcome']}" for k in bad)
                         or ("full_apply" if prop else "no_deltas_proposed")})
        return rows

    def mismatches(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(pair, key) for every parameter that did not land (mismatch or missing)."""
        return [(p, k) for p in self.pairs for k in p["keys"] if k["outcome"] in ("mismatch", "missing")]


def verify_records(records: list[Mapping[str, Any]], cfg: Mapping[str, Any], *, run_path: str = "",
                   threshold: float | None = None) -> VerifyReport:
    """Verify consecutive record pairs (see module doc). ``records``: record dicts, any order."""
    reg = registry(cfg)
    abs_tol = float(cfg["verify"]["abs_tolerance"])
    thr = float(cfg["verify"]["threshold"] if threshold is None else threshold)
    rep = VerifyReport(run_path=run_path, threshold=thr)
    c = dict.fromkeys(("proposed", "full_apply", "guard_skipped", "mismatch", "missing", "unchanged",
                       "unexpected_changes", "signature_stuck", "pairs_skipped"), 0)
    recs = sorted((r for r in records if isinstance(r.get("iteration"), int)), key=lambda r: r["iteration"])
    by_it = {r["iteration"]: r for r in recs}
    for r in recs:
        n = r["iteration"]
        nxt = by_it.get(n + 1)
        if nxt is None:
            if n != recs[-1]["iteration"]:
                rep.warnings.append(f"iteration {n + 1} missing: pair {n} → {n + 1} not verified")
                c["pairs_skipped"] += 1
            continue
        if nxt.get("status") == "failed" or r.get("status") == "failed":
            # a failed iteration reports no params: there is nothing to compare, which is not a miss
            which = n + 1 if nxt.get("status") == "failed" else n
            rep.warnings.append(f"iteration {which} failed: pair {n} → {n + 1} not verified")
            c["pairs_skipped"] += 1
            continue
        before = r.get("params") if isinstance(r.get("params"), Mapping) else None
        after = nxt.get("params") if isinstance(nxt.get("params"), Mapping) else None
        t = r.get("tuning") if isinstance(r.get("tuning"), Mapping) else {}
        if before is None:
            rep.warnings.append(f"iteration {n} reports no params: pair {n} → {n + 1} not verified")
            c["pairs_skipped"] += 1
            continue
        deltas = t.get("deltas") or {}
        proposed = t.get("proposed_deltas") or {}
        dec_by = {d.get("param"): d for d in (t.get("decisions") or []) if isinstance(d, Mapping)}
        keys_out = []
        names = list(reg) + sorted(k for k in set(before) | set(deltas) | set(proposed) if k not in reg)
        for name in names:
            if name not in before and name not in deltas and name not in proposed:
                continue
            tol = (reg[name].tolerance if name in reg else 0.0) + abs_tol
            b = finite(before.get(name))
            d = finite(deltas.get(name)) or 0.0
            pd = finite(proposed.get(name))
            dec = dec_by.get(name) or {}
            guard = dec.get("guard")
            expected = None if b is None else b + d
            obs = None if after is None else finite(after.get(name))
            k = {"param": name, "before": b, "proposed_delta": pd, "delta": d if name in deltas else None,
                 "guard": guard, "expected": expected, "observed": obs}
            if pd is not None:
                c["proposed"] += 1
            if after is None or name not in after:
                k["outcome"], k["reason"] = "missing", "parameter not reported in the next iteration's params"
                c["missing"] += 1
            elif obs is None or expected is None:
                k["outcome"], k["reason"] = "mismatch", f"not a number: before={before.get(name)!r} after={after.get(name)!r}"
                c["mismatch"] += 1
            elif abs(obs - expected) <= tol:
                if pd is not None and name in deltas and d != 0:
                    k["outcome"] = "full_apply"
                    k["reason"] = "applied" + (f" (clamped by {guard})" if guard else "")
                    c["full_apply"] += 1
                elif pd is not None:
                    k["outcome"] = "guard_skipped"
                    k["reason"] = f"blocked by {guard or 'unknown guard'}"
                    c["guard_skipped"] += 1
                else:
                    k["outcome"], k["reason"] = "unchanged", "no delta, no change"
                    c["unchanged"] += 1
            else:
                k["outcome"] = "mismatch"
                if name in deltas and d != 0:
                    k["reason"] = (f"delta {d:+g} not applied: expected {expected:g}, observed {obs:g}"
                                   + (" (runner ignored it)" if abs(obs - b) <= tol else ""))
                else:
                    k["reason"] = f"changed without a delta: {b:g} -> {obs:g}"
                    c["unexpected_changes"] += 1
                c["mismatch"] += 1
            keys_out.append(k)
        # seed signature_stuck: deltas applied at n, yet n+1 ran with the same state (its old_hash = ours)
        t2 = nxt.get("tuning") if isinstance(nxt.get("tuning"), Mapping) else {}
        if deltas and t.get("applied") and t.get("old_hash") and t2.get("old_hash") == t.get("old_hash"):
            c["signature_stuck"] += 1
        rep.pairs.append({"from": n, "to": n + 1, "applied": bool(t.get("applied")), "keys": keys_out,
                          "skip_reason": t.get("skip_reason", ""), "next_status": nxt.get("status")})
    rep.counts = c
    den = c["proposed"] - c["guard_skipped"]
    if den <= 0:
        rep.full_apply_ratio = 1.0
        rep.ratio_note = ("no applied deltas to verify (proposed − guard_skipped = 0): ratio reported as 1.0; "
                          + ("unchanged parameters were still checked" if rep.pairs else
                             "no iteration pair could be checked at all (see warnings)"))
    else:
        rep.full_apply_ratio = c["full_apply"] / den
    return rep


def verify_run(run: Run, cfg: Mapping[str, Any], *, threshold: float | None = None) -> VerifyReport:
    """Verify a run opened with ``soaklib.store.loader.open_run``."""
    # the report names the run as the user would (never this machine's absolute path): it ships in bundles
    rep = verify_records(list(run.records), cfg, run_path=display_path(run.path), threshold=threshold)
    for gap in run.gaps:
        msg = f"iteration {gap} missing from the run"
        if msg not in rep.warnings:
            rep.warnings.append(msg)
    return rep
