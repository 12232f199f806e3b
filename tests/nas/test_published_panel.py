"""`nas fidelity --panel published`: the shipped file, the call rule, the committed rows, a tiny real run, bad files."""

import json
from pathlib import Path

import pandas as pd
import pytest
from search_helpers import tiny_settings

from core.errors import UserError
from nas.ablation.panels import load_panel, paper_panel
from nas.ablation.published import CALLS, SHIPPED, load_published
from nas.ablation.published_calls import NEUTRAL_RULE, agreement, call_table, proxy_call
from nas.trial_runner import QUALITY_KEYS
from search_spaces.presets import get_preset

ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / "benchmarks" / "fidelity" / "trials.csv"
MD_PATH = ("md_transformers_low_res", "md_decouple_sa_ca", "md_share_kv", "md_swish_glu", "md_relu_attention",
           "md_trim_ffn", "md_separable_deep", "md_fewer_resnet_blocks")


def test_shipped_file_loads_and_every_row_builds_a_valid_config():
    panel = load_published()
    assert panel.path == SHIPPED
    rows = {r.label: r for r in panel.rows}
    assert len(rows) == len(panel.rows) >= 16
    for row in panel.rows:
        row.config.validate()
        panel.configs[row.base].validate()
        assert row.call in CALLS and row.arxiv and row.config != panel.configs[row.base]
    # MobileDiffusion's path, step by step, is the paper panel's cumulative path and ends at the preset
    by_step = {f"md_{label}": config for label, config in paper_panel()}
    assert [r.label for r in panel.rows[:8]] == list(MD_PATH)
    assert all(rows[label].config == by_step[label] for label in MD_PATH)
    assert rows["md_fewer_resnet_blocks"].config == get_preset("mobilediffusion")
    assert rows["bk_sdm_tiny"].config == get_preset("bk_sdm_tiny") and rows["bk_sdm_tiny"].base == "bk_sdm_small"
    # the published numbers, and nulls where nothing is published
    assert rows["md_no_transformers_high_res"].published["fid"] == [12.50, 17.87]
    assert rows["md_no_transformers_high_res"].published["clip_score"] == [0.325, 0.302]
    assert rows["bk_sdm_base"].published["params_b"] == [0.86, 0.58]
    assert rows["snapgen_separable"].published["fid"] == [3.12, 3.38]
    assert rows["md_swish_glu"].published["fid"] is None
    assert {r.call for r in panel.rows} == set(CALLS)
    assert panel.orders[0].values == {"sd15": 13.05, "bk_sdm_base": 15.76, "bk_sdm_small": 16.98, "bk_sdm_tiny": 17.12}
    assert len(load_panel("published")) == len(panel.architectures()) == 18


def test_call_rule_on_hand_made_numbers():
    base = dict(mean=1.00, range=0.10, count=2)
    assert proxy_call(dict(mean=1.05, range=0.02, count=2), base, maximize=False)["call"] == "neutral"
    assert proxy_call(dict(mean=1.50, range=0.02, count=2), base, maximize=False)["call"] == "hurts"
    assert proxy_call(dict(mean=0.50, range=0.02, count=2), base, maximize=False)["call"] == "helps"
    assert proxy_call(dict(mean=1.50, range=0.02, count=2), base, maximize=True)["call"] == "helps"  # CLIP score
    wide = proxy_call(dict(mean=1.50, range=0.60, count=2), base, maximize=False)  # the row's own range counts
    assert wide == dict(diff=pytest.approx(0.5), spread=0.6, call="neutral", seeds=2)
    assert proxy_call(dict(mean=1.5, range=0.0, count=1), base, maximize=False)["call"] is None  # one seed
    assert proxy_call({}, base, maximize=False) == dict(diff=None, spread=None, call=None, seeds=0)
    assert "larger of the two" in NEUTRAL_RULE


def test_agreement_counts_a_harmful_outcome_called_neutral_as_a_miss():
    calls = pd.DataFrame(dict(label=list("abcde"), paper_call=["hurts", "hurts", "neutral", "neutral", "helps"],
                              val_loss_grid_call=["neutral", "hurts", "neutral", "helps", None]))
    assert agreement(calls, "val_loss_grid") == dict(signal="val_loss_grid", agree=2, measured=4, harm_agree=3,
                                                     missing=1, misses=["a", "d"])


def test_call_table_reads_seed_ranges_from_trials(tmp_path):
    panel = _small_panel(tmp_path)
    ids = {label: c.arch_id for label, c in panel.configs.items()}
    trials = pd.DataFrame([dict(arch_id=ids[label], seed=seed, state="COMPLETE", val_loss_grid=value)
                           for label, values in (("sd15", (1.0, 1.1)), ("low_res", (1.6, 1.5)),
                                                 ("decouple", (1.55, 1.62)))
                           for seed, value in enumerate(values)])
    calls = call_table(panel, trials, ("val_loss_grid",)).set_index("label")
    assert calls.loc["low_res", "val_loss_grid_call"] == "hurts"
    assert calls.loc["decouple", "val_loss_grid_call"] == "neutral"
    assert calls.loc["low_res", "val_loss_grid_spread"] == pytest.approx(0.1)
    assert pd.isna(calls.loc["no_transformers", "val_loss_grid_call"])  # not measured


def _small_panel(tmp_path, rows=None, orders=None):
    rows = rows or [
        dict(label="low_res", build={"from": "sd15", "steps": ["transformers_low_res"]}, call="neutral",
             source={"paper": "MobileDiffusion", "arxiv": "2311.16567"}),
        dict(label="decouple", build={"from": "low_res", "steps": ["decouple_sa_ca"]}, call="neutral",
             source={"paper": "MobileDiffusion", "arxiv": "2311.16567"}),
        dict(label="no_transformers", build={"from": "low_res", "set": {"levels": {"1": {
            "transformer_depth": 0, "attention": "none"}}}}, call="hurts",
             published={"fid": [12.5, 17.87], "clip_score": [0.325, 0.302]},
             source={"paper": "MobileDiffusion", "arxiv": "2311.16567"}),
    ]
    data = dict(format=1, rows=rows, orders=orders or [])
    (tmp_path / "panel.json").write_text(json.dumps(data))
    return load_published(tmp_path / "panel.json")


@pytest.mark.parametrize("rows, message", [
    ([dict(label="again", build={"from": "mobilediffusion", "steps": ["relu_attention"]}, call="neutral",
           source={})], "published row 'again' cannot be expressed: ablation step 'relu_attention' does not apply"),
    ([dict(label="wide", build={"from": "sd15", "set": {"levels": {"0": {"channels": 333}}}}, call="hurts",
           source={})], "published row 'wide' cannot be expressed"),
    ([dict(label="x", build={"from": "nowhere", "steps": ["share_kv"]}, call="hurts", source={})],
     "'nowhere' is neither a preset nor an earlier label"),
    ([dict(label="x", build={"preset": "sd15"}, base="bk_sdm_tiny", call="maybe", source={})], "call: must be one of"),
])
def test_a_row_the_space_cannot_express_is_a_one_line_error(tmp_path, rows, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as err:
        _small_panel(tmp_path, rows=rows)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"rows": 3}', "not a published panel"),
    (json.dumps(dict(rows=[dict(label="x", build={"from": "sd15", "steps": ["relu_attention"]}, call="helps",
                                source={}, published={"fid": 12.5})])), "published.fid: expected [base, row]"),
])
def test_bad_files_and_names_exit_2(nas_cli, tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    code, _, err = nas_cli("fidelity", "--panel", "published", "--published-file", tmp_path / "bad.json",
                           "--run-dir", tmp_path / "run", "--no-train")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--panel", "publishedd"], "--panel must be one of paper, random, published"),
    (["--panel", "paper", "--published-file", "x.json"], "--published-file goes with --panel published"),
    (["--panel", "published", "--short-seeds", "1"], "at least 2"),
    (["--panel", "published", "--signal", "latency_ms"], "--signal must be a quality metric"),
])
def test_bad_flags_exit_2(nas_cli, tmp_path, args, message):
    code, _, err = nas_cli("fidelity", "--run-dir", tmp_path / "run", "--no-train", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_committed_rows_give_the_table_without_training(nas_cli, tmp_path):
    code, out, err = nas_cli("fidelity", "--panel", "published", "--import", COMMITTED, "--no-train",
                             "--run-dir", tmp_path / "run")
    assert code == 0, err
    assert "agrees with the paper on" in out and "not measured" in out and "Kendall tau" in out
    saved = json.loads((tmp_path / "run" / "published" / "published.json").read_text())
    assert saved["signals"] == ["val_loss_grid", "fid", "clip_score"] and saved["rule"] == NEUTRAL_RULE
    calls = {c["label"]: c for c in saved["calls"]}
    assert all(calls[label]["val_loss_grid_call"] in CALLS for label in MD_PATH)  # the committed paper panel
    # The rest follows the committed rows, which grow as the panel is trained: a call needs 2 seeds of the row
    # and of its base; every (architecture, seed) without a row is missing.
    committed = pd.read_csv(COMMITTED)
    committed = committed[committed["budget"] == "short"]
    seeds = committed.groupby("arch_id")["seed"].nunique()
    for c in calls.values():
        both = seeds.get(c["arch_id"], 0) >= 2 and seeds.get(c["base_arch_id"], 0) >= 2
        assert (c["val_loss_grid_call"] is not None) == both, c["label"]
    grid = next(a for a in saved["agreement"] if a["signal"] == "val_loss_grid")
    measured = sum(c["val_loss_grid_call"] is not None for c in calls.values())
    assert grid["measured"] == measured >= 8 and grid["missing"] == len(calls) - measured
    archs = {config.arch_id for _, config in load_published().architectures()}
    have = committed[committed["arch_id"].isin(archs) & committed["seed"].isin([0, 1])][["arch_id", "seed"]]
    assert saved["missing"] == 2 * len(archs) - len(have.drop_duplicates())
    assert (tmp_path / "run" / "published" / "calls.csv").is_file()
    assert "Published panel" in (tmp_path / "run" / "published" / "published.md").read_text()


def test_published_order_is_compared_by_kendall_tau(tmp_path):
    from nas.ablation.published_calls import order_taus

    order = dict(name="made up", metric="fid", models={"sd15": 1.0, "low_res": 2.0, "decouple": 3.0,
                                                        "no_transformers": 4.0})
    panel = _small_panel(tmp_path, orders=[order])
    ids = [panel.configs[label].arch_id for label in order["models"]]
    rows = [dict(arch_id=i, seed=0, state="COMPLETE", val_loss_grid=v, clip_score=-v)
            for i, v in zip(ids, (0.1, 0.2, 0.4, 0.3))]
    taus = {t["signal"]: t for t in order_taus(panel, pd.DataFrame(rows), ("val_loss_grid", "clip_score"))}
    assert taus["val_loss_grid"]["tau"] == pytest.approx(2 / 3) and taus["val_loss_grid"]["measured"] == 4
    assert taus["clip_score"]["tau"] == pytest.approx(2 / 3)  # higher is better: oriented like the paper's FID
    partial = order_taus(panel, pd.DataFrame(rows[:3]), ("val_loss_grid",))[0]
    assert partial["tau"] is None and partial["measured"] == 3


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_published_run_trains_calls_and_resumes(tmp_path, search_env, capsys):
    from evaluators.training import Budget
    from nas.ablation.published_study import run_published
    from nas.commands.fidelity_published import print_result

    three = [dict(label="low_res", build={"from": "sd15", "steps": ["transformers_low_res"]}, call="neutral",
                  source={}),
             dict(label="decouple", build={"from": "low_res", "steps": ["decouple_sa_ca"]}, call="neutral", source={}),
             dict(label="decouple_vs_sd15", build={"from": "low_res", "steps": ["decouple_sa_ca"]}, base="sd15",
                  call="hurts", source={})]
    panel = _small_panel(tmp_path, rows=three)  # 3 rows over 3 architectures
    settings = tiny_settings(tmp_path / "run", metrics=QUALITY_KEYS)
    result = run_published(panel, settings, seeds=2, cpus_per_trial=1, command=["pytest"])
    assert result.missing == 0 and result.signals == ["val_loss_grid", "fid", "clip_score"]
    assert all(c["val_loss_grid_call"] in CALLS and c["fid_call"] in CALLS for c in result.calls)
    assert [a["measured"] for a in result.agreement] == [3, 3, 3]
    trials = pd.read_csv(tmp_path / "run" / "published" / "trials.csv")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    print_result(result, Budget(steps=settings.budget.steps), 2)
    assert "agrees with the paper on" in capsys.readouterr().out
    from core import agreement_record  # every search at this budget now finds the agreement on record

    entry = agreement_record.on_record(settings.budget_hash)
    assert entry["signals"]["val_loss_grid"]["measured"] == 3 and entry["regime"] == "custom"
    assert entry["record"].startswith(str(search_env)) and entry["seeds"] == 2  # the user's record, not the package's
    assert "of 3 measured outcomes" in agreement_record.summary(entry, "val_loss_grid")

    again = run_published(panel, settings, seeds=2, train=False, command=["pytest"])  # from the run folder
    assert again.calls == result.calls
