"""Fixtures of the latency tests: tiny architectures (fast to build and time) and a private LUT dir."""

import pytest

from search_spaces.config import ArchConfig, LevelConfig, MidConfig


def tiny_config(**changes) -> ArchConfig:
    """Two levels of 32/64 channels, 8 text tokens of width 32: milliseconds per forward at 64px."""
    config = ArchConfig(levels=(LevelConfig(32, 1, 2, 1, "self_cross"), LevelConfig(64, 1, 2, 1, "cross")),
                        mid=MidConfig(2, 1, "self_cross"), context_len=8, context_dim=32, latent_size=8,
                        norm_groups=8, num_heads=2)
    return config.replace(**changes) if changes else config


@pytest.fixture
def tiny():
    return tiny_config()


@pytest.fixture
def tiny_variants():
    return [tiny_config(), tiny_config(ff_mult=2, attn_activation="relu"), tiny_config(shared_kv=True)]


@pytest.fixture
def lut_dir(tmp_path, monkeypatch):
    path = tmp_path / "lut"
    monkeypatch.setenv("NAS_LUT_DIR", str(path))
    return path
