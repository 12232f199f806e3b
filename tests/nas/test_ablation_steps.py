"""Each shipped ablation step changes what it should and nothing else; refusals; patch files; decorator."""

import dataclasses
import json

import pytest

from core.errors import UserError
from nas.ablation import (
    PAPER_PATH,
    STEPS,
    StepNotApplicable,
    ablation_step,
    apply_path,
    get_step,
    load_patch_steps,
    plan_rows,
)
from nas.ablation.plan import FULL_PATH, resolve_steps
from search_spaces.config import ConfigError
from search_spaces.presets import get_preset
from search_spaces.registry import UnknownNameError

DROPPED = "(dropped)"


def flat(config):
    """Every field of the config, nested levels/mid included, as path -> value."""
    out = {"n_levels": len(config.levels)}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "levels":
            for i, level in enumerate(value):
                out |= {f"levels[{i}].{k}": v for k, v in dataclasses.asdict(level).items()}
        elif f.name == "mid":
            out |= {f"mid.{k}": v for k, v in dataclasses.asdict(value).items()}
        else:
            out[f.name] = value
    return out


def changes(before, after):
    a, b = flat(before), flat(after)
    return {k: (a.get(k, DROPPED), b.get(k, DROPPED))
            for k in a.keys() | b.keys() if a.get(k, DROPPED) != b.get(k, DROPPED)}


# What each step changes on the cumulative path from sd15, field by field (before, after).
EXPECTED = {
    "transformers_low_res": {
        "levels[0].transformer_depth": (1, 0), "levels[0].attention": ("self_cross", "none"),
        "levels[2].transformer_depth": (1, 3), "levels[2].channels": (1280, 1024), "levels[3].channels": (1280, 1024),
        "mid.transformer_depth": (1, 4), "num_heads": (8, 0), "head_dim": (0, 64)},
    "decouple_sa_ca": {"levels[1].attention": ("self_cross", "cross")},
    "share_kv": {"shared_kv": (False, True)},
    "swish_glu": {"ff_activation": ("gelu", "swish")},
    "relu_attention": {"attn_activation": ("softmax", "relu")},
    "trim_ffn": {"ff_mult": (4, 3)},
    "separable_deep": {"levels[2].separable": (False, True), "levels[3].separable": (False, True),
                       "mid.separable": (False, True)},
    "fewer_resnet_blocks": {
        **{f"levels[{i}].down_res": (2, 1) for i in range(3)}, **{f"levels[{i}].up_res": (3, 2) for i in range(3)},
        "n_levels": (4, 3), "mid.num_res": (2, 3),
        **{f"levels[3].{k}": (v, DROPPED) for k, v in dict(channels=1024, down_res=2, up_res=3, transformer_depth=0,
                                                            attention="none", separable=True).items()}},
}


def path_inputs():
    config = get_preset("sd15")
    for name in PAPER_PATH:
        yield name, config
        config = get_step(name)(config)


def test_paper_path_is_ordered_and_complete():
    assert list(PAPER_PATH) == list(EXPECTED)
    assert set(PAPER_PATH) <= set(STEPS.names())


@pytest.mark.parametrize("name, before", list(path_inputs()), ids=PAPER_PATH)
def test_step_changes_exactly_its_fields(name, before):
    step = get_step(name)
    after = step(before)
    assert changes(before, after) == EXPECTED[name]
    assert step.description and "\n" not in step.description
    assert step(before) == after  # pure: same input, same output, input untouched
    assert before == dict(path_inputs())[name]


@pytest.mark.parametrize("name, before", list(path_inputs()), ids=PAPER_PATH)
def test_step_refuses_its_own_output(name, before):
    with pytest.raises(StepNotApplicable, match=f"'{name}' does not apply"):
        get_step(name)(get_step(name)(before))


def test_cumulative_path_ends_at_mobilediffusion():
    steps = [get_step(n) for n in PAPER_PATH]
    assert apply_path(get_preset("sd15"), steps) == get_preset("mobilediffusion")


@pytest.mark.parametrize("name", PAPER_PATH)
def test_no_paper_step_applies_to_mobilediffusion(name):
    with pytest.raises(StepNotApplicable):
        get_step(name)(get_preset("mobilediffusion"))


def test_plan_rows_cumulative_and_leave_one_out():
    steps = [get_step(n) for n in PAPER_PATH]
    rows = plan_rows("sd15", get_preset("sd15"), steps, "both")
    cumulative = [r for r in rows if r.mode == "cumulative"]
    loo = [r for r in rows if r.mode == "leave-one-out"]
    assert [r.step for r in cumulative] == ["baseline", *PAPER_PATH]
    assert [r.previous for r in cumulative] == [None, *range(len(PAPER_PATH))]
    assert [r.step for r in loo] == [FULL_PATH, *PAPER_PATH]
    assert loo[0].config == cumulative[-1].config == get_preset("mobilediffusion")
    full_index = rows.index(loo[0])
    for row, name in zip(loo[1:], PAPER_PATH):
        assert row.previous == full_index
        assert row.config == apply_path(get_preset("sd15"), [s for s in steps if s.name != name])
        assert row.config != loo[0].config


def test_plan_rejects_bad_inputs():
    step = get_step("relu_attention")
    with pytest.raises(UserError, match="listed twice"):
        plan_rows("sd15", get_preset("sd15"), [step, step], "cumulative")
    with pytest.raises(UserError, match="--mode"):
        plan_rows("sd15", get_preset("sd15"), [step], "sideways")
    with pytest.raises(StepNotApplicable, match="already ReLU"):
        plan_rows("mobilediffusion", get_preset("mobilediffusion"), [step], "cumulative")
    with pytest.raises(UnknownNameError, match="unknown ablation step 'nope'"):
        resolve_steps(["share_kv", "nope"])


def test_decorator_registers_a_user_step():
    @ablation_step("test_halve_first_level", "halve the channels of the first level")
    def halve(config):
        if config.levels[0].channels <= 64:
            raise StepNotApplicable("already narrow")
        return config.with_level(0, channels=config.levels[0].channels // 2)

    try:
        assert get_step("test_halve_first_level") is halve
        assert [s.name for s in resolve_steps(["share_kv", "test_halve_first_level"])] == [
            "share_kv", "test_halve_first_level"]
        sd15 = get_preset("sd15")
        assert changes(sd15, halve(sd15)) == {"levels[0].channels": (320, 160)}
        with pytest.raises(ValueError, match="already registered"):
            ablation_step("test_halve_first_level", "again")(lambda c: c)
    finally:
        STEPS._items.pop("test_halve_first_level")


def test_step_that_changes_nothing_is_refused():
    @ablation_step("test_identity", "does nothing")
    def identity(config):
        return config

    try:
        with pytest.raises(StepNotApplicable, match="unchanged"):
            identity(get_preset("sd15"))
    finally:
        STEPS._items.pop("test_identity")


def write(tmp_path, data, name="patch.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_patch_step_changes_exactly_what_it_sets(tmp_path):
    path = write(tmp_path, [
        {"name": "one_mid_res", "description": "a single bottleneck ResNet",
         "set": {"mid": {"num_res": 1, "transformer_depth": 0, "attention": "none"}}},
        {"name": "wide_ffn_last_sep", "set": {"ff_mult": 2, "levels": {"-1": {"separable": True}}}},
    ])
    one_mid, other = load_patch_steps(path)
    sd15 = get_preset("sd15")
    assert one_mid.description == "a single bottleneck ResNet"
    assert changes(sd15, one_mid(sd15)) == {"mid.num_res": (2, 1), "mid.transformer_depth": (1, 0),
                                            "mid.attention": ("self_cross", "none")}
    assert changes(sd15, other(sd15)) == {"ff_mult": (4, 2), "levels[3].separable": (False, True)}
    with pytest.raises(StepNotApplicable, match="unchanged"):
        one_mid(one_mid(sd15))
    steps = resolve_steps(None, [one_mid, other])
    assert [s.name for s in steps] == [*PAPER_PATH, "one_mid_res", "wide_ffn_last_sep"]


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "set": {"ff_mult": 3}, "colour": "red"}, r"patch.json.colour: unknown field"),
    ({"name": "x", "set": {"ff_multiplier": 3}}, r"patch.json.set.ff_multiplier: unknown field"),
    ({"name": "x", "set": {"mid": {"depth": 3}}}, r"patch.json.set.mid.depth: unknown field"),
    ({"name": "x", "set": {"levels": {"0": {"width": 3}}}}, r"patch.json.set.levels.0.width: unknown field"),
    ({"name": "x", "set": {"levels": {"first": {"separable": True}}}}, "not a level index"),
    ({"set": {"ff_mult": 3}}, r"patch.json.name: missing required field"),
    ({"name": "two words", "set": {"ff_mult": 3}}, "must be an identifier"),
    ({"name": "x", "set": {}}, "sets nothing"),
])
def test_bad_patch_files_name_the_field(tmp_path, data, message):
    with pytest.raises(UserError, match=message):
        load_patch_steps(write(tmp_path, data))


def test_patch_values_and_levels_are_checked_when_applied(tmp_path):
    wrong_type, = load_patch_steps(write(tmp_path, {"name": "x", "set": {"ff_mult": "three"}}))
    with pytest.raises(ConfigError, match="ff_mult"):
        wrong_type(get_preset("sd15"))
    far_level, = load_patch_steps(write(tmp_path, {"name": "y", "set": {"levels": {"7": {"separable": True}}}}))
    with pytest.raises(StepNotApplicable, match="no level 7"):
        far_level(get_preset("sd15"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_patch_steps(tmp_path / "bad.json")


def test_patch_cannot_reuse_a_registered_name(tmp_path):
    step, = load_patch_steps(write(tmp_path, {"name": "share_kv", "set": {"shared_kv": True}}))
    with pytest.raises(UserError, match="reuses the name"):
        resolve_steps(None, [step])
