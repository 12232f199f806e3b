"""Draw step of the report: Plotly figures from the section infos (no computation beyond layout)."""

from __future__ import annotations

import html
from collections import OrderedDict

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.ablation import AblationInfo
from reports.designs import DesignGroup, ParallelInfo
from reports.fidelity import BUDGETS, FidelityReportInfo
from reports.importance import TOP_K, ImportanceInfo
from reports.run_data import METRIC_LABELS
from reports.sections import ArchitectureInfo, FrontInfo, HypervolumeInfo

FADED = "rgba(120, 120, 140, 0.35)"
FRONT = "#d62728"
KNEE = "#1f77b4"
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420)


def _hover(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def front_figure(info: FrontInfo, knee_number: int) -> go.Figure:
    """2-D or 3-D scatter: dominated trials faded, Pareto trials joined, presets labelled, knee ringed."""
    three = len(info.axes) == 3
    fig = go.Figure()
    by_number = {p.number: p for p in info.points}
    for pareto in (False, True):
        pts = [p for p in info.points if p.pareto == pareto]
        if pareto and not three:
            pts = [by_number[n] for n in info.line]
        if not pts:
            continue
        coords = {k: [p.values[i] for p in pts] for i, k in enumerate("xyz"[: len(info.axes)])}
        common = dict(
            name="Pareto front" if pareto else "dominated", text=[html.escape(p.preset) for p in pts],
            hovertext=[_hover(p.hover) for p in pts], hovertemplate="%{hovertext}<extra></extra>",
            mode=("lines+markers+text" if pareto and not three else "markers+text"), textposition="top center")
        if three:
            fig.add_trace(go.Scatter3d(**coords, **common, marker=dict(size=5, color=FRONT if pareto else FADED)))
        else:
            ring = [3 if p.number == knee_number else 0 for p in pts]
            fig.add_trace(go.Scatter(**coords, **common, line=dict(color=FRONT), marker=dict(
                size=10, color=FRONT if pareto else FADED, line=dict(width=ring, color=KNEE))))
    if three:
        fig.update_layout(scene=dict(xaxis_title=info.labels[0], yaxis_title=info.labels[1], zaxis_title=info.labels[2]))
    else:
        knee = by_number.get(knee_number)
        if knee is not None and knee.pareto:
            fig.add_annotation(x=knee.values[0], y=knee.values[1], text="knee", showarrow=True, arrowhead=2, ax=30, ay=30)
        fig.update_layout(xaxis_title=info.labels[0], yaxis_title=info.labels[1])
    title = " vs ".join(reversed(info.labels)) if not three else "3-objective front"
    fig.update_layout(title=title, **LAYOUT)
    return fig


def hypervolume_figure(info: HypervolumeInfo) -> go.Figure:
    fig = go.Figure(go.Scatter(x=info.numbers, y=info.values, mode="lines+markers", name="hypervolume",
                               line=dict(shape="hv")))
    fig.update_layout(title="Hypervolume of the front found so far", xaxis_title="trial number",
                      yaxis_title="hypervolume (normalised)", **LAYOUT)
    return fig


def parallel_figure(info: ParallelInfo, group: DesignGroup) -> go.Figure:
    """One UNet part's design dimensions as parallel categories, ribbons coloured by the first objective.

    Parallel categories draw in SVG: a page of one figure per part would exceed the browser's WebGL context
    limit with WebGL parallel coordinates (three contexts each), and the oldest figures would go blank."""
    label = METRIC_LABELS.get(info.colour_by, info.colour_by)
    dims = []
    for axis in group.axes:
        names = dict(axis.ticks)
        dims.append(dict(label=html.escape(axis.name), values=[html.escape(names[v]) for v in axis.values],
                         categoryorder="array", categoryarray=[html.escape(t[1]) for t in axis.ticks]))
    fig = go.Figure(go.Parcats(dimensions=dims, hoveron="color", arrangement="freeform",
                               line=dict(color=info.colour, colorscale="Viridis", showscale=True, shape="hspline",
                                         colorbar=dict(title=html.escape(label)))))
    fig.update_layout(title=f"{html.escape(group.title)}: {', '.join(html.escape(d) for d in group.dimensions)}",
                      title_font_size=13, template="plotly_white", margin=dict(l=40, r=40, t=70, b=30), height=320)
    return fig


def importance_figure(infos: list[ImportanceInfo], top: int = 15) -> go.Figure:
    """Horizontal bars per objective for the `top` dimensions most important to any objective; whiskers are
    the 5-95% bootstrap intervals; hover gives how often a dimension was among the most important."""
    fig = go.Figure()
    best = {}
    for info in infos:
        for d in info.dimensions:
            best[d.name] = max(best.get(d.name, 0.0), d.importance)
    params = sorted(best, key=lambda p: -best[p])[:top]
    for info in infos:
        by_name = {d.name: d for d in info.dimensions}
        shown = [by_name.get(p) for p in params]
        fig.add_trace(go.Bar(
            y=params, x=[d.importance if d else 0.0 for d in shown], orientation="h", name=html.escape(info.objective),
            error_x=dict(type="data", symmetric=False,  # the full-data value can lie outside its bootstrap interval
                         array=[max(0.0, d.high - d.importance) if d else 0.0 for d in shown],
                         arrayminus=[max(0.0, d.importance - d.low) if d else 0.0 for d in shown]),
            hovertext=[f"{html.escape(p)}: {d.importance:.3f} (5-95%: {d.low:.3f}-{d.high:.3f}), in the top {TOP_K} of "
                       f"{d.top_share:.0%} of resamples" if d else "" for p, d in zip(params, shown)],
            hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(title=f"Design-dimension importances per objective (top {len(params)})", barmode="group",
                      xaxis_title="importance (bootstrap 5-95% whiskers)", template="plotly_white",
                      margin=dict(l=140, r=20, t=50, b=50),
                      height=max(320, 22 * len(params) * max(1, len(fig.data)) // 2 + 120),
                      yaxis=dict(autorange="reversed"))
    return fig


def latency_figure(info: ArchitectureInfo) -> go.Figure:
    """Per-block latency, one bar per block in forward order, coloured by UNet part."""
    parts: OrderedDict[str, list] = OrderedDict()
    for path, part, ms in info.blocks:
        parts.setdefault(part, []).append((path, ms))
    fig = go.Figure()
    for part, blocks in parts.items():
        fig.add_trace(go.Bar(x=[html.escape(p) for p, _ in blocks], y=[ms for _, ms in blocks], name=part))
    total = sum(ms for _, _, ms in info.blocks)
    fig.update_layout(title=f"Trial {info.number}: latency per block (sum {total:.1f} ms)", yaxis_title="ms",
                      xaxis=dict(categoryorder="array", categoryarray=[html.escape(p) for p, _, _ in info.blocks],
                                 tickangle=-60, tickfont=dict(size=9)),
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=160), height=420)
    return fig


def ablation_figures(info: AblationInfo) -> list[tuple[str, go.Figure]]:
    """Cumulative rows: waterfalls of latency and FID along the path (each bar is what one step changed).
    Leave-one-out rows: FID change when each step is left out of the full path, with its interval."""
    table = info.table
    mode = table["mode"] if "mode" in table.columns else pd.Series(["cumulative"] * len(table), index=table.index)
    out: list[tuple[str, go.Figure]] = []
    path = table[mode == "cumulative"]
    for metric, label in (("latency_ms", "latency (ms)"), ("fid", "FID")):
        if metric not in path.columns or path[metric].isna().all() or len(path) < 2:
            continue
        values = path[metric].astype(float)
        fig = go.Figure(go.Waterfall(
            x=[html.escape(str(s)) for s in path["step"]], measure=["absolute"] + ["relative"] * (len(path) - 1),
            y=[values.iloc[0]] + list(values.diff().iloc[1:]), connector=dict(line=dict(width=1))))
        fig.update_layout(title=f"Ablation {html.escape(info.name)}: {label} along the cumulative path",
                          yaxis_title=label, **LAYOUT)
        out.append((f"waterfall-{metric}", fig))
    loo = table[mode == "leave-one-out"]
    if "fid" in loo.columns and len(loo) > 1 and loo["fid"].notna().any():
        full = loo[loo["step"] == "full_path"]
        rest = loo[loo["step"] != "full_path"]
        base = float(full["fid"].iloc[0]) if len(full) else float("nan")
        delta = rest["delta_prev_fid"] if "delta_prev_fid" in rest.columns else rest["fid"] - base
        err = rest["fid_ci"].tolist() if "fid_ci" in rest.columns else None
        fig = go.Figure(go.Bar(x=[html.escape(str(s)) for s in rest["step"]], y=delta,
                               error_y=dict(type="data", array=err) if err else None))
        fig.update_layout(title=f"Ablation {html.escape(info.name)}: FID change when a step is left out",
                          yaxis_title="FID - FID(full path)", **LAYOUT)
        out.append(("leave-one-out-fid", fig))
    return out


def fidelity_figure(info: FidelityReportInfo) -> go.Figure:
    """Short- vs reference-budget seed mean per metric, one point per architecture, t-intervals as error bars."""
    metrics = [a.metric for a in info.agreements]
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[METRIC_LABELS[m] for m in metrics],
                        vertical_spacing=0.3 / rows)
    wide = {b: info.means[info.means["budget"] == b].set_index("arch_id") for b in BUDGETS}
    archs = [a for a in wide["short"].index if a in wide["reference"].index]
    for k, metric in enumerate(metrics):
        row, col = k // cols + 1, k % cols + 1
        err = {b: [info.half_widths.get((a, b, metric)) or 0.0 for a in archs] for b in BUDGETS}
        fig.add_trace(go.Scatter(
            x=[wide["short"].loc[a, f"{metric}_mean"] for a in archs],
            y=[wide["reference"].loc[a, f"{metric}_mean"] for a in archs], mode="markers", name=METRIC_LABELS[metric],
            text=[html.escape(str(wide["short"].loc[a, "label"])) for a in archs],
            error_x=dict(type="data", array=err["short"]), error_y=dict(type="data", array=err["reference"]),
            hovertemplate="%{text}<br>short %{x:.4g}<br>reference %{y:.4g}<extra></extra>"), row=row, col=col)
        fig.update_xaxes(title_text="short", row=row, col=col)
        fig.update_yaxes(title_text="reference", row=row, col=col)
    fig.update_layout(title="Proxy fidelity: short vs reference budget (seed means)", showlegend=False,
                      template="plotly_white", height=120 + 320 * rows, margin=dict(l=60, r=20, t=80, b=50))
    return fig
