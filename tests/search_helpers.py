"""Tiny but real search settings shared by the search, ablation and report tests (importable: tests/ is on
pytest's pythonpath)."""

TINY_BUDGET = dict(steps=8, batch_size=8, n_train=64, n_val=16, n_samples=16, n_real=32, sample_steps=2,
                   sample_batch_size=16, grid_images=4, warmup_steps=2, report_every=4)
TINY_RECIPE = dict(steps=20, n_train=256, batch_size=32)  # a domain CLIP that trains in seconds


def tiny_settings(run_dir, metrics=("fid", "clip_score", "latency_ms"), **changes):
    """Real trials, small enough for tests: an 8-step proxy training, a tiny domain CLIP, and phone-roofline
    latency (instant; measured CPU latency has its own tests)."""
    from evaluators.training import Budget
    from nas.trial_runner import TrialSettings

    base = dict(run_dir=str(run_dir), metrics=tuple(metrics), budget=Budget(**TINY_BUDGET),
                latency_device="iphone15pro", image_size=512, threads=1, evaluator_recipe=dict(TINY_RECIPE))
    return TrialSettings(**(base | changes))


def tiny_options(run_dir, trials=3, objectives="fid,clip_score,latency_ms", **changes):
    from core.objectives import parse_objectives
    from nas.search import SearchOptions

    objs = parse_objectives(objectives)
    settings = changes.pop("settings", None) or tiny_settings(run_dir, tuple(o.name for o in objs))
    return SearchOptions(run_dir=run_dir, objectives=objs, trials=trials, settings=settings, cpus_per_trial=1,
                         command=["pytest"], **changes)
