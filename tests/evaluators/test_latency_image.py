"""Per-image latency: text encoder + steps x UNet (x2 with CFG) + decoder, on roofline, imported and measured."""

import pytest

from core.errors import UserError
from evaluators.latency import LutStore, get_predictor
from evaluators.latency.image import pipeline_signatures, predict_image
from evaluators.latency.signature import arch_signatures, with_image_size
from evaluators.latency.store import Entry, Lut
from search_spaces.pipeline import SamplingConfig
from search_spaces.presets import get_preset
from tests.evaluators.conftest import tiny_config


def clip_tiny():
    """The tiny UNet cross-attending to CLIP ViT-L/14's 77 x 768 states (what the real text encoder gives)."""
    return tiny_config(context_len=77, context_dim=768)


def test_roofline_image_is_the_sum_of_its_parts_and_cfg_doubles_the_unet():
    predictor = get_predictor("iphone15pro")
    md = get_preset("mobilediffusion")
    cfg = predict_image(predictor, md, SamplingConfig(steps=8, guidance="cfg"))
    distilled = predict_image(predictor, md, SamplingConfig(steps=8, guidance="distilled"))
    parts = {p.part: p for p in cfg.parts}
    assert list(parts) == ["text_encoder", "unet", "vae_decoder"]
    assert parts["unet"].calls == 16 and parts["unet"].ms_per_call == pytest.approx(cfg.unet.latency_ms)
    assert cfg.latency_ms == pytest.approx(sum(p.calls * p.ms_per_call for p in cfg.parts))
    assert cfg.latency_ms - distilled.latency_ms == pytest.approx(8 * cfg.unet.latency_ms)
    assert cfg.estimate and sum(cfg.share(p) for p in parts) == pytest.approx(1.0)
    slim = predict_image(predictor, md, SamplingConfig(steps=1, guidance="distilled", decoder="half_shallow"))
    one = predict_image(predictor, md, SamplingConfig(steps=1, guidance="distilled"))
    assert slim.parts[2].ms < one.parts[2].ms / 3  # 4.9x fewer decoder MACs
    assert one.share("vae_decoder") > 0.5  # with one step the SD decoder dominates the image


def test_imported_table_without_the_decoder_names_it(lut_dir):
    config = clip_tiny()
    unet_keys = {s.key for _, s in arch_signatures(with_image_size(config, 64))}
    store = LutStore(lut_dir)
    store.save(Lut("phone", "imported", {"device": "phone"}, {}, {k: Entry(2.0, 0.0, 0) for k in unet_keys}))
    predictor = get_predictor("phone", image_size=64)
    sampling = SamplingConfig(steps=4)
    with pytest.raises(UserError, match="lacks 2 block.*text_encoder, vae_decoder"):
        predict_image(predictor, config, sampling)
    text, decoder = (sig.key for _, sig in pipeline_signatures(predictor, config, sampling))
    store.save(Lut("phone", "imported", {"device": "phone"}, {}, {k: Entry(2.0, 0.0, 0) for k in unet_keys}
                   | {text: Entry(5.0, 0.0, 0), decoder: Entry(30.0, 0.0, 0)}))
    image = predict_image(get_predictor("phone", image_size=64), config, sampling)
    assert image.latency_ms == pytest.approx(5.0 + 8 * 2.0 * len(arch_signatures(config)) + 30.0)


@pytest.mark.slow
def test_measured_cpu_stores_the_text_encoder_and_decoder_as_blocks(lut_dir):
    config = clip_tiny()
    sampling = SamplingConfig(steps=2, guidance="distilled", decoder="half_shallow")
    predictor = get_predictor("cpu", image_size=64, rounds=2, model_rounds=2)
    image = predict_image(predictor, config, sampling, calibrate=False)
    stored = LutStore(lut_dir).load("cpu").entries
    for part in (image.parts[0], image.parts[2]):
        assert stored[part.key].ms == pytest.approx(part.ms_per_call) and part.ms_per_call > 0
    again = get_predictor("cpu", image_size=64, rounds=2, model_rounds=2)
    assert again.missing([config]) == []
    assert predict_image(again, config, sampling, calibrate=False).parts[2].ms_per_call == pytest.approx(
        image.parts[2].ms_per_call)
