"""The config schema (core/schemas/config.schema.json): it describes every key of defaults.toml, and
a wrong type, range or unknown key in any section is one ConfigError naming the file and the key."""
from __future__ import annotations

import copy

import pytest

from soaklib.core import goals, schema
from soaklib.core.config import defaults, load_config, validate_config
from soaklib.core.errors import ConfigError

SCHEMA = schema.load("config")


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        dotted = f"{prefix}{k}"
        if isinstance(v, dict) and not dotted.startswith(("goals.", "params.")) and not k.endswith("_deltas"):
            yield from _leaves(v, dotted + ".")
        else:
            yield dotted, v


def _node(dotted: str) -> dict:
    node = SCHEMA
    for part in dotted.split("."):
        props = node.get("properties", {})
        node = props[part] if part in props else node["additionalProperties"]
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].split("/")[-1]]
    return node


def test_schema_describes_every_key_of_the_defaults():
    d = defaults()
    assert set(SCHEMA["properties"]) == set(d) and SCHEMA["additionalProperties"] is False
    for dotted, _ in _leaves(d):
        assert _node(dotted), dotted
    # every closed section lists exactly the default keys and refuses others
    for sec, node in SCHEMA["properties"].items():
        if sec in ("goals", "params"):
            assert isinstance(node["additionalProperties"], dict), sec  # open tables of one shape
        else:
            assert set(node["properties"]) == set(d[sec]) and node["additionalProperties"] is False, sec


def test_defaults_validate_and_goal_vocabulary_matches_the_code():
    validate_config(defaults())
    goal = SCHEMA["$defs"]["goal"]["properties"]
    assert tuple(goal["agg"]["enum"]) == goals.AGGS and tuple(goal["op"]["enum"]) == tuple(goals.OPS)


# one wrong value per section: (toml, the field the one-line error names)
BAD = [
    ("[run]\niterations = 0\n", "run.iterations"),
    ("[run]\non_failure = \"retry\"\n", "run.on_failure"),
    ("[run]\nseed = \"x\"\n", "run.seed"),
    ("[goals.net_bps]\nagg = \"avg\"\n", "goals.net_bps.agg"),
    ("[goals.fill_rate]\nop = \">=\"\nhard = 1.0\n", "goals.fill_rate.agg"),
    ("[report]\nlast_n = 0\n", "report.last_n"),
    ("[snapshot]\nmetrics = []\n", "snapshot.metrics"),
    ("[recommend]\nnet_bps = [\"widen\"]\n", "recommend.net_bps.0"),
    ("[verify]\nthreshold = 1.5\n", "verify.threshold"),
    ("[tuner]\nrisk_moderate = \"high\"\n", "tuner.risk_moderate"),
    ("[tuner]\nbogus = 1\n", "tuner.bogus"),
    ("[guards]\ncooldown_iters = -1\n", "guards.cooldown_iters"),
    ("[runtime_guards]\np95_window_ms = 0.0\n", "runtime_guards.p95_window_ms"),
    ("[canary]\nrisk_for = \"soon\"\n", "canary.risk_for"),
    ("[bundle]\nphase_fraction = [0.5, 2.0]\n", "bundle.phase_fraction.1"),
    ("[external]\nterm_grace_s = -1.0\n", "external.term_grace_s"),
    ("[seed]\nmax_iteration_number = 0\n", "seed.max_iteration_number"),
    ("[metrics]\njob = \"\"\n", "metrics.job"),
    ("[params.tail_age_ms]\nkind = \"long\"\n", "params.tail_age_ms.kind"),
    ("[sim]\nlatency_sigma = 4.0\n", "sim.latency_sigma"),
    ("[sim]\nruntime_guards = 1\n", "sim.runtime_guards"),
    ("[sim]\ntick = nan\n", "sim.tick"),
    ("[nosuch]\nx = 1\n", "nosuch"),
    ("run = 5\n", "run"),
]


@pytest.mark.parametrize("toml, field", BAD)
def test_a_mistake_in_any_section_is_one_error_naming_file_and_key(tmp_path, toml, field):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    assert ei.value.field == field and ei.value.path == f
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{f}: field '{field}': ")


def test_the_cli_prints_one_line(tmp_path):
    from helpers import assert_config_refused

    assert_config_refused(tmp_path, "[guards]\nvelocity_window = 1.5\n", "guards.velocity_window")


def test_messages_say_what_was_expected(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[verify]\nthreshold = 1.5\n")
    with pytest.raises(ConfigError, match=r"expected a number in \[0, 1\], got 1.5"):
        load_config(f)
    f.write_text("[tuner]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown key, expected one of: .*risk_moderate"):
        load_config(f)
    f.write_text("[run]\non_failure = \"retry\"\n")
    with pytest.raises(ConfigError, match='expected one of "continue", "stop", got "retry"'):
        load_config(f)


def test_overrides_are_checked_and_named():
    with pytest.raises(ConfigError) as ei:
        load_config(overrides={"run": {"iterations": -3}})
    assert ei.value.field == "run.iterations" and ei.value.path == "<overrides>"


def test_whole_numbers_for_float_keys_become_floats_and_open_tables_accept_new_entries(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[run]\nduration_s = 600\n[goals.cancel_ratio]\nagg = \"mean\"\nop = \"<=\"\nhard = 0.5\n")
    cfg = load_config(f)
    assert cfg["run"]["duration_s"] == 600.0 and isinstance(cfg["run"]["duration_s"], float)
    assert cfg["goals"]["cancel_ratio"] == {"agg": "mean", "op": "<=", "hard": 0.5}


def test_cross_field_rules_stay_in_code():
    cfg = copy.deepcopy(defaults())
    cfg["goals"]["net_bps"]["soft"] = 2.0  # looser than hard for >=: schema-valid, refused by goals
    with pytest.raises(ConfigError) as ei:
        validate_config(cfg, "x.toml")
    assert ei.value.field == "goals.net_bps.soft"
    cfg = copy.deepcopy(defaults())
    cfg["sim"]["tick"] = 150.0  # > mid0
    with pytest.raises(ConfigError) as ei:
        validate_config(cfg)
    assert ei.value.field == "sim.tick"


def test_default_goals_are_the_kpi_tables_goal_kpis():
    from soaklib.core.kpis import KPIS

    table = {k.name: k.goal_agg for k in KPIS if k.goal_agg}
    assert {name: g["agg"] for name, g in defaults()["goals"].items()} == table
    assert all(k.seed_goal_key for k in KPIS if k.goal_agg)
