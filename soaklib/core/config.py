"""Configuration: defaults from ``defaults.toml`` (the one home of numbers) merged with a user TOML.

The effective configuration is checked against ``core/schemas/config.schema.json`` (every section and
key of the defaults: types, ranges, enums; unknown keys refused except in the open tables ``goals`` and
``params``), then by the cross-field rules of goals, the parameter registry and the sections
(``core/goals.py``, ``core/params.py``, ``core/sections.py``). Every mistake is one ConfigError naming
the file and the dotted key.
"""
from __future__ import annotations

import copy
import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from soaklib.core import io as _io
from soaklib.core.errors import ConfigError
from soaklib.core.goals import goals_from_config
from soaklib.core.params import registry_from_config
from soaklib.core.schema import check as check_schema
from soaklib.core.sections import validate_cross_sections, validate_sim_config, validate_tuning_config

MAX_TOML_BYTES = 1024 * 1024  # defaults.toml is ~15 kB; a config near a megabyte is a mistake
MAX_TOML_DEPTH = 32  # a config nests ~4 levels (tables, inline tables, arrays)
# strings and comments (where brackets do not nest), removed before the depth count
_TOML_STRINGS_AND_COMMENTS = re.compile("|".join((
    r"'''.*?'''",                     # multi-line literal string
    r'"""(?:[^"\\]|\\.|"(?!""))*"""',  # multi-line basic string
    r'"(?:[^"\\\n]|\\.)*"',            # basic string
    r"'[^'\n]*'",                      # literal string
    r"#[^\n]*",                         # comment
)), re.S)

if TYPE_CHECKING:  # annotation only: the Run module imports pandas, a config load must stay cheap
    from soaklib.core.run import Run


# -- the sections (shapes pinned by the schema; keys as in defaults.toml) ---------------------------

class RunSection(TypedDict):
    iterations: int
    duration_s: float
    scenario: str
    profile: str
    seed: int
    on_failure: Literal["continue", "stop"]
    iteration_timeout_s: float
    max_failed_iterations: int


class GoalSpec(TypedDict, total=False):
    agg: Literal["mean", "median", "min", "max", "last"]
    op: Literal[">=", "<=", ">", "<"]
    hard: float
    soft: float | None


class ReportSection(TypedDict):
    last_n: int
    kernel: str
    cell_timeout_s: float
    figure_dpi: int
    figure_width_in: float
    example_iterations: int
    example_duration_s: float


class SnapshotSection(TypedDict):
    metrics: list[str]
    trend_flat_rel: float
    trend_abs_floor: float
    trend_max_points: int
    anomaly_guard_count: int
    round_digits: int


class VerifySection(TypedDict):
    threshold: float
    abs_tolerance: float


class GuardsSection(TypedDict):
    velocity_max_frac_per_iter: float
    velocity_max_frac_per_window: float
    velocity_window: int
    cooldown_large_frac: float
    cooldown_iters: int
    oscillation_window: int
    oscillation_freeze_iters: int
    steady_state_iters: int


class RuntimeGuardsSection(TypedDict):
    latency_soft_ms: float
    latency_hard_ms: float
    latency_spread_add_bps: float
    freeze_open_after_ms: float
    freeze_close_after_ms: float
    freeze_min_duration_ms: float
    p95_window_ms: float


class CanarySection(TypedDict):
    maker_taker_min: float
    maker_taker_for: str
    p95_latency_max_ms: float
    p95_latency_for: str
    risk_max: float
    risk_for: str
    net_bps_min: float
    net_bps_for: str


class BundleSection(TypedDict):
    phase_traffic_pct: list[float]
    phase_duration: list[str]
    phase_fraction: list[float]
    alert_severity: str
    absent_for: str
    phase_spread_widen: list[float]
    warning_for: str
    hmean_window: str
    alert_selector: str
    runbook_base_url: str
    repository_url: str
    version_prefix: str
    bot_overrides_path: str


class ReadinessSection(TypedDict):
    max_failed_share: float


class ExternalSection(TypedDict):
    stderr_tail_chars: int
    term_grace_s: float


class SeedSection(TypedDict):
    max_iteration_number: int


class MetricsSection(TypedDict):
    hmean_window: int
    push_timeout_s: float
    job: str


class ParamSpec(TypedDict, total=False):
    default: float
    min: float
    max: float
    step: float
    kind: Literal["int", "float"]
    unit: str
    subsystem: Literal["rebid", "rescue_taker", "edge", "risk"]
    path: str
    hot: bool
    doc: str


class Config(TypedDict):
    """The effective configuration (a plain nested dict; snapshotted into run.json as is).

    ``recommend`` (levers per KPI), ``tuner`` (rule constants and ``*_deltas`` tables) and ``sim``
    have many keys; their shapes are in the schema and defaults.toml."""

    run: RunSection
    goals: dict[str, GoalSpec]
    report: ReportSection
    snapshot: SnapshotSection
    recommend: dict[str, Any]
    verify: VerifySection
    tuner: dict[str, Any]
    guards: GuardsSection
    runtime_guards: RuntimeGuardsSection
    canary: CanarySection
    bundle: BundleSection
    external: ExternalSection
    seed: SeedSection
    metrics: MetricsSection
    readiness: ReadinessSection
    params: dict[str, ParamSpec]
    sim: dict[str, Any]


# -- loading ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _defaults() -> Config:
    text = resources.files("soaklib.core").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)  # type: ignore[return-value]


def defaults() -> Config:
    """A fresh copy of the built-in defaults."""
    return copy.deepcopy(_defaults())


def read_toml(p: Path) -> dict[str, Any]:
    """A user TOML file, strictly: a regular file (never blocks on a FIFO) within the size limit, UTF-8
    (a BOM is accepted with a logged warning), nesting at most ``MAX_TOML_DEPTH`` deep (tomllib recurses
    per level), integers within TOML's 64 bits. ConfigError naming the file (and the key) otherwise."""
    raw = _io.strip_bom(_io.read_bytes(p, max_bytes=MAX_TOML_BYTES, what="a TOML config file", error=ConfigError), p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config: not valid UTF-8 (byte {exc.start})", path=p) from None
    if _io.nesting_exceeds(_TOML_STRINGS_AND_COMMENTS.sub("", text), MAX_TOML_DEPTH):
        raise ConfigError(f"invalid TOML: arrays/tables nested deeper than {MAX_TOML_DEPTH} levels", path=p)
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=p) from None
    _check_ints(user, p, "")
    return user


def _check_ints(node: Any, p: Path, dotted: str) -> None:
    # TOML integers are 64-bit (spec); tomllib returns any size, and a 400-digit one overflows later
    if isinstance(node, dict):
        for k, v in node.items():
            _check_ints(v, p, f"{dotted}.{k}" if dotted else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_ints(v, p, f"{dotted}.{i}")
    elif isinstance(node, int) and not isinstance(node, bool) and not -2**63 <= node < 2**63:
        raise ConfigError(f"expected a 64-bit integer, got one of {len(str(abs(node)))} digits", path=p, field=dotted)


def _replace_whole(dotted: str) -> bool:
    """Tables a user file replaces rather than merges: a tuner rule's parameter→delta map, so a rule
    can move other registry parameters or drop one (names are checked by validate_tuning_config)."""
    return dotted.startswith("tuner.") and dotted.endswith("_deltas")


def _merge(base: dict, over: dict, path: str = "") -> None:
    """``over`` into ``base``, table by table. Values are not checked here (the schema does that,
    naming the key); a whole number given for a float default becomes a float, as TOML readers expect."""
    for key, val in over.items():
        dotted = f"{path}.{key}" if path else key
        cur = base.get(key)
        if isinstance(cur, dict) and isinstance(val, dict) and not _replace_whole(dotted):
            _merge(cur, val, dotted)
        elif isinstance(cur, float) and isinstance(val, int) and not isinstance(val, bool):
            base[key] = float(val)
        else:
            base[key] = val


def _check_schema(cfg: Any, src: object) -> None:
    check_schema("config", cfg, path=src, error=ConfigError, finite=True, what="the config schema")


def load_config(path: str | Path | None = None, *, overrides: dict | None = None) -> Config:
    """Effective configuration: defaults, then the TOML file at ``path``, then ``overrides``.

    Returns a plain nested dict (it is snapshotted into run.json as is), checked against the config
    schema and the cross-field rules so every consumer can trust it.
    """
    cfg = defaults()
    if path is not None:
        p = Path(path)
        user = read_toml(p)
        _merge(cfg, user)  # type: ignore[arg-type]
        _check_schema(cfg, p)
    if overrides:
        _merge(cfg, overrides)  # type: ignore[arg-type]
        _check_schema(cfg, "<overrides>")
    validate_config(cfg, path)
    return cfg


def validate_config(cfg: Config, src: str | Path | None = None) -> None:
    """The schema, then the cross-field rules (goals, registry, tuner/guards, simulator sections)."""
    where = src if src is not None else "<config>"
    _check_schema(cfg, where)
    goals_from_config(cfg, src=where)
    registry_from_config(cfg, src=where)
    validate_tuning_config(cfg, src=where)
    validate_sim_config(cfg, src=where)
    validate_cross_sections(cfg, src=where)


def run_config(run: Run, path: str | Path | None = None) -> Config:
    """The configuration every command judges ``run`` with: ``path`` when given, else the config
    the run was made with (its manifest snapshot, over today's defaults), else the defaults.

    One rule for gate, verify, report, bundle and metrics, so they never disagree about a run.
    """
    if path is not None:
        return load_config(path)
    snap = run.manifest.get("config")
    if not isinstance(snap, dict):
        return load_config()
    cfg = defaults()
    _merge(cfg, snap)  # type: ignore[arg-type]
    validate_config(cfg, run.manifest_path)
    return cfg
