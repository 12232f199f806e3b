"""Layout of a proxy-fidelity run folder's page."""

from __future__ import annotations

from reports import figures
from reports.fidelity import BUDGETS, FidelityReportInfo
from reports.layout import Page, Report, esc
from reports.run_data import METRIC_LABELS


def _ci(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" + ("" if low is None or high is None else f" [{low:.2f}, {high:.2f}]")


def _pairs(pairs: tuple[int, int] | None) -> str:
    return "single seed: not qualified by seed spread" if pairs is None else f"{pairs[0]} of {pairs[1]}"


def render_fidelity(info: FidelityReportInfo) -> Report:
    """The HTML page of a fidelity run folder."""
    page = Page()
    page.add(f"<h1>Proxy fidelity report: {esc(info.name)}</h1>")
    page.rows(info.header)
    page.add("<h2>Rank agreement: short vs reference budget</h2>")
    rows = []
    for a in info.agreements:
        rows.append(f"<tr><td>{esc(METRIC_LABELS[a.metric])}</td><td>{a.n}</td><td>{_ci(a.tau, a.tau_low, a.tau_high)}</td>"
                    f"<td>{_ci(a.rho, a.rho_low, a.rho_high)}</td><td>{_ci(a.ceiling_tau, None, None)}</td>"
                    f"<td>{'—' if a.seed_sd is None else f'{a.seed_sd:.3g}'}</td>"
                    + "".join(f"<td>{esc(_pairs(a.pairs[b]))}</td>" for b in BUDGETS) + f"<td>{esc(a.reading)}</td>"
                    f"<td>{_ci(*a.target_tau)}</td></tr>")
    target = next((a.target for a in info.agreements if a.target), None)
    target_head = f"tau vs reference {esc(METRIC_LABELS.get(target, target))} [{info.confidence:.0%}]" if target \
        else "tau vs reference target"
    pct = f"{info.confidence:.0%}"
    page.add(f'<table id="correlations"><tr><th>metric</th><th>architectures</th><th>Kendall tau [{pct}]</th>'
             f"<th>Spearman rho [{pct}]</th><th>seed ceiling tau (short)</th><th>median seed sd (short)</th>"
             "<th>short pairs within seed spread</th><th>reference pairs within seed spread</th><th>reading</th>"
             f"<th>{target_head}</th></tr>"
             + "".join(rows) + "</table>")
    page.add('<p class="spread">A rank agreement is stated only where tau\'s interval excludes 0. The seed ceiling is '
             "the agreement between two seeds of the short budget: no budget can rank better than its own seeds "
             "agree. Pairs of architectures whose seed means differ by less than their seed spread "
             "(|Δ| ≤ √(ci₁² + ci₂²)) have no settled order. The last column ranks each short signal against the "
             "reference's target quality metric, both oriented so that a positive tau calls the same architectures "
             "better: a cheap signal earns its place by predicting the quality the reference measures.</p>")
    if info.agreements:
        page.figure("fidelity-scatter", figures.fidelity_figure(info))
    page.add("<h2>Architectures: seed means ± t-interval (seeds)</h2>")
    metrics = [a.metric for a in info.agreements]
    head = "".join(f"<th>{esc(METRIC_LABELS[m])} {b}</th>" for m in metrics for b in BUDGETS)
    body = []
    by_arch = {(r["arch_id"], r["budget"]): r for _, r in info.means.iterrows()}
    for arch_id in dict.fromkeys(info.means["arch_id"]):
        label = next(r["label"] for (a, _), r in by_arch.items() if a == arch_id)
        cells = []
        for m in metrics:
            for b in BUDGETS:
                r = by_arch.get((arch_id, b))
                mean = None if r is None or r[f"{m}_mean"] != r[f"{m}_mean"] else r[f"{m}_mean"]
                hw = info.half_widths.get((arch_id, b, m))
                cells.append("—" if mean is None else f"{mean:.4g}" + ("" if hw is None else f" ± {hw:.2g}")
                             + f" ({int(r[f'{m}_count'])})")
        body.append(f"<tr><td>{esc(label)}</td><td><code>{esc(arch_id)}</code></td>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    page.add(f'<div class="wide"><table id="architectures"><tr><th>architecture</th><th>arch id</th>{head}</tr>'
             f"{''.join(body)}</table></div>")
    return page.document(f"Proxy fidelity report: {info.name}")
