"""The report of a proxy-fidelity run folder (`nas fidelity`): does the short budget rank like the reference?

Reads what the study writes under `fidelity/`: `correlations.csv` (per metric: Kendall tau and Spearman rho
with bootstrap intervals over architectures, seed ceilings, seed spread, sign agreement, seconds per trial),
`architectures.csv` (per architecture and budget: seed mean, sd and count of each metric) and `fidelity.json`
(provenance, with the intervals' confidence).

What a reader is entitled to: a rank agreement only when tau's interval excludes 0; and for each budget, how
many pairs of architectures differ by less than their seed spread (`seed_spread.verdict` on t-intervals of
the seed means), whose order the data do not settle.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from core.errors import UserError
from core.metrics import METRICS, names
from core.run_folder import RunFolder
from reports.proxy import proxy_summary
from reports.run_parts import provenance_rows
from reports.seed_spread import SINGLE, WITHIN, verdict

BUDGETS = ("short", "reference")
QUALITY_METRICS = names("quality")  # the registry's proxy-quality metrics, in its order


@dataclass(frozen=True)
class AgreementRow:
    """Rank agreement of the two budgets for one metric, as the study computed it, and its reading."""

    metric: str
    n: int  # architectures with both values
    tau: float | None  # Kendall tau (None: undefined, e.g. a constant ranking)
    tau_low: float | None  # bootstrap interval over architectures
    tau_high: float | None
    rho: float | None  # Spearman rho
    rho_low: float | None
    rho_high: float | None
    ceiling_tau: float | None  # the same agreement between two seeds of the short budget
    seed_sd: float | None  # median per-architecture seed sd at the short budget
    reading: str  # what the numbers entitle the reader to say
    pairs: dict[str, tuple[int, int] | None]  # budget -> (pairs within seed spread, pairs); None: single seed
    target: str | None = None  # the reference's quality metric the short signal is also ranked against
    target_tau: tuple[float | None, float | None, float | None] = (None, None, None)  # tau, low, high


@dataclass
class FidelityReportInfo:
    name: str  # run name
    header: list[tuple[str, str]]
    confidence: float  # coverage of every interval
    agreements: list[AgreementRow]
    means: pd.DataFrame  # architectures.csv: arch_id, budget, label, <metric>_mean / _std / _count
    half_widths: dict[tuple[str, str, str], float | None]  # (arch id, budget, metric) -> t-interval half-width


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def half_width(sd: float | None, count: float | None, confidence: float) -> float | None:
    """Half-width of the t-interval of a seed mean (None with fewer than two seeds), as `mean_ci` computes it."""
    if sd is None or count is None or count < 2:
        return None
    return float(stats.t.ppf(0.5 + confidence / 2, count - 1)) * sd / math.sqrt(count)  # 0 for identical seeds


def reading(tau: float | None, low: float | None, high: float | None, n: int, confidence: float) -> str:
    if tau is None or low is None or high is None:
        return "undefined: fewer than 3 architectures with both values, or a constant ranking"
    if low > 0:
        return f"the short budget ranks like the reference (tau's {confidence:.0%} interval excludes 0)"
    if high < 0:
        return f"the short budget ranks opposite to the reference (tau's {confidence:.0%} interval is below 0)"
    return (f"not distinguishable from unrelated rankings: tau's {confidence:.0%} interval includes 0 "
            f"({n} architectures)")


def _pairs(means: pd.DataFrame, widths: dict, metric: str, budget: str) -> tuple[int, int] | None:
    part = means[means["budget"] == budget]
    labels = [verdict(_float(a[f"{metric}_mean"]), widths.get((a["arch_id"], budget, metric)),
                      _float(b[f"{metric}_mean"]), widths.get((b["arch_id"], budget, metric)),
                      METRICS[metric].maximize)
              for (_, a), (_, b) in itertools.combinations(part.iterrows(), 2)]
    labels = [v for v in labels if v]
    if not labels or SINGLE in labels:
        return None
    return sum(v == WITHIN for v in labels), len(labels)


def compute_fidelity_report(run: RunFolder) -> FidelityReportInfo:
    """The fidelity report's info.

    Raises:
        UserError: the study has written no tables yet.
    """
    manifest = run.manifest()
    folder = run.path / "fidelity"
    try:
        corr = pd.read_csv(folder / "correlations.csv")
        means = pd.read_csv(folder / "architectures.csv")
    except (OSError, ValueError) as err:
        raise UserError(f"{run.path}: the fidelity run has no tables yet (fidelity/*.csv: "
                        f"{getattr(err, 'strerror', None) or err}); finish or resume it with `nas fidelity`") from None
    try:
        saved = json.loads((folder / "fidelity.json").read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    confidence = float((saved.get("provenance") or {}).get("confidence", 0.95))
    metrics = [m for m in QUALITY_METRICS if f"{m}_mean" in means.columns]
    widths = {(r["arch_id"], r["budget"], m): half_width(_float(r[f"{m}_std"]), _float(r[f"{m}_count"]), confidence)
              for _, r in means.iterrows() for m in metrics}
    rows = []
    for r in corr.to_dict("records"):
        m = r["metric"]
        if m not in metrics:
            continue
        tau, low, high = (_float(r.get(k)) for k in ("tau", "tau_low", "tau_high"))
        rows.append(AgreementRow(
            m, int(r.get("n") or 0), tau, low, high, _float(r.get("rho")), _float(r.get("rho_low")),
            _float(r.get("rho_high")), _float(r.get("ceiling_short_tau")), _float(r.get("seed_sd_short")),
            reading(tau, low, high, int(r.get("n") or 0), confidence),
            {b: _pairs(means, widths, m, b) for b in BUDGETS},
            r.get("target") if isinstance(r.get("target"), str) else None,
            tuple(_float(r.get(k)) for k in ("target_tau", "target_tau_low", "target_tau_high"))))
    budgets, seeds = manifest.get("budgets") or {}, manifest.get("seeds") or {}

    def describe(name: str) -> str:
        b = budgets.get(name) or {}
        return (f"{b.get('steps', '?')} steps, {b.get('image_size', '?')} px, width / {b.get('width_divisor', '?')}; "
                f"{seeds.get(name, '?')} seed(s)")

    header = [("kind", "proxy fidelity (nas fidelity)"), ("panel", str(manifest.get("panel", "not recorded"))),
              ("architectures", ", ".join(map(str, manifest.get("archs") or [])) or "not recorded"),
              ("short budget", describe("short")), ("reference budget", describe("reference")),
              ("short proxies", proxy_summary((manifest.get("proxy") or {}).get("short"))),
              ("training device", str(manifest.get("device", "not recorded"))),
              ("intervals", f"{confidence:.0%}: bootstrap over architectures for tau and rho, t-intervals over "
                            "seeds for the means")]
    try:
        trials = pd.read_csv(folder / "trials.csv")
    except (OSError, ValueError):
        trials = pd.DataFrame()
    return FidelityReportInfo(str(manifest.get("name", run.path.name)), header + provenance_rows(manifest, trials),
                              confidence, rows, means, widths)
