"""Analytic roofline ESTIMATES for named phones, from public peak compute and memory bandwidth figures.

Nothing here was measured on a phone. A block's estimated time is the larger of its compute time
(2 * MACs at a fraction of the accelerator's peak) and its memory time (fp16 weights plus input, output
and large intermediate activations at a fraction of peak DRAM bandwidth), plus a fixed per-block dispatch
cost. The achieved fraction of peak is anchored on one public number: SD-1.5's UNet takes ~1.7 s per step
on an iPhone 14 Pro (SnapFusion, arXiv 2306.00980), i.e. 677 GFLOP / 1.7 s = 0.40 TFLOP/s against the
A16 Neural Engine's 17 TOPS: ~2.3%. Use these profiles to steer a search before a phone was measured,
then replace them with an imported LUT (`nas lut kit` / `nas lut import`).
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.cost import block_macs, block_params
from evaluators.pipeline_cost import pipeline_moved_elements
from search_spaces.blocks import BlockSpec

COMPUTE_FRACTION = 0.023  # achieved / peak compute, from the SnapFusion iPhone 14 Pro anchor above
BANDWIDTH_FRACTION = 0.6  # achieved / peak DRAM bandwidth for streaming weights and activations
BYTES_PER_ELEMENT = 2  # fp16 weights and activations on device


@dataclass(frozen=True)
class RooflineProfile:
    """Public peak figures of one phone (all outputs derived from it are estimates)."""

    name: str  # device name (`nas lut predict --device NAME`)
    chip: str  # SoC and the accelerator whose peak is used
    peak_tops: float  # vendor-quoted peak of that accelerator, 1e12 ops/s (2 ops per multiply-add)
    bandwidth_gbs: float  # peak DRAM bandwidth, GB/s (memory type x bus width)
    dispatch_us: float  # fixed cost per block (kernel launches, synchronisation)
    source: str  # where the peak figures come from

    def block_ms(self, spec: BlockSpec, batch: int = 1) -> float:
        """Estimated milliseconds of one block at `batch`."""
        macs, _ = block_macs(spec, batch)
        compute_s = 2 * macs / (self.peak_tops * 1e12 * COMPUTE_FRACTION)
        moved = block_params(spec) + batch * _activation_elements(spec)
        memory_s = moved * BYTES_PER_ELEMENT / (self.bandwidth_gbs * 1e9 * BANDWIDTH_FRACTION)
        return max(compute_s, memory_s) * 1e3 + self.dispatch_us / 1e3

    def describe(self) -> dict:
        return {"chip": self.chip, "peak_tops": self.peak_tops, "bandwidth_gbs": self.bandwidth_gbs,
                "compute_fraction": COMPUTE_FRACTION, "bandwidth_fraction": BANDWIDTH_FRACTION,
                "dispatch_us": self.dispatch_us, "source": self.source,
                "estimate": "roofline estimate from public peak figures, not a measurement"}


def _activation_elements(spec: BlockSpec) -> int:
    """Elements read and written: input, output, and a transformer's GLU inner and attention scores."""
    hw = spec.res * spec.res
    out_hw = hw // 4 if spec.kind == "downsample" else hw * 4 if spec.kind == "upsample" else hw
    if spec.kind == "time_embed":
        return spec.in_ch + spec.out_ch
    if spec.kind in ("text_encoder", "vae_decoder"):
        return pipeline_moved_elements(spec)
    elements = spec.in_ch * hw + spec.out_ch * out_hw
    if spec.kind == "resnet":
        elements += 2 * spec.out_ch * hw
    if spec.kind == "transformer":
        keys = (hw if spec.attention in ("self", "self_cross") else 0) + spec.context_len
        elements += spec.depth * (3 * spec.ff_mult * spec.in_ch * hw + 2 * spec.heads * hw * keys)
    return elements


PROFILES = {
    "iphone14pro": RooflineProfile(
        "iphone14pro", "Apple A16 Bionic, 16-core Neural Engine", 17.0, 51.2, 50.0,
        "Apple A16 keynote (17 TOPS); LPDDR5-6400 x 64 bit"),
    "iphone15pro": RooflineProfile(
        "iphone15pro", "Apple A17 Pro, 16-core Neural Engine", 35.0, 51.2, 50.0,
        "Apple A17 Pro keynote (35 TOPS); LPDDR5-6400 x 64 bit"),
    "pixel8": RooflineProfile(
        "pixel8", "Google Tensor G3, Mali-G715 MC7 GPU (fp16)", 3.0, 68.3, 80.0,
        "third-party Mali-G715 MC7 estimates (~3 fp16 TFLOPS); LPDDR5X-8533 x 64 bit"),
    "galaxys24": RooflineProfile(
        "galaxys24", "Qualcomm Snapdragon 8 Gen 3, Hexagon NPU", 45.0, 76.8, 50.0,
        "Qualcomm Snapdragon 8 Gen 3 brief (~45 TOPS); LPDDR5X-9600 x 64 bit"),
}
