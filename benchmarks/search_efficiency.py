"""Search-efficiency benchmark: hypervolume of `nas search`'s samplers vs random search at equal trial counts.

What it measures: for each sampler (the default "tpe", "random", and any others from `nas.samplers`) and
each seed, an Optuna study searches the real `unet_mobile` space for `--trials` trials (the warm-start
presets sd15 and mobilediffusion enqueued first, as `nas search` does; they count towards the trials) on
two cheap, deterministic objectives, no training:

- latency_ms (minimise): the analytic roofline latency *estimate* of the full-scale UNet on the
  `iphone15pro` profile at 512 px (`evaluators.latency.get_predictor("iphone15pro", image_size=512)`);
- params (maximise): the exact full-scale parameter count (`evaluators.cost.analytic_cost`), the classic
  cheap capacity proxy for quality. It correlates with latency, so the front is the capacity-per-ms
  trade-off, not a quality front.

Both objectives are normalised to [0, 1] with fixed bounds that do not depend on any sampler (min/max over
`--bound-samples` random configs of the space drawn once with `--bound-seed`, plus the presets), params is
flipped to minimisation (1 - normalised params), and the hypervolume of each study's Pareto set is computed
with Optuna's own `optuna._hypervolume.compute_hypervolume` against the reference point (1.1, 1.1).
Reported: HV per seed at each checkpoint (10, 20, ..., `--trials`), median over seeds, the ratio of
medians vs random, and the median of the per-seed ratios.

Usage:

    python benchmarks/search_efficiency.py --trials 40 --seeds 0,1,2,3,4 --samplers tpe,random,nsga2 --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optuna._hypervolume import compute_hypervolume  # noqa: E402  (Optuna's exact WFG/2-D implementation)

from core.provenance import provenance  # noqa: E402
from evaluators.cost import analytic_cost  # noqa: E402
from evaluators.latency import get_predictor  # noqa: E402
from nas.samplers import make_sampler  # noqa: E402
from search_spaces.config import ArchConfig  # noqa: E402
from search_spaces.presets import get_preset  # noqa: E402
from search_spaces.space import SearchSpace, get_space  # noqa: E402

SPACE = "unet_mobile"
DEVICE = "iphone15pro"
IMAGE_SIZE = 512
WARM_START = ("sd15", "mobilediffusion")  # nas.search.SearchOptions.warm_start
REFERENCE = 1.1  # reference point per axis, in normalised minimisation units
BASELINE = "random"


class CheapObjective:
    """(latency_ms estimate, full-scale params) of a config, cached by arch_id."""

    def __init__(self) -> None:
        self.predictor = get_predictor(DEVICE, image_size=IMAGE_SIZE)
        self.cache: dict[str, tuple[float, float]] = {}

    def __call__(self, config: ArchConfig) -> tuple[float, float]:
        if config.arch_id not in self.cache:
            latency = self.predictor.predict(config).latency_ms
            self.cache[config.arch_id] = (float(latency), float(analytic_cost(config).params))
        return self.cache[config.arch_id]


def fixed_bounds(space: SearchSpace, objective: CheapObjective, n: int, seed: int) -> dict[str, list[float]]:
    """Min/max of both objectives over n random configs (fixed seed) and the presets: sampler-independent."""
    configs = space.sample_random(n, seed) + [get_preset(p) for p in WARM_START]
    values = np.array([objective(c) for c in configs])
    return {"latency_ms": [float(values[:, 0].min()), float(values[:, 0].max())],
            "params": [float(values[:, 1].min()), float(values[:, 1].max())]}


def normalise(values: np.ndarray, bounds: dict[str, list[float]]) -> np.ndarray:
    """(latency, params) rows -> minimisation rows in [0, 1] (outside only if beyond the fixed bounds)."""
    (lat_lo, lat_hi), (par_lo, par_hi) = bounds["latency_ms"], bounds["params"]
    return np.stack([(values[:, 0] - lat_lo) / (lat_hi - lat_lo),
                     (par_hi - values[:, 1]) / (par_hi - par_lo)], axis=1)


def hypervolume(values: np.ndarray, bounds: dict[str, list[float]]) -> float:
    """HV of the points (any order, dominated ones included) vs the reference point, normalised units."""
    points = normalise(values, bounds)
    reference = np.full(2, REFERENCE)
    points = points[np.all(points <= reference, axis=1)]  # points beyond the reference add nothing
    return float(compute_hypervolume(points, reference)) if len(points) else 0.0


def run_study(space: SearchSpace, objective: CheapObjective, sampler: str, seed: int,
              trials: int) -> tuple[np.ndarray, list[str]]:
    """One search (ask/tell, warm-started like `nas search`); (latency, params) and arch_id per trial, in order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=["minimize", "maximize"],
                                    sampler=make_sampler(sampler, seed, trials))
        # make_sampler sets WARNING; silence GPSampler's per-parameter "sampled independently" notices
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        for name in WARM_START:
            study.enqueue_trial(space.params_of(get_preset(name)), skip_if_exists=True)
        rows, ids = [], []
        for _ in range(trials):
            trial = study.ask()
            config = space.sample(trial)
            values = objective(config)
            study.tell(trial, values)
            rows.append(values)
            ids.append(config.arch_id)
    return np.array(rows), ids


def checkpoints(trials: int) -> list[int]:
    return sorted({n for n in (10, 20, 40, 80, 160) if n < trials} | {trials})


def measure(samplers: list[str], seeds: list[int], trials: int, bounds: dict, space: SearchSpace,
            objective: CheapObjective) -> dict:
    """HV per sampler, seed and checkpoint, plus seconds and distinct configs per study."""
    out: dict = {}
    for sampler in samplers:
        per_seed = {}
        for seed in seeds:
            start = time.perf_counter()
            values, arch_ids = run_study(space, objective, sampler, seed, trials)
            seconds = time.perf_counter() - start
            per_seed[seed] = dict(
                hv={n: hypervolume(values[:n], bounds) for n in checkpoints(trials)},
                seconds=round(seconds, 2),
                distinct=len(set(arch_ids)),
            )
            print(f"[{sampler} seed {seed}] HV@{trials}={per_seed[seed]['hv'][trials]:.4f} "
                  f"({seconds:.1f} s, {per_seed[seed]['distinct']} distinct)", file=sys.stderr, flush=True)
        out[sampler] = per_seed
    return out


def summarise(results: dict, seeds: list[int], trials: int) -> dict:
    """Median HV per checkpoint, ratio of medians vs random, median of per-seed ratios vs random."""
    summary: dict = {}
    for sampler, per_seed in results.items():
        rows = {}
        for n in checkpoints(trials):
            hvs = [per_seed[s]["hv"][n] for s in seeds]
            row = dict(median=statistics.median(hvs), min=min(hvs), max=max(hvs))
            if BASELINE in results:
                base = [results[BASELINE][s]["hv"][n] for s in seeds]
                row["ratio_of_medians"] = row["median"] / statistics.median(base)
                row["median_of_ratios"] = statistics.median(h / b for h, b in zip(hvs, base))
            rows[n] = row
        summary[sampler] = rows
    return summary


def markdown(results: dict, summary: dict, seeds: list[int], trials: int) -> str:
    """The per-seed table at the final trial count, and the median curve over checkpoints."""
    lines = [f"HV at {trials} trials (normalised, ref {REFERENCE}); ratios vs {BASELINE}", "",
             "| sampler | " + " | ".join(f"seed {s}" for s in seeds)
             + " | median | ratio of medians | median of per-seed ratios |",
             "| --- |" + " --- |" * (len(seeds) + 3)]
    for sampler, per_seed in results.items():
        row = summary[sampler][trials]
        lines.append(f"| {sampler} | " + " | ".join(f"{per_seed[s]['hv'][trials]:.4f}" for s in seeds)
                     + f" | {row['median']:.4f} | {row.get('ratio_of_medians', float('nan')):.3f}"
                     + f" | {row.get('median_of_ratios', float('nan')):.3f} |")
    points = checkpoints(trials)
    lines += ["", "Median HV (ratio of medians vs random) by trial count", "",
              "| sampler | " + " | ".join(f"{n} trials" for n in points) + " |",
              "| --- |" + " --- |" * len(points)]
    for sampler in results:
        cells = [f"{summary[sampler][n]['median']:.4f} ({summary[sampler][n].get('ratio_of_medians', float('nan')):.2f}x)"
                 for n in points]
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--samplers", default="tpe,random,nsga2")
    parser.add_argument("--bound-samples", type=int, default=2000, help="random configs for the fixed bounds")
    parser.add_argument("--bound-seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, default=None, help="write everything as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    samplers = args.samplers.split(",")

    space, objective = get_space(SPACE), CheapObjective()
    start = time.perf_counter()
    bounds = fixed_bounds(space, objective, args.bound_samples, args.bound_seed)
    bound_seconds = time.perf_counter() - start
    print(f"bounds from {args.bound_samples} random configs: {bounds} ({bound_seconds:.0f} s)", file=sys.stderr)

    results = measure(samplers, seeds, args.trials, bounds, space, objective)
    summary = summarise(results, seeds, args.trials)
    table = markdown(results, summary, seeds, args.trials)
    print(table)
    if args.out:
        record = dict(
            benchmark="search_efficiency", command=sys.argv, space=SPACE, trials=args.trials, seeds=seeds,
            samplers=samplers, warm_start=list(WARM_START),
            objectives=[dict(name="latency_ms", direction="minimize",
                             source=f"roofline estimate, {DEVICE}, {IMAGE_SIZE} px"),
                        dict(name="params", direction="maximize", source="analytic_cost(config).params, full scale")],
            hypervolume=dict(implementation="optuna._hypervolume.compute_hypervolume", reference=[REFERENCE] * 2,
                             normalisation="latency (x-lo)/(hi-lo); params (hi-x)/(hi-lo); fixed bounds",
                             bounds=bounds, bound_samples=args.bound_samples, bound_seed=args.bound_seed),
            results=results, summary=summary, table=table, optuna_version=optuna.__version__,
            provenance=provenance(threads=torch.get_num_threads()))
        args.out.write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
