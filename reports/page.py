"""Layout step of the report: one self-contained HTML page (plotly.js embedded once, images inline).

Every string that comes from the run (names, commands, captions, paths, presets, table cells) goes through
`html.escape`; figure data is embedded by Plotly's JSON encoder, which escapes `<`, `>` and `/`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from reports import figures
from reports.run_data import METRIC_LABELS
from reports.sections import TABLE_METRICS, ReportInfo

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:0 24px 48px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:40px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f8} tr.knee{background:#e8f1fb;font-weight:600} .estimate{color:#b00020;font-weight:700}
.note{color:#8a5a00;background:#fff7e0;padding:6px 10px;border-radius:4px} .arch{display:flex;gap:24px;flex-wrap:wrap}
.arch figure{margin:0} .arch img{image-rendering:pixelated;border:1px solid #ccc;max-width:320px}
.design{font-family:ui-monospace,monospace;font-size:12px} figcaption{font-size:12px;color:#555;max-width:320px}
"""


@dataclass
class Report:
    """The rendered page and the figures in it (in page order, for PNG export and the browser test)."""

    html: str
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)  # (figure id, figure)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric in ("params", "macs"):
        return f"{value / 1e6:,.1f}M" if metric == "params" else f"{value / 1e9:,.1f}G"
    return f"{value:.4g}"


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[tuple[str, go.Figure]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig_id: str, fig: go.Figure) -> None:
        self.figures.append((fig_id, fig))
        self.add(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=fig_id,
                             config={"displaylogo": False, "responsive": True}))

    def notes(self, notes: list[str]) -> None:
        for note in notes:
            self.add(f'<p class="note">{_e(note)}</p>')


def _header(page: _Page, info: ReportInfo) -> None:
    h = info.header
    measured = {True: " (measured; block sums + end-to-end calibration)",
                False: " (measured; sums of block latencies, uncalibrated)"}.get(h.latency_calibrated, " (measured)")
    device = _e(h.device) + (' <span class="estimate">ESTIMATE (roofline profile, not measured)</span>'
                             if h.latency_estimate else measured)
    other = ", ".join(f"{n} {_e(s.lower())}" for s, n in h.n_other.items())
    rows = [
        ("space", _e(h.space)), ("objectives", ", ".join(_e(o) for o in h.objectives)), ("sampler", _e(h.sampler)),
        ("seed", _e(h.seed)), ("trials", f"{h.n_complete} complete, {h.n_failed} failed"
                                         + (f", {other}" if other else "") + f" (planned: {_e(h.n_planned)})"),
        ("latency device", device), ("latency table (LUT)", _e(h.lut)), ("image size", _e(h.image_size)),
        ("evaluator features", _e(h.feature_source)), ("command", f'<code>{_e(h.command)}</code>'),
        ("created", _e(h.created)),
        ("versions", ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(h.versions.items()))),
    ]
    page.add(f"<h1>NAS report: {_e(h.name)}</h1>")
    page.add("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    page.notes(h.notes)


def _pareto_table(page: _Page, info: ReportInfo) -> None:
    p = info.pareto
    page.add(f"<h2>Pareto set ({len(p.rows)} architectures)</h2>")
    page.add(f"<p>From {_e(p.source)}. Knee point (★): {_e(p.knee_definition)}.</p>")
    head = "".join(f"<th>{_e(METRIC_LABELS[m])}</th>" for m in TABLE_METRICS)
    rows = []
    for r in p.rows:
        mark = " ★ knee" if r.knee else ""
        preset = f" ({_e(r.preset)})" if r.preset else ""
        cells = "".join(f"<td>{_fmt(m, r.metrics[m])}</td>" for m in TABLE_METRICS)
        rows.append(f'<tr class="{"knee" if r.knee else ""}"><td>{r.number}{mark}</td><td>{_e(r.arch_id)}{preset}</td>'
                    f'<td class="design">{_e(r.design)}</td>{cells}</tr>')
    page.add(f'<table id="pareto-table"><tr><th>trial</th><th>arch id</th><th>design (channels, ResNets down/up, '
             f'transformers per ResNet; mid; options)</th>{head}</tr>{"".join(rows)}</table>')


def _architectures(page: _Page, info: ReportInfo) -> None:
    page.add("<h2>Pareto architectures: samples and latency per block</h2>")
    for k, a in enumerate(info.architectures):
        title = f"Trial {a.number} · {_e(a.arch_id)}" + (f" ({_e(a.preset)})" if a.preset else "")
        metrics = ", ".join(f"{_e(METRIC_LABELS[m])} {_fmt(m, v)}" for m, v in a.metrics.items() if v is not None)
        page.add(f'<h3>{title}{" ★ knee" if a.knee else ""}</h3><p>{metrics}</p><div class="arch">')
        if a.grid_png:
            captions = f" (captions: {'; '.join(_e(c) for c in a.captions)})" if a.captions else ""
            page.add(f'<figure><img alt="samples of trial {a.number}" src="data:image/png;base64,{a.grid_png}">'
                     f"<figcaption>Samples of trial {a.number}{captions}</figcaption></figure>")
        else:
            page.notes([a.grid_note])
        page.add("<div style='flex:1;min-width:480px'>")
        if a.blocks:
            page.figure(f"latency-{k}", figures.latency_figure(a))
        else:
            page.notes([a.latency_note])
        page.add("</div></div>")


def _ablation(page: _Page, info: ReportInfo) -> None:
    if not info.ablations:
        return
    page.add("<h2>Ablation study</h2>")
    for k, ab in enumerate(info.ablations):
        page.add(f"<h3>{_e(ab.name)}</h3>")
        page.add(ab.table.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.4g}", escape=True,
                                  classes="ablation"))
        for j, (_, fig) in enumerate(figures.ablation_figures(ab)):
            page.figure(f"ablation-{k}-{j}", fig)


def render(info: ReportInfo) -> Report:
    """The HTML page of a computed report."""
    page = _Page()
    _header(page, info)
    _pareto_table(page, info)
    page.add("<h2>Fronts</h2>")
    for k, front in enumerate(info.fronts_2d):
        page.figure(f"front-{k}", figures.front_figure(front, info.pareto.knee_number))
    if info.front_3d is not None:
        page.figure("front-3d", figures.front_figure(info.front_3d, info.pareto.knee_number))
    page.notes([n for n in info.notes if "front" in n])
    page.add("<h2>Hypervolume history</h2>")
    page.add(f"<p>{_e(info.hypervolume.normalisation)}.</p>")
    page.figure("hypervolume", figures.hypervolume_figure(info.hypervolume))
    page.add("<h2>Design dimensions</h2>")
    colour = METRIC_LABELS[info.parallel.colour_by]
    page.figure("parallel", figures.parallel_figure(info.parallel, colour))
    page.add("<h2>Importances</h2>")
    if any(i.importances for i in info.importances):
        page.figure("importances", figures.importance_figure(info.importances))
    page.add("<ul>" + "".join(f"<li>{_e(i.objective)}: {_e(i.note)}</li>" for i in info.importances) + "</ul>")
    _architectures(page, info)
    _ablation(page, info)
    page.notes([n for n in info.notes if "front" not in n])
    title = _e(info.header.name)
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>NAS report: {title}</title>'
           f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>{''.join(page.parts)}</body></html>\n")
    return Report(doc, page.figures)
