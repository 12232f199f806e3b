"""Per-image latency: text encoder + steps x UNet x (2 with classifier-free guidance, 1 distilled) + VAE decoder.

The text encoder and the decoder are blocks of the same latency table as the UNet's blocks (kinds
`text_encoder` and `vae_decoder`): measured on this machine's backends, exported by `nas lut kit`, imported from
phone CSVs, or estimated by a roofline profile. Each is one whole network, so its isolated time is its
end-to-end time; the UNet's calibrated overhead applies to the UNet call only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from evaluators.latency.predictor import LatencyPrediction, Predictor
from evaluators.latency.signature import BlockSignature, with_image_size
from search_spaces.config import ArchConfig
from search_spaces.pipeline import DECODERS, TEXT_ENCODERS, SamplingConfig, decoder_spec, pipeline_blocks, text_encoder_spec

PARTS = ("text_encoder", "unet", "vae_decoder")


@dataclass(frozen=True)
class ImagePart:
    """One network's share of an image."""

    part: str  # one of PARTS
    calls: int  # evaluations per image
    ms_per_call: float
    key: str  # its block key in the table ("" for the UNet, whose blocks are in `unet`)

    @property
    def ms(self) -> float:
        return self.calls * self.ms_per_call


@dataclass(frozen=True)
class ImageLatency:
    """Predicted latency of one generated image."""

    latency_ms: float  # sum of the parts
    parts: tuple[ImagePart, ...]  # in PARTS order
    sampling: SamplingConfig
    unet: LatencyPrediction  # one UNet call, per block
    device: str
    estimate: bool  # roofline: not a measurement
    image_size: int

    def share(self, part: str) -> float:
        """Fraction of the image's latency spent in `part`."""
        return next(p.ms for p in self.parts if p.part == part) / self.latency_ms

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "device": self.device, "estimate": self.estimate,
                "image_size": self.image_size, "sampling": asdict(self.sampling),
                "unet_calls": self.sampling.unet_calls,
                "parts": [asdict(p) | {"ms": p.ms, "share": p.ms / self.latency_ms} for p in self.parts],
                "unet": self.unet.to_dict()}


def pipeline_signatures(predictor: Predictor, config: ArchConfig,
                        sampling: SamplingConfig) -> list[tuple[str, BlockSignature]]:
    """The text encoder and decoder blocks at the predictor's image size, batch and dtype (contiguous inputs)."""
    sized = with_image_size(config, predictor.image_size)
    return [(path, BlockSignature(spec, predictor.batch, predictor.dtype))
            for path, spec in pipeline_blocks(sized, sampling)]


def every_pipeline_signature(image_size: int, batch: int = 1, dtype: str = "float32") -> list[BlockSignature]:
    """Every named text encoder and decoder at `image_size` (the blocks a phone kit adds for per-image latency)."""
    specs = [text_encoder_spec(name) for name in TEXT_ENCODERS]
    specs += [decoder_spec(name, image_size // 8) for name in DECODERS]
    return [BlockSignature(spec, batch, dtype) for spec in specs]


def predict_image(predictor: Predictor, config: ArchConfig, sampling: SamplingConfig,
                  calibrate: bool = True) -> ImageLatency:
    """Per-image latency of `config` sampled as `sampling` (measured devices measure missing blocks).

    Raises:
        ConfigError / UnknownNameError: an invalid sampling choice.
        UserError: an imported table without the text encoder or decoder block (the message names it).
    """
    sigs = pipeline_signatures(predictor, config, sampling)
    unet = predictor.predict(config, calibrate)
    (text_key, decoder_key) = (sig.key for _, sig in sigs)
    text_ms, decoder_ms = predictor.block_ms(sigs)
    parts = (ImagePart("text_encoder", 1, text_ms, text_key),
             ImagePart("unet", sampling.unet_calls, unet.latency_ms, ""),
             ImagePart("vae_decoder", 1, decoder_ms, decoder_key))
    return ImageLatency(sum(p.ms for p in parts), parts, sampling, unet, predictor.device, predictor.estimate,
                        predictor.image_size)
