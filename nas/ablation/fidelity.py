"""Proxy fidelity: does a short training budget rank architectures the way a longer one does?

Files written under `<run>/fidelity/`: `architectures.csv` (per architecture and budget: seed means with
intervals), `correlations.csv` / `correlations.md` (Kendall tau and Spearman rho per quality metric),
`fidelity.json` (everything plus provenance) and `scatter.html` (short vs long metric, one panel per metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from scipy import stats

from evaluators.cost import analytic_cost
from evaluators.training import Budget
from nas.ablation.stats import mean_ci
from nas.ablation.study import open_run
from nas.errors import UserError
from nas.executor import Job, run_jobs
from nas.io import atomic_path, write_json, write_text
from nas.provenance import provenance
from nas.trial_runner import QUALITY_KEYS, TrialSettings, prepare
from search_spaces.config import ArchConfig
from search_spaces.presets import PRESETS, get_preset

KIND = "fidelity"
BUDGETS = ("short", "long")


@dataclass
class FidelityResult:
    """Per-architecture means and the rank correlations between the two budgets."""

    run_dir: Path
    architectures: list[dict[str, Any]]  # label, arch_id, params, <metric>_<budget>, <metric>_<budget>_ci
    kendall_tau: dict[str, float | None]  # per quality metric (None when undefined, e.g. a constant ranking)
    spearman_rho: dict[str, float | None]
    files: list[Path]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(run_dir=str(self.run_dir), architectures=self.architectures, kendall_tau=self.kendall_tau,
                    spearman_rho=self.spearman_rho, files=[str(f) for f in self.files], provenance=self.provenance)


def fidelity_archs(space_name: str, n: int, seed: int) -> list[tuple[str, ArchConfig]]:
    """`n` (label, config) pairs: the presets first (those in the space), then distinct random samples."""
    from search_spaces.space import get_space

    if n < 3:
        raise UserError(f"--archs must be at least 3 for a rank correlation, got {n}")
    space = get_space(space_name)
    chosen: dict[str, tuple[str, ArchConfig]] = {}
    for name in PRESETS.names():
        config = get_preset(name)
        if len(chosen) < n and space.contains(config):
            chosen[config.arch_id] = (name, config)
    extra = n - len(chosen)
    if extra:
        for config in space.sample_random(n + extra, seed):
            if len(chosen) < n and config.arch_id not in chosen:
                chosen[config.arch_id] = (f"sample_{config.arch_id[:6]}", config)
    return list(chosen.values())


def correlations(table: pd.DataFrame) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Kendall tau and Spearman rho between the short and long columns of each quality metric."""
    tau, rho = {}, {}
    for metric in QUALITY_KEYS:
        pair = table[[f"{metric}_short", f"{metric}_long"]].dropna()
        if len(pair) < 3 or pair.nunique().min() < 2:  # too few points, or a constant ranking
            tau[metric] = rho[metric] = None
            continue
        t = stats.kendalltau(pair.iloc[:, 0], pair.iloc[:, 1]).statistic
        r = stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic
        tau[metric] = None if math.isnan(t) else float(t)
        rho[metric] = None if math.isnan(r) else float(r)
    return tau, rho


def scatter_html(table: pd.DataFrame, short: Budget, long: Budget) -> str:
    """A self-contained Plotly page: short-budget vs long-budget value per metric, one point per architecture."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(QUALITY_KEYS), subplot_titles=QUALITY_KEYS)
    for col, metric in enumerate(QUALITY_KEYS, start=1):
        fig.add_trace(go.Scatter(
            x=table[f"{metric}_short"], y=table[f"{metric}_long"], mode="markers", name=metric,
            text=table["label"], error_x=dict(type="data", array=table[f"{metric}_short_ci"]),
            error_y=dict(type="data", array=table[f"{metric}_long_ci"]),
            hovertemplate="%{text}<br>short %{x:.4g}<br>long %{y:.4g}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"{short.steps} steps", row=1, col=col)
        fig.update_yaxes(title_text=f"{long.steps} steps", row=1, col=col)
    fig.update_layout(title="Proxy fidelity: short vs long training budget", showlegend=False,
                      width=320 * len(QUALITY_KEYS), height=420)
    return fig.to_html(include_plotlyjs=True, full_html=True)


def run_fidelity(space: str, n_archs: int, short: TrialSettings, long: TrialSettings, *, seeds: int = 1,
                 sample_seed: int = 0, confidence: float = 0.95, command: list[str] | None = None,
                 address: str | None = None, workers: int = 1, cpus_per_trial: float = 2.0,
                 gpus_per_trial: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> FidelityResult:
    """Train `n_archs` architectures at a short and a long budget and correlate the two rankings.

    Args:
        space: search space the sampled architectures come from.
        n_archs: architectures (presets first, then samples drawn with `sample_seed`).
        short, long: settings of the two budgets; same run folder, metrics and evaluator.
        seeds: proxy-training seeds per architecture and budget (metrics are averaged over them).
        progress: called (done, total) over all trials of both budgets.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be positive, got {seeds}")
    if short.run_dir != long.run_dir:
        raise UserError("both budgets must write to the same run folder")
    if not short.budget.steps < long.budget.steps:
        raise UserError(f"--short ({short.budget.steps} steps) must be fewer steps than --long "
                        f"({long.budget.steps})")
    archs = fidelity_archs(space, n_archs, sample_seed)
    manifest = dict(command=command or [], space=space, n_archs=n_archs, seeds=seeds, sample_seed=sample_seed,
                    budgets=dict(short=short.budget.to_dict(), long=long.budget.to_dict()),
                    metrics=list(short.metrics), device=short.device,
                    provenance=provenance(seeds=seeds, device=short.device))
    run, _ = open_run(Path(short.run_dir), KIND, manifest, same=("budgets",))
    info = prepare(short, [])
    per_budget = len(archs) * seeds
    jobs = {name: [Job(number=offset * per_budget + i * seeds + s, label=label, config=config, seed=s)
                   for i, (label, config) in enumerate(archs) for s in range(seeds)]
            for offset, name in enumerate(BUDGETS)}
    results: dict[str, list[dict]] = {}
    for offset, (name, settings) in enumerate(zip(BUDGETS, (short, long))):
        done_before = offset * per_budget

        def report(done: int, total: int, base: int = done_before) -> None:
            if progress:
                progress(base + done, 2 * per_budget)

        results[name] = run_jobs(jobs[name], settings, address=address, workers=workers,
                                 cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, progress=report)
    run.write_trials([{k: v for k, v in r.items() if k != "traceback"} | {"budget": name}
                      for name in BUDGETS for r in results[name]])
    rows = []
    for i, (label, config) in enumerate(archs):
        row: dict[str, Any] = dict(label=label, arch_id=config.arch_id, params=analytic_cost(config).params)
        for name in BUDGETS:
            trials = results[name][i * seeds:(i + 1) * seeds]
            ok = [t for t in trials if t.get("state") == "COMPLETE"]
            row[f"n_ok_{name}"] = len(ok)
            for metric in QUALITY_KEYS:
                row[f"{metric}_{name}"], row[f"{metric}_{name}_ci"] = mean_ci([t.get(metric) for t in ok], confidence)
        rows.append(row)
    table = pd.DataFrame(rows)
    tau, rho = correlations(table)
    prov = provenance(seeds=list(range(seeds)), device=short.device, evaluator=info.get("evaluator"),
                      budgets=manifest["budgets"], confidence=confidence)
    out = run.path / "fidelity"
    with atomic_path(out / "architectures.csv") as tmp:
        table.to_csv(tmp, index=False)
    corr = pd.DataFrame(dict(metric=list(QUALITY_KEYS), kendall_tau=[tau[m] for m in QUALITY_KEYS],
                             spearman_rho=[rho[m] for m in QUALITY_KEYS], n_archs=len(archs), seeds=seeds,
                             short_steps=short.budget.steps, long_steps=long.budget.steps))
    with atomic_path(out / "correlations.csv") as tmp:
        corr.to_csv(tmp, index=False)
    md = [f"# Proxy fidelity: {short.budget.steps} vs {long.budget.steps} steps", "",
          f"- {len(archs)} architectures ({', '.join(a for a, _ in archs)}), {seeds} seed(s) each",
          f"- training device: {short.device}; evaluator: {info.get('evaluator')}",
          f"- versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}; created {prov['created']}",
          "", "| metric | Kendall tau | Spearman rho |", "|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    md += [f"| {m} | {fmt(tau[m])} | {fmt(rho[m])} |" for m in QUALITY_KEYS]
    files = [out / "architectures.csv", out / "correlations.csv",
             write_text(out / "correlations.md", "\n".join(md) + "\n"),
             write_text(out / "scatter.html", scatter_html(table, short.budget, long.budget))]
    result = FidelityResult(run_dir=run.path, architectures=rows, kendall_tau=tau, spearman_rho=rho, files=files,
                            provenance=prov)
    files.append(write_json(out / "fidelity.json", result.to_dict()))
    return result
