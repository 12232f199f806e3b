"""The "Per-image latency" section of a search report: what one image costs each Pareto member, by part.

Shown for runs whose trials predicted `image_latency_ms`: the text encoder, the UNet's calls (steps x 2 with
classifier-free guidance) and the VAE decoder as stacked bars per front member, with the run's sampling
(steps, guidance, decoder) named, so a user sees when the decoder or the encoder, not the UNet, is the cost.

`image_latency_info` computes (no Plotly); `image_latency_section` lays out the section of the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reports.layout import Page
    from reports.run_data import RunData

PART_LABELS = ("text encoder", "UNet", "VAE decoder")  # the order of ImageBar.parts_ms


@dataclass(frozen=True)
class ImageBar:
    number: int
    label: str  # "trial N (preset)"
    parts_ms: tuple[float, float, float]  # text encoder, UNet calls in all, decoder
    unet_calls: int


@dataclass(frozen=True)
class ImageLatencyInfo:
    bars: list[ImageBar]
    sampling: str  # e.g. "8 steps, distilled, sd decoder"
    device: str
    estimate: bool
    quality_steps: int | None = None  # sampler steps of the trials' own scored samples (the budget's)


def image_latency_info(data: RunData, numbers: list[int]) -> ImageLatencyInfo | None:
    """The per-image breakdown of trials `numbers` (the Pareto set); None when the run predicted none."""
    table = data.complete
    if "image_latency_ms" not in table.columns:
        return None
    rows = table[table["number"].isin(numbers)].dropna(subset=["image_latency_ms", "text_encoder_ms", "decoder_ms"])
    if rows.empty:
        return None
    bars = []
    for _, r in rows.sort_values("image_latency_ms").iterrows():
        te, dec = float(r["text_encoder_ms"]), float(r["decoder_ms"])
        preset = f" ({r['preset']})" if isinstance(r.get("preset"), str) and r["preset"] else ""
        bars.append(ImageBar(int(r["number"]), f"trial {int(r['number'])}{preset}",
                             (te, float(r["image_latency_ms"]) - te - dec, dec), int(r["unet_calls"])))
    s = data.manifest.get("sampling") or {}
    sampling = f"{s.get('steps')} steps, {s.get('guidance')}, {s.get('decoder')} decoder" if s else "unrecorded"
    latency = data.manifest.get("latency") or {}
    budget = data.manifest.get("budget") or {}
    return ImageLatencyInfo(bars, sampling, str(latency.get("device", "")), bool(latency.get("estimate")),
                            budget.get("sample_steps") if data.manifest.get("samples", True) else None)


def image_latency_figure(info: ImageLatencyInfo):
    import plotly.graph_objects as go

    from reports.figures import LAYOUT

    x = [html.escape(b.label) for b in info.bars]
    fig = go.Figure([go.Bar(name=name, x=x, y=[b.parts_ms[i] for b in info.bars],
                            hovertext=[f"{b.unet_calls} UNet calls" for b in info.bars] if i == 1 else None)
                     for i, name in enumerate(PART_LABELS)])
    tag = " (ESTIMATE)" if info.estimate else ""
    fig.update_layout(barmode="stack", title=f"Per-image latency of the Pareto set on {html.escape(info.device)}"
                      f"{tag}: {html.escape(info.sampling)}", yaxis_title="ms per image", **LAYOUT)
    return fig


def image_latency_section(page: Page, info: ImageLatencyInfo) -> None:
    from reports.layout import esc

    page.add("<h2>Per-image latency</h2>")
    worst = max(info.bars, key=lambda b: (b.parts_ms[0] + b.parts_ms[2]) / sum(b.parts_ms))
    share = (worst.parts_ms[0] + worst.parts_ms[2]) / sum(worst.parts_ms)
    page.add(f"<p>One image = text encoder + {info.bars[0].unet_calls} UNet calls + VAE decoder ({esc(info.sampling)})."
             f" Outside the UNet: up to {share:.0%} of an image ({esc(worst.label)}).</p>")
    page.figure("image-latency", image_latency_figure(info))
    if info.quality_steps:
        page.notes([f"The quality objectives come from each proxy's own samples ({info.quality_steps} sampler steps at "
                    "proxy scale), not from sampling at this step count: per-image latency here prices the images, "
                    "it does not say how good images are at these steps."])
