"""Block signatures and the decomposition of a UNet into them."""

import dataclasses

import pytest
import torch

from evaluators.latency.signature import (
    BlockSignature,
    SignatureError,
    arch_signatures,
    space_signatures,
    with_image_size,
)
from search_spaces.blocks import BlockSpec, block_inputs
from search_spaces.config import ArchConfig, ConfigError
from search_spaces.presets import get_preset
from search_spaces.space import get_space
from search_spaces.unet import build_unet, count_params


@pytest.mark.parametrize("preset", ["sd15", "bk_sdm_tiny", "mobilediffusion"])
def test_keys_round_trip_and_are_canonical(preset):
    for _, sig in arch_signatures(get_preset(preset), batch=2, dtype="float16"):
        assert BlockSignature.from_key(sig.key) == sig


def test_every_latency_relevant_field_changes_the_key():
    base = BlockSignature(BlockSpec("transformer", 640, 640, res=32, groups=32, depth=1, attention="cross",
                                    heads=8, attn_activation="softmax", ff_mult=4, ff_activation="gelu",
                                    context_len=77, context_dim=768))
    changes = dict(in_ch=512, res=16, depth=2, attention="self_cross", heads=10, attn_activation="relu",
                   shared_kv=True, ff_mult=3, ff_activation="swish", context_len=64, context_dim=1024)
    keys = {base.key}
    for field, value in changes.items():
        keys.add(BlockSignature(dataclasses.replace(base.spec, **{field: value})).key)
    keys.add(BlockSignature(dataclasses.replace(base.spec, kind="resnet")).key)
    keys.add(dataclasses.replace(base, batch=4).key)
    keys.add(dataclasses.replace(base, dtype="float16").key)
    assert len(keys) == len(changes) + 4


@pytest.mark.parametrize("bad", [
    "", "nonsense", "kind=resnet|batch=1|dtype=float32",
    BlockSignature(BlockSpec("resnet", 320, 320, 64, 1280, 32)).key.replace("dtype=float32", "dtype=int3"),
    BlockSignature(BlockSpec("resnet", 320, 320, 64, 1280, 32)).key.replace("kind=resnet", "kind=lstm"),
    BlockSignature(BlockSpec("resnet", 320, 320, 64, 1280, 32)).key.replace("in_ch=320", "in_ch=x"),
    BlockSignature(BlockSpec("resnet", 320, 320, 64, 1280, 32)).key.replace("batch=1", "batch=0"),
    BlockSignature(BlockSpec("resnet", 320, 320, 64, 1280, 32)).key.replace("|batch=1|dtype=float32", ""),
])
def test_malformed_keys_are_rejected(bad):
    with pytest.raises(SignatureError):
        BlockSignature.from_key(bad)


def test_image_size_sets_block_resolutions():
    sd = get_preset("sd15")
    at256 = {path: sig.spec.res for path, sig in arch_signatures(with_image_size(sd, 256))}
    at512 = {path: sig.spec.res for path, sig in arch_signatures(sd)}
    assert at256.keys() == at512.keys()
    assert all(at256[p] * 2 == at512[p] for p in at512)
    with pytest.raises(ConfigError):
        with_image_size(sd, 100)
    with pytest.raises(ConfigError):
        with_image_size(sd, 16)  # 2x2 latents cannot halve three times


def test_decomposition_covers_every_parameter_and_module(tiny):
    model = build_unet(tiny)
    sigs = arch_signatures(tiny)
    paths = [p for p, _ in sigs]
    assert sum(count_params(model.get_submodule(p)) for p in paths) == count_params(model)
    for name, _ in model.named_modules():
        if name:  # each module is inside a block, or a container on the way to blocks
            assert any(name == p or name.startswith(p + ".") or p.startswith(name + ".") for p in paths), name


def test_each_block_runs_once_with_the_shapes_of_its_signature(tiny):
    model = build_unet(tiny).eval()
    seen: dict[str, list] = {}
    for path, sig in arch_signatures(tiny):
        expected = [tuple(t.shape) for t in block_inputs(sig.spec)]
        model.get_submodule(path).register_forward_hook(
            lambda mod, args, out, path=path, expected=expected: seen.setdefault(path, []).append(
                (tuple(tuple(a.shape) for a in args if torch.is_tensor(a)), tuple(expected))))
    with torch.no_grad():
        model(torch.randn(1, 4, 8, 8), torch.tensor([10.0]), torch.randn(1, 8, 32))
    assert set(seen) == {p for p, _ in arch_signatures(tiny)}
    for path, calls in seen.items():
        assert len(calls) == 1, path
        actual, expected = calls[0]
        assert actual[0] == expected[0], path  # the block sees the feature map its signature describes


def test_sampled_archs_only_use_blocks_the_space_enumerates():
    space_keys = {s.key for s in space_signatures("unet_mobile", 256)}
    for config in get_space("unet_mobile").sample_random(5, seed=3):
        for path, sig in arch_signatures(with_image_size(config, 256)):
            assert sig.key in space_keys, path


def test_closed_form_params_match_the_built_blocks():
    from evaluators.cost import block_params
    from search_spaces.blocks import build_block

    configs = [get_preset(p) for p in ("sd15", "bk_sdm_tiny", "mobilediffusion")]
    configs += get_space("unet_mobile").sample_random(3, seed=1)
    specs = {sig.spec for c in configs for _, sig in arch_signatures(c)}
    with torch.device("meta"):
        for spec in specs:
            assert block_params(spec) == count_params(build_block(spec)), spec.key


def _real_layouts(config):
    model = build_unet(config).eval()
    seen = {}
    for path, _ in arch_signatures(config):
        model.get_submodule(path).register_forward_pre_hook(lambda mod, args, path=path: seen.__setitem__(
            path, "nhwc" if not args[0].is_contiguous() and args[0].is_contiguous(memory_format=torch.channels_last)
            else "nchw"))
    s = config.latent_size
    with torch.no_grad():
        model(torch.randn(1, 4, s, s), torch.ones(1), torch.randn(1, config.context_len, config.context_dim))
    return seen


def test_input_layouts_of_the_toy_twin_match_the_real_model():
    from evaluators.latency.signature import input_layouts
    from search_spaces.config import LevelConfig, MidConfig

    base = ArchConfig(levels=(LevelConfig(64, 2, 3, 0, "none"), LevelConfig(128, 1, 2, 2, "cross", True),
                              LevelConfig(128, 2, 1, 1, "self_cross")),
                      mid=MidConfig(3, 1, "cross", True), context_len=5, context_dim=24, latent_size=16,
                      norm_groups=16, head_dim=32, num_heads=0)
    for config in (base, base.replace(latent_size=8, shared_kv=True), base.with_level(0, transformer_depth=1,
                                                                                      attention="cross")):
        found = input_layouts(config)
        assert found == _real_layouts(config)
        assert set(found.values()) == {"nchw"}  # transformers return contiguous NCHW maps, as diffusers' do


def test_layouts_only_in_layout_sensitive_keys(tiny):
    with_layouts = dict(arch_signatures(tiny, layouts=True))
    assert with_layouts["conv_in"].layout == "nchw"
    assert with_layouts["down_blocks.0.downsample"].layout == "nchw"  # after down_blocks.0.attentions.0
    assert {s.layout for _, s in arch_signatures(tiny)} == {"nchw"}
    both = {s.key for s in space_signatures("unet_mobile", 256, layouts=True)}
    assert len(both) < 2 * len(space_signatures("unet_mobile", 256))
