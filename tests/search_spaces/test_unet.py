"""The UNet against diffusers' UNet2DConditionModel: parameter counts and outputs after weight conversion."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from search_spaces.blocks import arch_blocks, build_block
from search_spaces.config import ArchConfig, LevelConfig, MidConfig
from search_spaces.diffusers_compat import (
    ConversionError,
    convert_diffusers_state_dict,
    load_diffusers_weights,
    to_diffusers_config,
    unsupported_features,
)
from search_spaces.presets import get_preset
from search_spaces.space import get_space
from search_spaces.unet import build_unet, count_params


def _diffusers(config: ArchConfig, device="cpu") -> UNet2DConditionModel:
    with torch.device(device):
        return UNet2DConditionModel(**to_diffusers_config(config))


@pytest.mark.parametrize("name, expected", [("sd15", 859_520_964), ("bk_sdm_tiny", 323_384_964)])
def test_param_parity_with_diffusers(name, expected):
    config = get_preset(name)
    ours = count_params(build_unet(config, device="meta"))
    theirs = sum(p.numel() for p in _diffusers(config, "meta").parameters())
    assert ours == theirs == expected


def _random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with N(0, 0.05^2) (meta-built models get real storage first)."""
    if any(p.is_meta for p in model.parameters()):
        model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05, generator=gen)
    return model.eval()


def _parity(config: ArchConfig, size: int) -> float:
    ref = _random_weights(_diffusers(config, "meta"))
    ours = build_unet(config, device="meta").eval()
    ours.load_state_dict(convert_diffusers_state_dict(ref.state_dict(), config), assign=True)
    x = torch.randn(2, config.latent_channels, size, size)
    t = torch.tensor([10, 700])
    ctx = torch.randn(2, config.context_len, config.context_dim)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=ctx).sample
        got = ours(x, t, ctx)
    return (expected - got).abs().max().item()


SMALL_SD = ArchConfig(
    levels=(LevelConfig(32, 2, 3, 1, "self_cross"), LevelConfig(64, 2, 3, 1, "self_cross"),
            LevelConfig(64, 2, 3, 0, "none")),
    mid=MidConfig(2, 1, "self_cross"), context_len=7, context_dim=24, latent_size=16, norm_groups=8, num_heads=4)


def test_output_parity_small_sd_layout():
    assert _parity(SMALL_SD, 16) < 1e-4


@pytest.mark.slow
def test_output_parity_sd15_after_weight_conversion():
    assert _parity(get_preset("sd15"), 16) < 1e-4


def test_load_diffusers_weights_from_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    ref = _random_weights(_diffusers(SMALL_SD))
    save_file(ref.state_dict(), tmp_path / "diffusion_pytorch_model.safetensors")
    model = load_diffusers_weights(tmp_path, SMALL_SD)
    assert torch.equal(model.conv_in.weight, ref.conv_in.weight)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="not a readable weights file"):
        load_diffusers_weights(tmp_path / "junk.bin", SMALL_SD)


def test_conversion_names_missing_and_mismatched_keys():
    state = _random_weights(_diffusers(SMALL_SD)).state_dict()
    state.pop("conv_in.weight")
    with pytest.raises(ConversionError, match="missing.*conv_in.weight"):
        convert_diffusers_state_dict(state, SMALL_SD)
    with pytest.raises(ConversionError, match="wrong shape"):
        convert_diffusers_state_dict(_diffusers(SMALL_SD).state_dict(), SMALL_SD.with_level(0, channels=40))


def test_mobilediffusion_is_not_a_diffusers_unet():
    reasons = unsupported_features(get_preset("mobilediffusion"))
    assert "ReLU attention" in reasons and "shared key/value projections" in reasons
    with pytest.raises(ConversionError):
        to_diffusers_config(get_preset("mobilediffusion"))


def test_blocks_cover_every_parameter():
    for config in [get_preset("sd15"), get_preset("mobilediffusion"), *get_space("unet_mobile").sample_random(5, 1)]:
        model = build_unet(config, device="meta")
        paths = [path for path, _ in arch_blocks(config)]
        assert len(paths) == len(set(paths))
        covered = sum(count_params(model.get_submodule(p)) for p in paths)
        assert covered == count_params(model)
        for path, spec in arch_blocks(config):
            with torch.device("meta"):
                assert count_params(build_block(spec)) == count_params(model.get_submodule(path))


@pytest.mark.parametrize("activation", ["softmax", "relu"])
def test_relu_and_shared_kv_forward(activation):
    config = SMALL_SD.replace(attn_activation=activation, shared_kv=True, ff_activation="swish", ff_mult=3)
    model = build_unet(config).eval()
    out = model(torch.randn(1, 4, 16, 16), 3, torch.randn(1, 7, 24))
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()
    attn = model.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert hasattr(attn, "to_kv") and not hasattr(attn, "to_v")


def test_relu_attention_matches_its_definition():
    from search_spaces.modules import Attention

    attn = Attention(16, 2, None, "relu", shared_kv=False).eval()
    x = torch.randn(1, 5, 16)
    q, k, v = (f(x).view(1, 5, 2, 8).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    scores = torch.relu(q @ k.transpose(-1, -2) / 8 ** 0.5) / 5
    expected = attn.to_out((scores @ v).transpose(1, 2).reshape(1, 5, 16))
    assert torch.allclose(attn(x), expected, atol=1e-6)
