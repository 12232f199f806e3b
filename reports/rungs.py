"""The "Rungs" section of a search report: how far each trial got under the run's trial scheduler.

Shown only for runs with a scheduler (`--scheduler asha|mo-asha`). For every trial: the rung signal it reported
at each rung (the held-out loss standing for its quality objectives), the budget it reached (training steps),
and, for a trial the scheduler stopped, why (e.g. "mo-asha: rank 5 of 9 at rung 50 steps, top 3 continue").
A complete trial's last point is its full-budget value of the same signal.

`rungs_info` computes (no Plotly); `rungs_figure` draws; `rungs_section` lays out the section of the page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.fidelity_record import summary as fidelity_summary
from core.metrics import METRICS

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from reports.layout import Page
    from reports.run_data import RunData

SIGNALS = ("val_loss_grid", "val_loss")  # rung signals, in order of preference for the figure


@dataclass(frozen=True)
class TrialRungs:
    """One trial's way through the rungs."""

    number: int
    preset: str
    state: str  # trials-table state: COMPLETE, STOPPED, INTERRUPTED, FAIL, ...
    points: list[tuple[int, float]]  # (training step, signal), rungs then the full budget (complete trials)
    reached: int  # training steps the trial reached
    reason: str  # why it stopped ("" when it did not stop at a rung)


@dataclass(frozen=True)
class RungsInfo:
    """The section's data."""

    scheduler: str  # "asha" or "mo-asha"
    eta: int
    budgets: list[int]  # rung budgets (steps), below the full budget
    full: int  # the full budget (steps)
    signal: str  # the plotted rung signal (a registry metric name)
    trials: list[TrialRungs]
    reached: dict[int, int] = field(default_factory=dict)  # budget -> trials that reached it (full budget too)
    fidelity: dict[int, str] = field(default_factory=dict)  # rung budget -> the rung signal's fidelity on record


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value) else None


def _history(cell: Any) -> list[dict]:
    if isinstance(cell, str) and cell:
        try:
            cell = json.loads(cell)
        except ValueError:
            return []
    return [r for r in cell if isinstance(r, dict)] if isinstance(cell, list) else []


def rungs_info(data: RunData) -> RungsInfo | None:
    """The section of a run with a scheduler (None without one, or when no trial reported at a rung)."""
    entry = data.manifest.get("scheduler") or {}
    if entry.get("scheduler", "none") == "none" or "state" not in data.trials.columns:
        return None
    rows = data.trials.to_dict("records")
    histories = {int(r["number"]): _history(r.get("rungs")) for r in rows}
    keys = {k for h in histories.values() for report in h for k in report}
    signal = next((s for s in SIGNALS if s in keys), None)
    if signal is None:
        return None
    full = int(entry.get("steps", 0))
    trials = []
    for row in rows:
        number, state = int(row["number"]), str(row.get("state"))
        points = [(int(r["step"]), v) for r in histories[number]
                  if isinstance(r.get("step"), int) and (v := _number(r.get(signal))) is not None]
        final = _number(row.get(signal))
        steps = _number(row.get("steps"))
        if state == "COMPLETE" and final is not None and steps is not None:
            points.append((int(steps), final))
        stopped = _number(row.get("stopped_at_step"))
        reached = int(stopped) if state == "STOPPED" and stopped is not None else (points[-1][0] if points else 0)
        reason = str(row.get("stop_reason") or row.get("failure_reason") or "") if state == "STOPPED" else ""
        preset = row.get("preset") if isinstance(row.get("preset"), str) else ""
        trials.append(TrialRungs(number, preset, state, points, reached, reason))
    budgets = [int(b) for b in entry.get("rungs", [])]
    reached = {b: sum(t.reached >= b for t in trials) for b in budgets + [full]}
    on_record = data.manifest.get("rung_fidelity") or {}
    fidelity = {b: fidelity_summary(on_record.get(str(b)), signal) for b in budgets} if on_record else {}
    return RungsInfo(str(entry["scheduler"]), int(entry.get("eta", 0)), budgets, full, signal, trials, reached,
                     fidelity)


def rungs_figure(info: RungsInfo) -> go.Figure:
    """Signal vs training steps, one line per trial: complete trials in blue, stopped ones grey ending in a red
    cross (hover: why), others (interrupted, failed) orange; dotted lines at the rung budgets."""
    import html

    import plotly.graph_objects as go

    colours = {"COMPLETE": "#1f77b4", "STOPPED": "rgba(120, 120, 140, 0.6)"}
    fig = go.Figure()
    shown: set[str] = set()
    for t in info.trials:
        if not t.points:
            continue
        colour = colours.get(t.state, "#ff7f0e")
        label = f"trial {t.number}" + (f" ({t.preset})" if t.preset else "")
        hover = html.escape(f"{label}: {t.state.lower()} at {t.reached} steps" + (f"\n{t.reason}" if t.reason else ""))
        symbols = ["circle"] * (len(t.points) - 1) + ["x" if t.state == "STOPPED" else "circle"]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in t.points], y=[p[1] for p in t.points], mode="lines+markers",
            name=t.state.lower(), legendgroup=t.state, showlegend=t.state not in shown,
            line=dict(color=colour, width=1.5),
            marker=dict(symbol=symbols, size=[7] * (len(t.points) - 1) + [11],
                        color=[colour] * (len(t.points) - 1) + ["#d62728" if t.state == "STOPPED" else colour]),
            hovertext=[hover.replace("\n", "<br>")] * len(t.points), hovertemplate="%{hovertext}<extra></extra>"))
        shown.add(t.state)
    for b in info.budgets:
        fig.add_vline(x=b, line=dict(color="#999", dash="dot", width=1))
    label = METRICS[info.signal].label if info.signal in METRICS else info.signal
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420,
                      title=f"Rungs: {label} by training steps reached",
                      xaxis_title="training steps", yaxis_title=f"{label} (lower is better)")
    return fig


def rungs_section(page: Page, info: RungsInfo) -> None:
    """The section: what the scheduler did, the figure, and one table row per trial."""
    from reports.layout import esc

    label = METRICS[info.signal].label if info.signal in METRICS else info.signal
    reached = ", ".join(f"{n} at {b} steps" for b, n in info.reached.items())
    page.add("<h2>Rungs</h2>")
    page.add(f"<p>Scheduler <code>{esc(info.scheduler)}</code> (eta {info.eta}): trials report {esc(label)} at the "
             f"rungs {', '.join(map(str, info.budgets))} of {info.full} steps, and only the top 1/{info.eta} of a "
             f"rung continue. Trials that reached each budget: {esc(reached)}.</p>")
    if info.fidelity:
        page.add("<ul id=\"rung-fidelity\">" + "".join(
            f"<li>Proxy fidelity of {esc(label)} at the {b}-step rung: {esc(text)}.</li>"
            for b, text in info.fidelity.items()) + "</ul>")
    page.figure("rungs", rungs_figure(info))
    rows = []
    for t in sorted(info.trials, key=lambda t: (-t.reached, t.number)):
        last = t.points[-1][1] if t.points else None
        preset = f" ({esc(t.preset)})" if t.preset else ""
        rows.append(f"<tr><td>{t.number}{preset}</td><td>{esc(t.state)}</td><td>{t.reached}</td>"
                    f"<td>{'—' if last is None else f'{last:.4g}'}</td><td>{esc(t.reason)}</td></tr>")
    page.add(f'<table id="rungs-table"><tr><th>trial</th><th>state</th><th>steps reached</th>'
             f"<th>{esc(label)} (last)</th><th>why it stopped</th></tr>{''.join(rows)}</table>")
