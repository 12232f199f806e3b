"""The per-image options shared by `nas cost` and `nas lut predict`: sampler steps, guidance, decoder."""

from __future__ import annotations

import typer

from search_spaces.pipeline import DECODERS, GUIDANCE_CALLS, MAX_STEPS, SamplingConfig

STEPS_HELP = (f"Sampler steps per image (1-{MAX_STEPS}): the UNet runs this many times, twice each with "
              "classifier-free guidance.")
STEPS = typer.Option(50, "--steps", help=STEPS_HELP)
GUIDANCE = typer.Option("cfg", "--guidance", help=f"{' | '.join(GUIDANCE_CALLS)}: cfg evaluates the UNet twice per "
                        "step (conditional and unconditional), distilled once (a guidance-distilled model).")
DECODER = typer.Option("sd", "--decoder", help=f"VAE decoder: {' | '.join(DECODERS)} (sd: SD's AutoencoderKL "
                       "decoder; half: every width halved, SnapFusion-style; half_shallow: also one ResNet fewer "
                       "per level).")


def sampling_from(steps: int, guidance: str, decoder: str) -> SamplingConfig:
    """The validated sampling choice (ConfigError / UnknownNameError: one line, exit 2)."""
    return SamplingConfig(steps=steps, guidance=guidance, decoder=decoder).validate()
