"""The Pareto set's designs side by side with the sd15 and mobilediffusion anchors, and what each changed."""

import pytest

from reports.designs import ANCHORS, flatten
from reports.run_data import load_run
from reports.sections import compute_report
from search_spaces.presets import get_preset


@pytest.fixture(scope="module")
def info(finished_run):
    return compute_report(load_run(finished_run.path))


def test_flatten_names_every_field():
    sd15 = flatten(get_preset("sd15"))
    assert sd15["level 0 channels"] == "320" and sd15["level 3 transformer_depth"] == "0"
    assert sd15["mid num_res"] == "2" and sd15["attn_activation"] == "softmax" and sd15["ff_mult"] == "4"
    assert len(sd15) == 4 * 6 + 4 + 11  # 4 levels x 6 fields, the bottleneck, the global fields


def test_columns_are_anchors_then_the_pareto_set(info):
    d = info.designs
    assert [c.title for c in d.columns[:2]] == list(ANCHORS) and all(c.number is None for c in d.columns[:2])
    assert [c.number for c in d.columns[2:]] == [r.number for r in info.pareto.rows]
    assert [c.knee for c in d.columns].count(True) == 1
    assert d.columns[0].values == flatten(get_preset("sd15"))
    for f in d.fields:  # shown fields differ somewhere; folded ones are equal everywhere
        assert len({c.values.get(f, "—") for c in d.columns}) > 1
    for f in d.folded:
        assert len({c.values.get(f, "—") for c in d.columns}) == 1
    assert "context_dim" in d.folded and "attn_activation" in d.fields


def test_member_diffs_against_the_anchors(info, finished_run):
    from dataclasses import replace

    from reports.designs import design_table

    data = load_run(finished_run.path)
    template = info.pareto.rows[0]
    rows = [replace(template, number=n, arch_id=data.complete.loc[n, "arch_id"], preset=data.complete.loc[n, "preset"],
                    knee=False) for n in (0, 1)]  # the warm starts: trial 0 is sd15, trial 1 mobilediffusion
    by_number = {m.number: m for m in design_table(data, rows).diffs}
    sd15_trial, md_trial = 0, 1
    assert by_number[sd15_trial].changes["sd15"] == [] and by_number[md_trial].changes["mobilediffusion"] == []
    md_vs_sd = by_number[md_trial].changes["sd15"]
    assert "attn_activation: softmax → relu" in md_vs_sd and "level 3 removed" in md_vs_sd  # 3 levels vs 4
    assert not any(c.startswith("level 3 ") and c != "level 3 removed" for c in md_vs_sd)
    assert any(c.startswith("level 3 added (channels 1280") for c in by_number[sd15_trial].changes["mobilediffusion"])
    for m in info.designs.diffs:  # a change names both values, in the anchor -> member direction
        column = next(c for c in info.designs.columns if c.number == m.number)
        for change in m.changes["sd15"]:
            if "→" in change:
                field, values = change.split(": ")
                before, after = values.split(" → ")
                assert flatten(get_preset("sd15"))[field] == before and column.values[field] == after
