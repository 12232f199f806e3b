"""The networks around the UNet: sampling choices, their blocks and their real modules."""

from dataclasses import replace

import pytest
import torch

from evaluators.latency.backends import materialize
from search_spaces.blocks import block_inputs, build_block
from search_spaces.config import ConfigError
from search_spaces.pipeline import SamplingConfig, decoder_spec, pipeline_blocks, text_encoder_spec
from search_spaces.presets import get_preset
from search_spaces.registry import UnknownNameError


@pytest.mark.parametrize("steps", [0, -1, 1001, 2.5, True])
def test_step_counts_outside_the_schedule_are_refused(steps):
    with pytest.raises(ConfigError, match="steps: must be an integer from 1 to 1000"):
        SamplingConfig(steps=steps).validate()


@pytest.mark.parametrize("field, value, what", [("guidance", "half", "guidance mode"), ("decoder", "tiny", "decoder"),
                                                ("text_encoder", "t5", "text encoder")])
def test_unknown_names_list_the_known_ones(field, value, what):
    with pytest.raises(UnknownNameError, match=f"unknown {what} '{value}'; known: "):
        replace(SamplingConfig(), **{field: value}).validate()


def test_unet_calls_double_with_classifier_free_guidance():
    assert SamplingConfig(steps=8, guidance="cfg").unet_calls == 16
    assert SamplingConfig(steps=8, guidance="distilled").unet_calls == 8


def test_pipeline_blocks_follow_the_unet_latents_and_refuse_a_mismatched_text_width():
    config = get_preset("mobilediffusion").replace(latent_size=32)
    (_, text), (_, decoder) = pipeline_blocks(config, SamplingConfig(decoder="half"))
    assert (text.kind, text.in_ch, text.depth, text.context_len) == ("text_encoder", 768, 12, 77)
    assert (decoder.kind, decoder.res, decoder.out_ch) == ("vae_decoder", 32, 64)
    with pytest.raises(ConfigError, match="cross-attends to 77 of width 1024"):
        pipeline_blocks(config.replace(context_dim=1024), SamplingConfig())


def test_decoder_turns_latents_into_an_8x_rgb_image():
    spec = replace(decoder_spec("half_shallow", 4), out_ch=32)
    out = build_block(spec).eval()(*block_inputs(spec))
    assert out.shape == (1, 3, 32, 32)


def test_text_tower_keeps_its_causal_mask_when_materialised_from_meta():
    """The latency backends build on meta and fill weights: the mask buffer must be rebuilt, not left empty."""
    spec = replace(text_encoder_spec("clip_l14"), in_ch=64, out_ch=64, heads=2, depth=1)
    module = materialize(lambda: build_block(spec), "cpu", torch.float32)
    mask = module.text.attn_mask
    assert torch.equal(mask, torch.full((77, 77), float("-inf")).triu_(1))
    ids = block_inputs(spec)[0]
    assert ids.dtype == torch.long and ids.shape == (1, 77)
    with torch.no_grad():
        early = module(ids)
        ids2 = ids.clone()
        ids2[0, -1] = (ids2[0, -1] + 1) % 49408
        assert torch.equal(module(ids2)[0, :-1], early[0, :-1])  # causal: later tokens do not change earlier ones
