import json

import pytest

from search_spaces.config import ArchConfig, ConfigError, LevelConfig
from search_spaces.presets import PRESETS, get_preset
from search_spaces.space import get_space


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_json_round_trip(name):
    config = get_preset(name)
    again = ArchConfig.from_json(config.to_json())
    assert again == config
    assert again.arch_id == config.arch_id
    assert len(config.arch_id) == 12


def test_sample_json_round_trip_and_distinct_ids():
    configs = get_space("unet_mobile").sample_random(20, seed=3)
    assert len({c.arch_id for c in configs}) == 20
    for c in configs:
        assert ArchConfig.from_json(c.to_json(indent=None)) == c


def test_arch_id_is_stable_and_content_based():
    sd = get_preset("sd15")
    assert sd.arch_id == ArchConfig.from_dict(json.loads(sd.to_json())).arch_id
    assert sd.with_level(0, channels=256).arch_id != sd.arch_id


def _data(**changes):
    data = json.loads(get_preset("sd15").to_json())
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("/")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[leaf] = value
    return data


@pytest.mark.parametrize("changes, field", [
    ({"bogus": 1}, "bogus"),
    ({"levels/0/nope": 1}, "levels[0].nope"),
    ({"levels/1/channels": "640"}, "levels[1].channels"),
    ({"levels/1/channels": 640.0}, "levels[1].channels"),
    ({"shared_kv": 1}, "shared_kv"),
    ({"ff_mult": True}, "ff_mult"),
    ({"mid/num_res": None}, "mid.num_res"),
    ({"levels": {}}, "levels"),
    ({"levels/0/channels": 330}, "levels[0].channels"),  # not divisible by 32 groups
    ({"levels/0/channels": 352}, "levels[0].channels"),  # divisible by 32, not by 8 heads... 352/8=44 ok -> see below
    ({"attn_activation": "sigmoid"}, "attn_activation"),
    ({"levels/2/attention": "none"}, "levels[2].attention"),
    ({"levels/3/attention": "cross"}, "levels[3].attention"),
    ({"latent_size": 60}, "latent_size"),
    ({"num_heads": 0}, "num_heads"),
    ({"mid/num_res": 1}, "mid.transformer_depth"),
])
def test_bad_configs_name_the_field(changes, field):
    data = _data(**changes)
    if field == "levels[0].channels" and changes.get("levels/0/channels") == 352:
        data["num_heads"], data["head_dim"] = 0, 64  # 352 is not a multiple of 64
    with pytest.raises(ConfigError) as err:
        ArchConfig.from_dict(data)
    assert str(err.value).startswith(field), str(err.value)


def test_invalid_json_text():
    with pytest.raises(ConfigError, match="not valid JSON"):
        ArchConfig.from_json("{levels: ")


def test_replace_validates():
    with pytest.raises(ConfigError, match="ff_mult"):
        get_preset("sd15").replace(ff_mult=0)
    config = ArchConfig(levels=(LevelConfig(64, 1, 2, 1, "cross"), LevelConfig(128, 1, 2, 0, "none")))
    assert config.replace(attn_activation="relu").attn_activation == "relu"
