"""MO-ASHA's promotion rule on synthetic rung results with known fronts, the parallelism choice, the resume
pieces (rung states, requeue, rung history) on a real study and real tiny trainings, and bad input via the CLI."""

import dataclasses
import json
import math

import numpy as np
import optuna
import pytest
import torch
from search_helpers import tiny_settings

from core.run_folder import RunFolder
from nas import rung_resume
from nas.moasha import (
    MOASHA,
    RungRecords,
    crowding_distances,
    nondominated_ranks,
    rung_metrics,
)
from nas.parallelism import choose_parallelism
from nas.trial_runner import run_trial
from search_spaces.presets import get_preset

LOSS_ONLY = rung_metrics(["val_loss_grid"])
LOSS_AND_LATENCY = rung_metrics(["fid", "latency_ms"])  # fid stands as val_loss_grid at a rung

# Three fronts of three points (val_loss_grid, latency_ms); front k is front 0 shifted by (k, k).
FRONTS = [[(1.0 + k, 5.0 + k), (2.0 + k, 3.0 + k), (4.0 + k, 1.0 + k)] for k in range(3)]


def _result(loss, latency=None, step=10):
    out = {"step": step, "val_loss_grid": loss, "state": "RUNNING"}
    if latency is not None:
        out["latency_ms"] = latency
    return out


def test_nondominated_ranks_agree_with_optunas_fast_nondominated_sort():
    from optuna.study._multi_objective import _fast_non_domination_rank

    rng = np.random.default_rng(0)
    for n, m in ((1, 2), (7, 1), (20, 2), (40, 3)):
        losses = rng.integers(0, 6, size=(n, m)).astype(float)  # small integers: many ties and duplicates
        assert list(nondominated_ranks(losses)) == list(_fast_non_domination_rank(losses))


def test_crowding_distance_is_nsga2s():
    front = np.array([[1.0, 5.0], [2.0, 3.0], [4.0, 1.0], [3.0, 2.0]])
    d = crowding_distances(front)
    assert math.isinf(d[0]) and math.isinf(d[2])  # the extremes of each objective
    # (2, 3): neighbours (1, 5) and (3, 2) -> (3 - 1) / 3 + (5 - 2) / 4; (3, 2): (4 - 2) / 3 + (3 - 1) / 4
    assert d[1] == pytest.approx(2 / 3 + 3 / 4) and d[3] == pytest.approx(2 / 3 + 2 / 4)
    assert np.isinf(crowding_distances(front[:2])).all()


def test_promotes_exactly_the_first_front_when_it_is_the_top_third():
    points = [p for front in FRONTS for p in front]  # 9 results, eta 3: the top 3 continue = front 0
    promoted = []
    for i, p in enumerate(points):  # each point arriving last, after the other eight
        records = RungRecords([10, 30], 3, LOSS_AND_LATENCY)
        for j, q in enumerate(points):
            if j != i:
                records.record(j, 10, _result(*q))
        decision = records.on_result(i, 10, _result(*p))
        assert decision.n == 9 and decision.keep == 3 and decision.rung == 10
        assert decision.front == i // 3
        if decision.promoted:
            promoted.append(p)
    assert promoted == FRONTS[0]


def test_ties_in_the_last_front_are_broken_by_crowding_distance():
    # 6 results, eta 3: 2 continue. Front 0 holds 3 points: the two extremes (infinite crowding distance) go on,
    # the middle one stops, and front 1 stops.
    points = FRONTS[0] + FRONTS[1]
    outcome = {}
    for i, p in enumerate(points):
        records = RungRecords([10], 3, LOSS_AND_LATENCY)
        for j, q in enumerate(points):
            if j != i:
                records.record(j, 10, _result(*q))
        d = records.on_result(i, 10, _result(*p))
        outcome[p] = (d.promoted, d.position)
    assert outcome[FRONTS[0][0]] == (True, 1) and outcome[FRONTS[0][2]] == (True, 1)  # ties favour the decided
    assert outcome[FRONTS[0][1]] == (False, 3)
    assert not any(outcome[p][0] for p in FRONTS[1])


def test_decisions_are_asynchronous_and_follow_arrival():
    # A chain (each result dominates the next): arriving best first, only the first continues at each count
    # n until ceil(n / 3) grows; arriving worst first, every newcomer is the best so far and continues.
    chain = [(float(k), float(k)) for k in range(9)]
    best_first = RungRecords([10], 3, LOSS_AND_LATENCY)
    decisions = [best_first.on_result(k, 10, _result(*p)) for k, p in enumerate(chain)]
    assert [d.n for d in decisions] == list(range(1, 10))  # decided on arrival, against the results so far
    assert [d.position for d in decisions] == list(range(1, 10))
    assert [d.promoted for d in decisions] == [True] + [False] * 8
    worst_first = RungRecords([10], 3, LOSS_AND_LATENCY)
    assert all(worst_first.on_result(k, 10, _result(*p)).promoted for k, p in enumerate(reversed(chain)))
    # a trial already decided at a rung gets no second decision there; its next rung is decided on its own
    assert worst_first.on_result(0, 10, _result(0.0, 0.0)) is None
    assert worst_first.on_result(0, 35, _result(5.0, 5.0, step=35)) is None  # 35 is still rung 10: decided
    two_rungs = RungRecords([10, 30], 3, LOSS_ONLY)
    first = two_rungs.on_result("a", 10, _result(0.5))
    second = two_rungs.on_result("a", 30, _result(0.4, step=30))
    assert first.rung == 10 and second.rung == 30 and second.n == 1 and second.promoted
    assert two_rungs.on_result("x", 5, _result(0.1, step=5)) is None  # below the first rung: no decision


def test_fewer_than_eta_results_decide_as_asha():
    records = RungRecords([10], 3, LOSS_ONLY)
    assert records.on_result("a", 10, _result(0.5)).promoted  # the first result at a rung always continues
    assert not records.on_result("b", 10, _result(0.6)).promoted  # then only a result ranked first (1 of 2)
    assert records.on_result("c", 10, _result(0.5)).promoted  # ties favour the newcomer, as in Ray's ASHA


def test_decisions_are_deterministic():
    rng = np.random.default_rng(3)
    stream = [(f"t{k}", float(a), float(b)) for k, (a, b) in enumerate(rng.random((30, 2)))]

    def replay(global_seed):
        np.random.seed(global_seed)  # no randomness may leak in from global state
        records = RungRecords([10], 3, LOSS_AND_LATENCY)
        return [records.on_result(key, 10, _result(a, b)).to_dict() for key, a, b in stream]

    assert replay(0) == replay(1)


def test_a_cost_objective_protects_a_cheap_architecture_still_learning():
    slow = [(0.30 + 0.01 * k, 100.0 + 10 * k) for k in range(5)]  # better held-out loss early, 10x slower
    cheap = (0.50, 10.0)

    def decide(metrics):
        records = RungRecords([10], 3, metrics)
        for k, p in enumerate(slow):
            records.record(k, 10, _result(*p))
        return records.on_result("cheap", 10, _result(*cheap))

    with_cost = decide(LOSS_AND_LATENCY)
    assert with_cost.promoted and with_cost.front == 0
    loss_only = decide(LOSS_ONLY)  # ranked on the loss alone it would be stopped
    assert not loss_only.promoted and loss_only.position == 6
    assert loss_only.reason == "mo-asha: rank 6 of 6 at rung 10 steps, top 2 continue"


def test_missing_values_rank_worst():
    records = RungRecords([10], 3, LOSS_ONLY)
    records.on_result("a", 10, _result(0.5))
    assert not records.on_result("nan", 10, _result(float("nan"))).promoted
    assert not records.on_result("none", 10, {"step": 10, "state": "RUNNING"}).promoted


def test_rung_metrics_represent_quality_objectives_by_their_signal():
    m = rung_metrics(["fid", "clip_score", "latency_ms"])
    assert [(c.key, c.minimize, c.stands_for) for c in m] == [
        ("val_loss_grid", True, ("fid", "clip_score")), ("latency_ms", True, ("latency_ms",))]
    assert [c.key for c in rung_metrics(["val_loss", "params", "macs"])] == ["val_loss", "params", "macs"]
    with pytest.raises(ValueError, match="known before training"):
        rung_metrics(["latency_ms", "params"])


def test_moasha_rebuilds_its_records_from_history():
    history = [(0, {"step": 10, "val_loss_grid": 0.4, "latency_ms": 50.0}),
               (1, {"step": 10, "val_loss_grid": 0.3, "latency_ms": 40.0}),
               (1, {"step": 30, "val_loss_grid": 0.2, "latency_ms": 40.0})]
    scheduler = MOASHA([10, 30], 3, ["fid", "latency_ms"], history=history)
    assert list(scheduler.records.recorded[10]) == [0, 1] and list(scheduler.records.recorded[30]) == [1]
    d = scheduler.records.on_result(2, 10, _result(0.35, 45.0))
    assert d.n == 3 and d.position == 2 and not d.promoted  # ranked against the results recorded before


def test_parallelism_from_the_cores():
    def plan(*args, **kwargs):
        p = choose_parallelism(*args, **kwargs)
        return p.workers, p.cpus_per_trial

    assert plan(None, None, scheduler=True, cores=2) == (2, 1.0)
    assert plan(None, None, scheduler=False, cores=2) == (1, 2.0)
    assert plan(None, None, scheduler=True, cores=16) == (16, 1.0)
    assert plan(None, 4.0, scheduler=True, cores=16) == (4, 4.0)
    assert plan(3, None, scheduler=True, cores=2) == (3, 1.0)  # --workers as given, one thread per rung trial
    assert plan(3, None, scheduler=False, cores=2) == (3, 2.0)
    assert plan(None, None, scheduler=True, gpus_per_trial=0.25, cores=16) == (1, 2.0)
    assert plan(None, None, scheduler=True, address="10.0.0.1:6379", cores=16) == (1, 2.0)
    assert choose_parallelism(None, None, scheduler=True, cores=2).describe() == (
        "2 trials at once x 1 thread each (2 cores; rung trials are small)")


# ---------------------------------------------------------------------------------------------- resume pieces
def test_a_rung_state_continues_training_exactly(tmp_path, search_env):
    """A trial continued from a saved rung state (as a requeued trial is) ends as an uninterrupted one: the step
    count continues, the loss history has no restart, the metrics are bit-identical."""
    config = get_preset("bk_sdm_tiny")
    metrics = ("val_loss", "val_loss_grid", "latency_ms")
    whole = run_trial(tiny_settings(tmp_path / "whole", metrics=metrics), config, 0, seed=0)

    settings = dataclasses.replace(tiny_settings(tmp_path / "run", metrics=metrics), report_at=(3, 6),
                                   rung_signals=("val_loss_grid",))
    run = RunFolder(settings.run_dir)
    saved = {}

    def on_rung(values, state):
        if values["step"] == 3:
            rung_resume.save_state(run, 0, state)
            saved.update(values)

    first = run_trial(settings, config, 0, seed=0, on_rung=on_rung)
    assert [r["step"] for r in json.loads(first["rungs"])] == [3, 6]
    assert saved["latency_ms"] == first["latency_ms"] and saved["params"] == first["params"]  # costs at rungs
    state, history = rung_resume.load_state(run, 0)
    assert state.step == 3 and len(state.losses) == 3 and [r["step"] for r in history] == [3]

    other = RunFolder(tmp_path / "resumed")  # another folder: no quality cache to answer from
    resumed = run_trial(dataclasses.replace(settings, run_dir=str(other.path)), config, 1, seed=0, resume=state,
                        rungs=history)
    steps = [r["step"] for r in json.loads(resumed["rungs"])]
    assert steps == [3, 6] and resumed["steps"] == first["steps"] == whole["steps"] == 8
    assert resumed["val_loss"] == first["val_loss"] == whole["val_loss"]
    assert resumed["val_loss_grid"] == whole["val_loss_grid"]


def _study(tmp_path):
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                               directions=["minimize", "minimize"])


def test_requeue_continues_interrupted_trials_once(tmp_path):
    from evaluators.training.train import TrainState

    run = RunFolder(tmp_path)
    study = _study(tmp_path)
    distributions = {"x": optuna.distributions.IntDistribution(0, 9)}
    state = TrainState(step=3, cursor=0, order=torch.arange(4), generator=torch.Generator().get_state(), model={},
                       optimizer={}, ema=None, losses=[1.0, 0.9, 0.8], seconds=1.0)
    for number, attrs, with_state in ((0, {"interrupted": True}, True), (1, {"stale": True}, True),
                                      (2, {"interrupted": True}, False), (3, {}, True)):
        trial = optuna.trial.create_trial(params={"x": number}, distributions=distributions,
                                          state=optuna.trial.TrialState.FAIL, user_attrs=attrs)
        study.add_trial(trial)
        if with_state:
            rung_resume.save_state(run, number, state)
    assert rung_resume.requeue_interrupted(study, run) == [0, 1]  # settled ones with a state; not a plain FAIL
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == [  # Optuna's enqueued params
        ({"x": 0}, {"continues": 0, "resumes": 0, "lineage": 0}), ({"x": 1}, {"continues": 1, "resumes": 1, "lineage": 1})]
    assert rung_resume.requeue_interrupted(study, run) == []  # enqueued once
    # the requeued trial, interrupted again before its own first rung, continues from the state it loaded
    again = optuna.trial.create_trial(params={"x": 0}, distributions=distributions,
                                      state=optuna.trial.TrialState.FAIL,
                                      user_attrs={"interrupted": True, "resumes": 0, "lineage": 0})
    study.add_trial(again)
    assert rung_resume.requeue_interrupted(study, run) == [6]
    assert study.trials[-1].user_attrs == {"continues": 6, "resumes": 0, "lineage": 0}
    rung_resume.discard_state(run, 6, {"resumes": 0})
    assert not rung_resume.state_path(run, 0).exists() and rung_resume.state_path(run, 1).exists()


def test_rung_history_is_keyed_by_lineage(tmp_path):
    run = RunFolder(tmp_path)
    study = _study(tmp_path)
    distributions = {"x": optuna.distributions.IntDistribution(0, 9)}
    for number, attrs, rungs in ((0, {"interrupted": True}, [10]), (1, {"resumes": 0, "lineage": 0}, [10, 30])):
        study.add_trial(optuna.trial.create_trial(params={"x": 0}, distributions=distributions,
                                                  state=optuna.trial.TrialState.FAIL, user_attrs=attrs))
        run.write_trial_record(dict(number=number, state="FAIL", rungs=[
            {"step": s, "val_loss_grid": 1.0 / s} for s in rungs]))
    history = rung_resume.rung_history(run, study)
    assert [(k, r["step"]) for k, r in history] == [(0, 10), (0, 10), (0, 30)]
    scheduler = MOASHA([10, 30], 2, ["val_loss_grid"], history=history)
    assert {b: list(r) for b, r in scheduler.records.recorded.items()} == {10: [0], 30: [0]}  # one lineage


# ---------------------------------------------------------------------------------------------- bad input
def test_mo_asha_bad_inputs_exit_2(tmp_path, nas_cli):
    for args, message in (
            (["--scheduler", "mo-ashaa"], "--scheduler must be one of"),
            (["--scheduler", "mo-asha", "--eta", "1"], "--eta must be at least 2"),
            (["--scheduler", "mo-asha", "--min-budget", "500"], "--min-budget must be positive and below"),
            (["--scheduler", "mo-asha", "--budget-seconds", "60"], "needs a step budget"),
            (["--scheduler", "mo-asha", "--objectives", "latency_ms,params"], "nothing to rank at the rungs")):
        code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "run").exists()


def test_default_rung_is_half_the_budget_on_a_power_of_two_and_a_resumed_run_keeps_its_own():
    from nas.schedulers import Rungs, default_min_budget, resolve_rungs

    assert resolve_rungs(None, None, None, 125) == Rungs("none", 64, 2, 125)  # no scheduler unless asked
    assert resolve_rungs("mo-asha", None, None, 125).budgets() == [64]  # the fidelity study's rung budget
    assert resolve_rungs("mo-asha", None, None, 500).budgets() == [256]
    assert resolve_rungs("mo-asha", None, 3, 500).budgets() == [128, 384]
    assert [default_min_budget(s, 2) for s in (1, 2, 3, 12)] == [1, 1, 2, 8]
    assert resolve_rungs("mo-asha", 10, 2, 125).budgets() == [10, 20, 40, 80]  # given: as given
    stored = Rungs("mo-asha", 50, 3, 500).to_dict()
    assert resolve_rungs(None, None, None, 500, stored) == Rungs("mo-asha", 50, 3, 500)  # resumed: its own
    assert resolve_rungs(None, None, 2, 500, stored) == Rungs("mo-asha", 50, 2, 500)  # a change: refused later
    assert resolve_rungs("asha", None, None, 500, stored) == Rungs("asha", 256, 2, 500)  # another scheduler


def test_new_searches_default_to_mo_asha_where_it_was_measured_and_old_runs_keep_none(tmp_path, nas_cli):
    from nas.schedulers import Rungs, default_scheduler, resolve_rungs

    # BENCHMARKS.md's rule: MO-ASHA scored more architectures at no worse hypervolume (from scratch, step budget)
    assert default_scheduler(["val_loss_grid", "latency_ms"], wall_clock=False) == "mo-asha"
    assert default_scheduler(["latency_ms", "params"], wall_clock=False) == "none"  # nothing to rank at a rung
    assert default_scheduler(["val_loss_grid"], wall_clock=True) == "none"  # rungs are counted in steps
    assert default_scheduler(["val_loss_grid"], wall_clock=False, proxy="inherit") == "none"  # not measured
    assert resolve_rungs(None, None, None, 125, None, default="mo-asha") == Rungs("mo-asha", 64, 2, 125)
    assert resolve_rungs(None, None, None, 125, {}, default="mo-asha").scheduler == "none"  # run from before
    assert resolve_rungs("none", None, None, 125, None, default="mo-asha").scheduler == "none"  # asked
    # through the CLI: the defaults give a rung that a 100-step first rung does not fit below...
    code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", "--budget", "100", "--min-budget", "100")
    assert code == 2 and "--min-budget must be positive and below the full budget" in err, err
    # ...and rung settings for a search that runs without a scheduler are refused, not ignored
    for args in (["--objectives", "latency,params", "--eta", "3"], ["--scheduler", "none", "--min-budget", "8"]):
        code, _, err = nas_cli("search", "--run-dir", tmp_path / "run", *args)
        assert code == 2 and "runs without one" in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "run").exists()


def test_resuming_with_other_rung_settings_exits_2_and_leaves_the_folder_alone(tmp_path, nas_cli):
    from nas.schedulers import Rungs

    path = tmp_path / "run"
    RunFolder.create(path, dict(name="run", space="unet_mobile", study_name="nas-run", study_file="study.db",
                                objectives=[{"name": "fid", "direction": "minimize"},
                                            {"name": "clip_score", "direction": "maximize"},
                                            {"name": "latency_ms", "direction": "minimize"}],
                                scheduler=Rungs("mo-asha", 50, 3, 500).to_dict()))
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    for args in (["--scheduler", "mo-asha", "--eta", "2"], ["--scheduler", "mo-asha", "--min-budget", "25"],
                 ["--scheduler", "none"]):
        code, _, err = nas_cli("search", "--run-dir", path, "--resume", *args)
        assert code == 2 and "cannot resume with" in err and len(err.strip().splitlines()) == 1, (args, err)
        assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


# ---------------------------------------------------------------------------------------------- report section
def test_rungs_section_shows_the_budget_each_trial_reached_and_why(tmp_path):
    import pandas as pd

    from reports.layout import Page
    from reports.run_data import RunData
    from reports.rungs import rungs_info, rungs_section

    reason = "mo-asha: rank 3 of 3 at rung 3 steps, top 1 continue"
    rows = [dict(number=0, state="COMPLETE", preset="sd15", steps=12, val_loss_grid=0.2, rungs=json.dumps(
                 [{"step": 3, "val_loss_grid": 0.5}, {"step": 6, "val_loss_grid": 0.3}])),
            dict(number=1, state="STOPPED", stopped_at_step=3, stop_reason=reason, rungs=json.dumps(
                 [{"step": 3, "val_loss_grid": 0.7}])),
            dict(number=2, state="INTERRUPTED", rungs=None)]
    trials = pd.DataFrame(rows)

    def data(scheduler):
        return RunData(RunFolder(tmp_path), dict(scheduler=scheduler), trials, trials.iloc[:1], [])

    assert rungs_info(data({"scheduler": "none"})) is None and rungs_info(data({})) is None
    info = rungs_info(data(dict(scheduler="mo-asha", min_budget=3, eta=2, steps=12, rungs=[3, 6])))
    assert info.signal == "val_loss_grid" and info.budgets == [3, 6] and info.full == 12
    by_number = {t.number: t for t in info.trials}
    assert by_number[0].points == [(3, 0.5), (6, 0.3), (12, 0.2)] and by_number[0].reached == 12
    assert by_number[1].reached == 3 and by_number[1].reason == reason and by_number[2].reached == 0
    assert info.reached == {3: 2, 6: 1, 12: 1}
    page = Page()
    rungs_section(page, info)
    html = "".join(page.parts)
    assert "<h2>Rungs</h2>" in html and 'id="rungs-table"' in html and reason in html
    assert [fig_id for fig_id, _ in page.figures] == ["rungs"] and "rung-fidelity" not in html  # none on record

    # the fidelity on record for each rung's budget (as `nas search` stores it) is stated per rung
    study = dict(panel="paper", reference="2000 steps", metrics=dict(val_loss_grid=dict(
        tau=0.51, tau_low=0.1, tau_high=0.9, n=10, target="fid", target_tau=0.6, target_tau_low=0.2,
        target_tau_high=0.95)))
    manifest = dict(scheduler=dict(scheduler="mo-asha", min_budget=3, eta=2, steps=12, rungs=[3, 6]),
                    rung_fidelity={"3": study, "6": None})
    info = rungs_info(RunData(RunFolder(tmp_path), manifest, trials, trials.iloc[:1], []))
    assert "Kendall tau 0.51 [0.10, 0.90]" in info.fidelity[3] and "not measured" in info.fidelity[6]
    page = Page()
    rungs_section(page, info)
    html = "".join(page.parts)
    assert "at the 3-step rung: Kendall tau 0.51" in html and "at the 6-step rung: not measured" in html
