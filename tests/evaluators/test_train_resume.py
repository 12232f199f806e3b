"""A paused training continues exactly: weights, optimizer, EMA, batch order and random state all carry over."""

import pytest
import torch

from evaluators.data import load_dataset
from evaluators.training import Budget
from evaluators.training.diffusion import heldout_loss_grid, train_scheduler
from evaluators.training.model import build_proxy_model
from evaluators.training.text_encoder import tokenize
from evaluators.training.train import TrainState, train
from search_spaces.presets import get_preset
from search_spaces.proxy import to_proxy


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    budget = Budget(steps=10, batch_size=8, warmup_steps=2, ema_decay=0.9, n_train=40)
    data = load_dataset(kind="synthetic", split="train", image_size=budget.image_size, n=40, seed=0)
    proxy = to_proxy(get_preset("mobilediffusion"), budget.scale)
    ids = tokenize(list(data.captions), proxy.context_len)
    yield budget, data.images, ids, tokenize([""], proxy.context_len)[0], proxy, train_scheduler(
        budget.prediction, budget.beta_schedule)
    torch.set_num_threads(threads)


def test_resumed_training_equals_the_uninterrupted_one_bit_for_bit(setup, tmp_path):
    budget, images, ids, uncond, proxy, scheduler = setup
    whole = build_proxy_model(proxy, ids, 0)
    straight = train(whole, scheduler, images, ids, uncond, budget, seed=0)
    first = build_proxy_model(proxy, ids, 0)
    paused = train(first, scheduler, images, ids, uncond, budget, seed=0, until=3)  # 3 of 10: mid-epoch
    assert paused.steps == 3 and paused.state.step == 3 and paused.state.cursor == 24
    paused.state.save(tmp_path / "state.pt")
    other = build_proxy_model(proxy, ids, 99)  # other initial weights: all must come from the state
    resumed = train(other, scheduler, images, ids, uncond, budget, seed=0, resume=TrainState.load(tmp_path / "state.pt"))
    assert resumed.steps == 10 and resumed.losses == straight.losses
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), other.state_dict().values()))
    assert resumed.state is None  # ran to the end of the budget


def test_a_restart_from_scratch_differs_from_a_resume(setup):
    budget, images, ids, uncond, proxy, scheduler = setup
    straight = train(build_proxy_model(proxy, ids, 0), scheduler, images, ids, uncond, budget, seed=0)
    paused = train(build_proxy_model(proxy, ids, 0), scheduler, images, ids, uncond, budget, seed=0, until=5)
    again = train(build_proxy_model(proxy, ids, 0), scheduler, images, ids, uncond, budget.replace(steps=5), seed=1)
    assert paused.losses == straight.losses[:5] and again.losses != straight.losses[5:]


def test_grid_heldout_loss_is_deterministic(setup):
    budget, images, ids, uncond, proxy, scheduler = setup
    model = build_proxy_model(proxy, ids, 0).eval()
    a = heldout_loss_grid(model, scheduler, images, ids, 16)
    assert a == heldout_loss_grid(model, scheduler, images, ids, 16) and a > 0
