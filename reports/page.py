"""Layout of the search report: one self-contained HTML page (see `layout` for escaping and embedding)."""

from __future__ import annotations

from reports import figures
from reports.ablation_page import ablation_section
from reports.designs import DesignTableInfo
from reports.image_latency import image_latency_section
from reports.importance import ImportanceSection
from reports.layout import Page, Report, esc, fmt
from reports.run_data import METRIC_LABELS
from reports.rungs import rungs_section
from reports.sections import TABLE_METRICS, ReportInfo


def _header(page: Page, info: ReportInfo) -> None:
    h = info.header
    measured = {True: " (measured; block sums + end-to-end calibration)",
                False: " (measured; sums of block latencies, uncalibrated)"}.get(h.latency_calibrated, " (measured)")
    device = esc(h.device) + (' <span class="estimate">ESTIMATE (roofline profile, not measured)</span>'
                              if h.latency_estimate else measured)
    other = ", ".join(f"{n} {esc(s.lower())}" for s, n in h.n_other.items())
    rows = [
        ("space", esc(h.space)), ("objectives", ", ".join(esc(o) for o in h.objectives)), ("sampler", esc(h.sampler)),
        ("seed", esc(h.seed)), ("trials", f"{h.n_complete} complete, {h.n_failed} failed"
                                          + (f", {other}" if other else "") + f" (planned: {esc(h.n_planned)})"),
        ("latency device", device), ("latency table (LUT)", esc(h.lut)), ("image size", esc(h.image_size)),
        ("evaluator features", esc(h.feature_source)), ("command", f"<code>{esc(h.command)}</code>"),
        ("created", esc(h.created)),
        ("versions", ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(h.versions.items()))),
    ]
    page.add(f"<h1>NAS report: {esc(h.name)}</h1>")
    page.rows(rows, escape=False)
    page.notes(h.notes)


def _pareto_table(page: Page, info: ReportInfo) -> None:
    p = info.pareto
    page.add(f"<h2>Pareto set ({len(p.rows)} architectures)</h2>")
    page.add(f"<p>From {esc(p.source)}. Knee point (★): {esc(p.knee_definition)}.</p>")
    if p.spread:
        page.add(f'<p class="spread">{esc(p.spread)}</p>')
    shown = [m for m in TABLE_METRICS if any(r.metrics[m] is not None for r in p.rows)]
    head = "".join(f"<th>{esc(METRIC_LABELS[m])}</th>" for m in shown)
    rows = []
    for r in p.rows:
        mark = " ★ knee" if r.knee else ""
        preset = f" ({esc(r.preset)})" if r.preset else ""
        cells = "".join(f"<td>{fmt(m, r.metrics[m])}</td>" for m in shown)
        rows.append(f'<tr class="{"knee" if r.knee else ""}"><td>{r.number}{mark}</td><td>{esc(r.arch_id)}{preset}</td>'
                    f'<td class="design">{esc(r.design)}</td>{cells}</tr>')
    page.add(f'<table id="pareto-table"><tr><th>trial</th><th>arch id</th><th>design (channels, ResNets down/up, '
             f'transformers per ResNet; mid; options)</th>{head}</tr>{"".join(rows)}</table>')


def _designs(page: Page, d: DesignTableInfo) -> None:
    page.add("<h2>Pareto designs side by side</h2>")
    page.add(f"<p>The anchors and every Pareto design, one column each; a cell is shaded where it differs from "
             f"{esc(d.columns[0].title)}. {len(d.folded)} fields equal in every column are folded below.</p>")
    head = "".join(f"<th>{esc(c.title)}<br><code>{esc(c.arch_id)}</code></th>" for c in d.columns)
    rows = []
    for f in d.fields:
        base = d.columns[0].values.get(f, "—")
        values = [c.values.get(f, "—") for c in d.columns]
        cells = "".join(f'<td class="{"changed" if v != base else ""}">{esc(v)}</td>' for v in values)
        rows.append(f"<tr><th>{esc(f)}</th>{cells}</tr>")
    page.add(f'<div class="wide"><table id="design-table" class="design"><tr><th>field</th>{head}</tr>'
             f'{"".join(rows)}</table></div>')
    if d.folded:
        same = ", ".join(f"{esc(f)} = {esc(d.columns[0].values.get(f, '—'))}" for f in d.folded)
        page.add(f"<details><summary>{len(d.folded)} fields equal in every column</summary>"
                 f'<p class="design">{same}</p></details>')
    page.add("<h3>What each front member changed</h3><ul id=\"design-diffs\">")
    for m in d.diffs:
        title = f"trial {m.number}" + (f" ({esc(m.preset)})" if m.preset else "") + (" ★ knee" if m.knee else "")
        parts = [f"vs {esc(a)}: " + (f"{len(c)} changes: {esc('; '.join(c))}" if c else "identical")
                 for a, c in m.changes.items()]
        page.add(f"<li><strong>{title}</strong> <code>{esc(m.arch_id)}</code><br>{'<br>'.join(parts)}</li>")
    page.add("</ul>")


def _importances(page: Page, section: ImportanceSection) -> None:
    page.add("<h2>Importances</h2>")
    page.add(f'<p id="importance-message">{esc(section.message)}</p>')
    if not section.shown:
        return
    page.figure("importances", figures.importance_figure(section.infos))
    page.add("<ul>" + "".join(f"<li>{esc(i.objective)}: {esc(i.note)}</li>" for i in section.infos) + "</ul>")
    page.notes(section.notes)


def _architectures(page: Page, info: ReportInfo) -> None:
    page.add("<h2>Pareto architectures: samples and latency per block</h2>")
    for k, a in enumerate(info.architectures):
        title = f"Trial {a.number} · {esc(a.arch_id)}" + (f" ({esc(a.preset)})" if a.preset else "")
        metrics = ", ".join(f"{esc(METRIC_LABELS[m])} {fmt(m, v)}" for m, v in a.metrics.items() if v is not None)
        page.add(f'<h3>{title}{" ★ knee" if a.knee else ""}</h3><p>{metrics}</p><div class="arch">')
        if a.grid_png:
            captions = f" (captions: {'; '.join(esc(c) for c in a.captions)})" if a.captions else ""
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


def render(info: ReportInfo) -> Report:
    """The HTML page of a computed search report."""
    page = Page()
    _header(page, info)
    _pareto_table(page, info)
    _designs(page, info.designs)
    page.add("<h2>Fronts</h2>")
    for k, front in enumerate(info.fronts_2d):
        page.figure(f"front-{k}", figures.front_figure(front, info.pareto.knee_number))
    if info.front_3d is not None:
        page.figure("front-3d", figures.front_figure(info.front_3d, info.pareto.knee_number))
    page.notes([n for n in info.notes if "front" in n])
    if info.image_latency is not None:
        image_latency_section(page, info.image_latency)
    page.add("<h2>Hypervolume history</h2>")
    page.add(f"<p>{esc(info.hypervolume.normalisation)}.</p>")
    page.figure("hypervolume", figures.hypervolume_figure(info.hypervolume))
    if info.rungs is not None:  # runs with a trial scheduler
        rungs_section(page, info.rungs)
    page.add("<h2>Design dimensions</h2>")
    page.add(f"<p>One figure per UNet part (global choices, each level, the bottleneck): each complete trial is a "
             f"ribbon through its choices, coloured by {esc(METRIC_LABELS[info.parallel.colour_by])}. n/a: the "
             "dimension is inactive in that design (e.g. a fourth level's channels in a 3-level UNet).</p>"
             '<div class="groups">')
    for k, group in enumerate(info.parallel.groups):
        page.figure(f"parallel-{k}", figures.parallel_figure(info.parallel, group))
    page.add("</div>")
    _importances(page, info.importances)
    _architectures(page, info)
    if info.ablations:
        page.add("<h2>Ablation study</h2>")
        ablation_section(page, info.ablations)
    page.notes([n for n in info.notes if "front" not in n])
    return page.document(f"NAS report: {info.header.name}")
