"""The parameter registry (core/params.py): step rounding, bounds, nested paths, profiles."""
from __future__ import annotations

import copy

import pytest

from soaklib.core.config import defaults, load_config
from soaklib.core.errors import ConfigError, InputError
from soaklib.core.params import load_profile, registry, registry_from_config

REG = registry(load_config())


def test_round_clamp_normalise():
    p = REG["impact_cap_ratio"]  # float, step 0.005, [0.02, 0.30]
    assert p.round(0.1012) == 0.1 and p.round(0.1013) == 0.1 and p.round(0.1026) == 0.105
    assert p.round(0.15000000000000002) == 0.15  # float noise stripped
    assert p.clamp(0.5) == 0.30 and p.clamp(0.0) == 0.02
    assert p.normalise(0.999) == 0.30 and p.normalise(0.0123) == 0.02
    q = REG["tail_age_ms"]  # int, step 10, [200, 3000]
    assert q.round(604) == 600 and isinstance(q.round(604), int)
    assert q.normalise(5000) == 3000 and q.normalise(-7) == 200 and isinstance(q.normalise(199.0), int)
    assert q.tolerance == 5.0


def test_flat_and_nested_paths_round_trip():
    flat = REG.defaults()
    nested = REG.nest(flat)
    assert nested["engine"]["min_interval_ms"] == flat["min_interval_ms"]
    assert nested["risk"]["impact_cap_ratio"] == flat["impact_cap_ratio"]
    assert REG.flatten(nested) == flat
    assert REG.get_nested(nested, "tail_age_ms") == flat["tail_age_ms"]
    assert REG.by_path("engine.concurrency_limit").name == "concurrency_limit"
    # flat and nested keys may be mixed
    assert REG.flatten({"min_interval_ms": 70, "risk": {"max_delta_ratio": 0.2}}) == {
        "min_interval_ms": 70, "max_delta_ratio": 0.2}
    with pytest.raises(KeyError):
        REG.get_nested({"engine": {}}, "tail_age_ms")


@pytest.mark.parametrize("values, field, match", [
    ({"nosuch": 1}, "nosuch", "unknown parameter"),
    ({"engine": {"nosuch": 1}}, "engine.nosuch", "unknown parameter"),
    ({"min_interval_ms": 10}, "min_interval_ms", "out of bounds"),
    ({"min_interval_ms": 60.5}, "min_interval_ms", "whole number"),
    ({"impact_cap_ratio": "0.1"}, "impact_cap_ratio", "expected a number"),
    ({"impact_cap_ratio": float("nan")}, "impact_cap_ratio", "expected a number"),
])
def test_bad_values_name_the_field(values, field, match):
    with pytest.raises(ConfigError, match=match) as ei:
        REG.validate_values(values, src="p.json")
    assert ei.value.field == field


def test_validate_values_types_and_completeness():
    out = REG.validate_values({"tail_age_ms": 700.0, "impact_cap_ratio": 0.1})
    assert out == {"tail_age_ms": 700, "impact_cap_ratio": 0.1} and isinstance(out["tail_age_ms"], int)
    with pytest.raises(ConfigError, match="missing parameters"):
        REG.validate_values({"tail_age_ms": 700}, partial=False)


def test_shipped_profiles_and_profile_files(tmp_path):
    best = load_profile("best_cell", REG)
    assert set(best) == set(REG) and best == {**REG.defaults(), **best}
    bad = load_profile("bad", REG)
    assert bad != best and all(REG[k].min <= v <= REG[k].max for k, v in bad.items())
    f = tmp_path / "p.json"
    f.write_text('{"_doc": "a comment", "engine": {"min_interval_ms": 80}}')
    assert load_profile(str(f), REG) == {**REG.defaults(), "min_interval_ms": 80}


@pytest.mark.parametrize("text, match", [
    ('{"min_interval_ms": 60, "base_spread_bps": 0.1}', "base_spread_bps"),
    ('[1, 2]', "expected a JSON object"),
    ('{"min_interval_ms": 1e9}', "out of bounds"),
    ('{"min_interval_ms": ', "invalid JSON"),
])
def test_bad_profile_file_is_one_error_naming_it(tmp_path, text, match):
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(InputError, match=match) as ei:  # ConfigError, or RecordError for unreadable JSON
        load_profile(str(f), REG)
    assert str(f) in str(ei.value) and "\n" not in str(ei.value)


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*bad, best_cell"):
        load_profile("nope", REG)


def test_registry_table_rules():
    cfg = copy.deepcopy(defaults())
    cfg["params"]["tail_age_ms"]["default"] = 5000  # outside [min, max]: a cross-field rule
    with pytest.raises(ConfigError) as ei:
        registry_from_config(cfg, src="c.toml")
    assert ei.value.field == "params.tail_age_ms.default"
    cfg = copy.deepcopy(defaults())
    del cfg["params"]["tail_age_ms"]["unit"]  # the schema's required keys
    with pytest.raises(ConfigError) as ei:
        registry_from_config(cfg, src="c.toml")
    assert ei.value.field == "params.tail_age_ms.unit"
