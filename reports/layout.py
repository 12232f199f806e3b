"""HTML building blocks shared by every kind of report page: one self-contained document (plotly.js embedded
once, images inline), escaped text, figures, notes, tables and sample grids.

Every string that comes from the run (names, commands, captions, paths, presets, table cells) goes through
`html.escape`; figure data is embedded by Plotly's JSON encoder, which escapes `<`, `>` and `/`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from reports.run_parts import SampleGrid

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:0 24px 48px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:40px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f8} tr.knee{background:#e8f1fb;font-weight:600} .estimate{color:#b00020;font-weight:700}
.note{color:#8a5a00;background:#fff7e0;padding:6px 10px;border-radius:4px} .arch{display:flex;gap:24px;flex-wrap:wrap}
.arch figure{margin:0} .arch img{image-rendering:pixelated;border:1px solid #ccc;max-width:320px}
.design{font-family:ui-monospace,monospace;font-size:12px} figcaption{font-size:12px;color:#555;max-width:320px}
td.changed{background:#fff1c7} .spread{color:#666;font-style:italic} .wide{overflow-x:auto}
.groups{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:8px}
"""


@dataclass
class Report:
    """The rendered page and the figures in it (in page order, for PNG export and the browser test)."""

    html: str
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)  # (figure id, figure)


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric in ("params", "macs"):
        return f"{value / 1e6:,.1f}M" if metric == "params" else f"{value / 1e9:,.1f}G"
    return f"{value:.4g}"


class Page:
    """Parts of a page in order; `document` wraps them."""

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
            self.add(f'<p class="note">{esc(note)}</p>')

    def rows(self, rows: list[tuple[str, str]], escape: bool = True) -> None:
        """A two-column (label, value) table."""
        cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v) if escape else v}</td></tr>" for k, v in rows)
        self.add(f"<table>{cells}</table>")

    def grids(self, grids: list[SampleGrid]) -> None:
        self.add('<div class="arch">')
        for g in grids:
            self.add(f'<figure><img alt="samples of trial {g.number}" src="data:image/png;base64,{g.png}">'
                     f"<figcaption>{esc(g.title)} · trial {g.number}</figcaption></figure>")
        self.add("</div>")

    def document(self, title: str) -> Report:
        doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
               f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>{''.join(self.parts)}</body></html>\n")
        return Report(doc, self.figures)
