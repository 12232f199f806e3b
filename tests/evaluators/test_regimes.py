"""Named proxy regimes (`--proxy-scale`): what each sets, how a budget is named, and the errors."""

import pytest

from core.errors import UserError
from evaluators.training import Budget
from evaluators.training.proxy_mode import budget_hash
from evaluators.training.regimes import DEFAULT_REGIME, REGIMES, get_regime, regime_name
from search_spaces.config import ConfigError
from search_spaces.presets import get_preset
from search_spaces.proxy import to_proxy


def test_the_default_budget_is_the_fast_regime_and_each_regime_names_itself():
    assert regime_name(Budget()) == DEFAULT_REGIME == "fast"
    for name, regime in REGIMES.items():
        budget = regime.apply(Budget(steps=125))
        assert regime_name(budget) == name and budget.steps == 125  # only size, width and batch change
        assert regime_name(budget.to_dict()) == name  # a stored budget's fields are named alike
    assert regime_name(Budget(image_size=48)) == "custom"


def test_regimes_change_the_budget_hash_so_no_cache_is_shared_across_regimes():
    hashes = {budget_hash(r.apply(Budget()), None) for r in REGIMES.values()}
    assert len(hashes) == len(REGIMES)


def test_latent64_keeps_the_deployment_latents_level_resolutions():
    proxy = to_proxy(get_preset("sd15"), get_regime("latent64").apply(Budget()).scale)
    assert proxy.latent_size == 64 and len(proxy.levels) == 4  # 64/32/16/8, as a 512 px image's 64x64 latent


def test_an_unknown_regime_is_one_line_naming_the_choices():
    with pytest.raises(UserError, match=r"unknown proxy scale 'tiny'; choose from fast, px32, latent64"):
        get_regime("tiny")


def test_a_proxy_image_too_small_to_halve_every_level_is_refused():
    five = get_preset("sd15")
    five = five.__class__(**{**five.__dict__, "levels": five.levels + five.levels[-1:]})
    with pytest.raises(ConfigError, match="levels"):
        to_proxy(five, Budget(image_size=8).scale)
