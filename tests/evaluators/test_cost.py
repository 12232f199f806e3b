import pytest

from evaluators.cost import analytic_cost, fvcore_cost
from search_spaces.presets import PRESETS, get_preset
from search_spaces.space import get_space


def test_sd15_reference_numbers():
    cost = analytic_cost(get_preset("sd15"))
    assert cost.params == 859_520_964
    assert cost.macs == pytest.approx(402.0e9, rel=0.01)
    assert cost.macs_no_attention == pytest.approx(338.6e9, rel=0.01)
    parts = {lv.part: lv for lv in cost.per_level}
    assert list(parts) == ["stem", "level0", "level1", "level2", "level3", "mid"]
    assert sum(lv.params for lv in cost.per_level) == cost.params
    assert parts["mid"].macs_no_attention == pytest.approx(6.03e9, rel=0.01)  # Clockwork's mid block


def test_bk_sdm_tiny_params():
    assert analytic_cost(get_preset("bk_sdm_tiny")).params == 323_384_964


@pytest.mark.parametrize("name", PRESETS.names())
def test_analytic_matches_fvcore_on_presets(name):
    config = get_preset(name).replace(latent_size=16)  # same blocks, 16x fewer pixels: a fast forward
    a, f = analytic_cost(config), fvcore_cost(config)
    assert a.params == f.params
    assert a.macs == pytest.approx(f.macs, rel=0.01)
    assert a.macs_no_attention == pytest.approx(f.macs_no_attention, rel=0.01)
    for x, y in zip(a.per_level, f.per_level):
        assert x.part == y.part and x.macs == pytest.approx(y.macs, rel=0.01)


def test_analytic_matches_fvcore_on_random_samples():
    for config in get_space("unet_mobile").sample_random(4, seed=21):
        config = config.replace(latent_size=16)
        a, f = analytic_cost(config), fvcore_cost(config)
        assert a.macs == pytest.approx(f.macs, rel=0.01), config.arch_id
        assert a.macs_no_attention == pytest.approx(f.macs_no_attention, rel=0.01), config.arch_id


@pytest.mark.slow
def test_fvcore_sd15_full_scale():
    cost = fvcore_cost(get_preset("sd15"))
    assert cost.macs == pytest.approx(402.0e9, rel=0.01)
    assert cost.macs_no_attention == pytest.approx(339.0e9, rel=0.01)


def test_mobilediffusion_is_cheaper_than_sd15():
    sd, md = analytic_cost(get_preset("sd15")), analytic_cost(get_preset("mobilediffusion"))
    assert md.params < 0.5 * sd.params and md.macs < 0.5 * sd.macs
    assert 0 < md.activation_bytes < sd.activation_bytes


def test_text_encoder_and_decoders_match_their_modules_and_fvcore():
    from dataclasses import replace

    from evaluators.cost import block_macs, block_params, fvcore_block_macs
    from search_spaces.blocks import build_block
    from search_spaces.pipeline import DECODERS, decoder_spec, text_encoder_spec

    small = [replace(text_encoder_spec("clip_l14"), in_ch=64, out_ch=64, heads=2, depth=2)]
    small += [replace(decoder_spec(name, 8), out_ch=32) for name in DECODERS]
    for spec in small:
        assert block_params(spec) == sum(p.numel() for p in build_block(spec).parameters()), spec.kind
        assert block_macs(spec) == fvcore_block_macs(spec), spec.kind


def test_pipeline_reference_numbers():
    from evaluators.cost import block_macs, block_params
    from search_spaces.pipeline import decoder_spec, text_encoder_spec

    assert block_params(text_encoder_spec("clip_l14")) == 123_060_480  # CLIP ViT-L/14's text tower
    assert block_params(decoder_spec("sd", 64)) == 49_490_199  # SD's AutoencoderKL decoder + post-quant conv
    assert block_macs(decoder_spec("sd", 64))[0] == pytest.approx(1.26e12, rel=0.01)  # at 512 px
    assert block_params(decoder_spec("half_shallow", 64)) < block_params(decoder_spec("half", 64)) < 13e6


def test_image_cost_adds_text_encoder_unet_calls_and_decoder():
    from evaluators.pipeline_cost import image_cost
    from search_spaces.pipeline import SamplingConfig

    config = get_preset("mobilediffusion")
    unet = analytic_cost(config)
    cfg = image_cost(config, SamplingConfig(steps=8), unet.params, unet.macs)
    distilled = image_cost(config, SamplingConfig(steps=8, guidance="distilled"), unet.params, unet.macs)
    parts = {p.part: p for p in cfg.parts}
    assert parts["unet"].calls == 16 and parts["unet"].image_macs == 16 * unet.macs
    assert cfg.macs == sum(p.calls * p.macs for p in cfg.parts)
    assert cfg.macs - distilled.macs == 8 * unet.macs
