"""Meta-device builds skip weight initialisers; real tensors are still initialised, inside the context too."""

import torch
from torch import nn

from search_spaces.meta_init import no_init_on_meta
from search_spaces.presets import get_preset
from search_spaces.unet import build_unet, count_params


def test_meta_builds_skip_init_and_real_tensors_keep_theirs():
    original = nn.init.kaiming_uniform_
    with no_init_on_meta():
        with no_init_on_meta():  # re-entrant
            assert nn.init.kaiming_uniform_ is not original
        torch.manual_seed(0)
        real = nn.Linear(64, 64)  # built on the CPU while the context is active: initialised as torch does
        torch.manual_seed(0)
    assert nn.init.kaiming_uniform_ is original  # restored on exit
    reference = nn.Linear(64, 64)
    assert torch.equal(real.weight, reference.weight) and real.weight.abs().sum() > 0
    meta = build_unet(get_preset("sd15"), device="meta")
    assert count_params(meta) == 859_520_964 and next(meta.parameters()).is_meta
