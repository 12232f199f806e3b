import optuna
import pytest
import torch

from search_spaces.blocks import arch_blocks
from search_spaces.presets import PRESETS, get_preset
from search_spaces.proxy import ProxyScale, to_proxy, topology
from search_spaces.registry import UnknownNameError
from search_spaces.space import SPACES, NotInSpaceError, get_space
from search_spaces.unet import build_unet


@pytest.fixture(scope="module")
def space():
    return get_space("unet_mobile")


def test_unknown_space_lists_known():
    with pytest.raises(UnknownNameError, match="unknown search space 'nope'; known: .*unet_mobile"):
        get_space("nope")


def test_fifty_samples_build_and_run_at_proxy_scale(space):
    for config in space.sample_random(50, seed=11):
        proxy = to_proxy(config)
        assert topology(proxy) == topology(config)
        model = build_unet(proxy).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 16, 16), torch.tensor([1, 999]), torch.randn(2, 16, 64))
        assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_samples_are_deterministic_by_seed(space):
    a = [c.arch_id for c in space.sample_random(5, seed=4)]
    assert a == [c.arch_id for c in space.sample_random(5, seed=4)]
    assert a != [c.arch_id for c in space.sample_random(5, seed=5)]


def test_every_sampler_draw_is_valid_including_tpe(space):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    for _ in range(15):
        trial = study.ask()
        config = space.sample(trial)
        assert space.contains(config)  # a valid config of the space (ArchConfig validates on construction)
        assert space.params_of(config) == trial.params  # and exactly the one the sampler proposed
        study.tell(trial, float(len(config.levels)))
    assert len(study.trials) == 15 and study.sampler.__class__.__name__ == "TPESampler"


@pytest.mark.parametrize("name", PRESETS.names())
def test_presets_are_inside_the_space(space, name):
    config = get_preset(name)
    params = space.params_of(config)
    assert space.from_params(params) == config


def test_out_of_space_config_is_named(space):
    with pytest.raises(NotInSpaceError, match="channels_0"):
        space.params_of(get_preset("sd15").with_level(0, channels=96))
    with pytest.raises(NotInSpaceError, match="latent_size"):
        space.params_of(get_preset("sd15").replace(latent_size=32))


def test_dimensions_cover_what_sample_suggests(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    names = {d.name for d in space.dimensions()}
    for _ in range(30):
        trial = study.ask()
        space.sample(trial)
        assert set(trial.params) <= names
        study.tell(trial, 0.0)


def test_enumerate_blocks_covers_samples_and_presets(space):
    blocks = space.enumerate_blocks()
    configs = space.sample_random(200, seed=2) + [get_preset(n) for n in PRESETS.names()]
    for config in configs:
        assert {spec for _, spec in arch_blocks(config)} <= blocks


def test_proxy_shrinks_widths_and_keeps_heads_valid():
    md = to_proxy(get_preset("mobilediffusion"), ProxyScale(width_divisor=16))
    assert [lv.channels for lv in md.levels] == [24, 40, 64]
    assert md.latent_size == 16 and md.latent_channels == 3 and md.context_dim == 64
    sd = to_proxy(get_preset("sd15"), ProxyScale(width_divisor=8, image_size=32))
    assert sd.num_heads and all(lv.channels % sd.num_heads == 0 for lv in sd.levels)
    assert all(lv.channels // sd.num_heads >= 8 for lv in sd.levels)


def test_space_registry_lists_unet_mobile():
    assert "unet_mobile" in SPACES.names()
    assert get_space("unet_mobile").sample_random(1, seed=0)  # the listed name builds a working space


def test_the_space_registry_is_complete_in_a_fresh_process_whatever_was_imported_first():
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    code = "from search_spaces.space import SPACES; print(SPACES.names(), 'unet_mobile' in SPACES)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True).stdout
    assert out.strip() == "['unet_mobile'] True"  # nothing else imported: the registry loaded its built-ins
