"""Layout of ablation tables (a section of the search page) and of an ablation run folder's whole page."""

from __future__ import annotations

from reports import figures
from reports.ablation import QUALITY_METRICS, AblationInfo, AblationReportInfo
from reports.layout import Page, Report, esc, fmt
from reports.run_data import METRIC_LABELS

_DELTA = {"cumulative": "vs previous row", "leave-one-out": "vs full path"}


def _num(value, spec: str) -> str:
    return "—" if value is None or value != value else spec.format(value)


def _table(ab: AblationInfo) -> str:
    t = ab.table
    latency = [c for c in t.columns if c.startswith("latency_ms_")] or [c for c in ("latency_ms",) if c in t.columns]
    metrics = [m for m in QUALITY_METRICS if m in t.columns and t[m].notna().any()]
    mode = t["mode"].iloc[0] if "mode" in t.columns and len(t) else "cumulative"
    head = ["step", "params", "MACs"] + [c.replace("latency_ms_", "") + " ms" if c != "latency_ms" else "latency ms"
                                         for c in latency]
    head += [METRIC_LABELS[m] for m in metrics] + [f"Δ {METRIC_LABELS[m]} {_DELTA.get(mode, '')}" for m in metrics]
    head += ["Δ latency ms", "seeds ok"]
    rows = []
    for i, (_, r) in enumerate(t.iterrows()):
        cells = [esc(r["step"])] + [fmt(k, None if r.get(k) is None or r[k] != r[k] else float(r[k]))
                                    for k in ("params", "macs")]
        cells += [_num(r[c], "{:.1f}") for c in latency]
        for m in metrics:
            ci = r.get(f"{m}_ci")
            cells.append(_num(r[m], "{:.4g}") + ("" if ci is None or ci != ci else f" ± {ci:.2g}"))
        for m in metrics:
            ref = ab.reference[i]
            delta = r.get(f"delta_prev_{m}")
            if (delta is None or delta != delta) and ref is not None:
                delta = r[m] - t[m].iloc[ref]
            label = ab.verdicts[m][i]
            cells.append(_num(delta, "{:+.3g}") + (f' <span class="spread">({esc(label)})</span>' if label else ""))
        cells.append(_num(r.get("delta_prev_latency_ms"), "{:+.1f}"))
        seeds = f"{int(r['n_ok'])}/{int(r['n_seeds'])}" if "n_ok" in t.columns and r["n_ok"] == r["n_ok"] else "—"
        cells.append(seeds)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<div class="wide"><table class="ablation" id="ablation-{esc(ab.name)}"><tr>{header}</tr>'
            f'{"".join(rows)}</table></div>')


def ablation_section(page: Page, tables: list[AblationInfo], heading: str = "h3") -> None:
    """Each table with its delta labels, then its waterfalls and leave-one-out bars."""
    for k, ab in enumerate(tables):
        page.add(f"<{heading}>{esc(ab.name)}</{heading}>")
        page.add(_table(ab))
        for j, (_, fig) in enumerate(figures.ablation_figures(ab)):
            page.figure(f"ablation-{k}-{j}", fig)
    if tables:
        page.add('<p class="spread">Labels: a delta is "better" or "worse" only when it exceeds the seed spread '
                 "(|Δ| > √(ci₁² + ci₂²), the interval of a difference of two means); smaller ones are "
                 '"within seed spread"; rows measured with one seed are "single seed: not qualified by seed spread". '
                 "Latency comes from a lookup table and has no seed spread.</p>")


def render_ablation(info: AblationReportInfo) -> Report:
    """The HTML page of an ablation run folder."""
    page = Page()
    page.add(f"<h1>Ablation report: {esc(info.name)}</h1>")
    page.rows(info.header)
    page.notes(info.notes)
    page.add("<h2>Ablation tables</h2>")
    ablation_section(page, info.tables)
    if info.failures:
        page.add("<h2>Failed seeds</h2><ul>" + "".join(f"<li>{esc(f)}</li>" for f in info.failures) + "</ul>")
    page.add("<h2>Samples</h2>")
    if info.samples:
        page.grids(info.samples)
    else:
        page.notes(["No sample grids recorded (quality was not measured, or every seed failed)."])
    return page.document(f"Ablation report: {info.name}")
