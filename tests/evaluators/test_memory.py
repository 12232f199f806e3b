"""Memory estimates: sizes parse, estimates add up from the closed-form counts, refusals name the user's values,
and the training estimate brackets the memory a real training takes."""

import json
import subprocess
import sys

import pytest

from core.errors import UserError
from evaluators.cost import activation_bytes, block_params, block_working_elements
from evaluators.memory import (
    TRAIN_BYTES_PER_PARAM,
    TRAIN_RUNTIME_BYTES,
    MemoryEstimate,
    TooLargeError,
    available_memory,
    blocks_memory,
    check_fits,
    model_memory,
    parse_size,
    training_memory,
)
from evaluators.training import Budget
from search_spaces.blocks import arch_blocks
from search_spaces.presets import get_preset
from search_spaces.proxy import to_proxy

MD = get_preset("mobilediffusion")


@pytest.mark.parametrize("text, size", [("8GiB", 8 << 30), ("8G", 8 << 30), ("8gb", 8 * 10**9),
                                        ("512MiB", 512 << 20), ("1.5T", int(1.5 * (1 << 40))),
                                        ("2000000000", 2 * 10**9), (" 64 k ", 64 << 10)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1G", "8XB", "GiB", "1e9", "0.1"])
def test_bad_sizes_are_user_errors_naming_the_flag(text):
    with pytest.raises(UserError, match="--max-memory must be a positive size"):
        parse_size(text)


def test_training_estimate_adds_up_from_closed_form_counts():
    budget = Budget()
    proxy = to_proxy(MD, budget.scale)
    est = training_memory(MD, proxy, 32, 128)
    params = sum(block_params(s) for _, s in arch_blocks(proxy))
    assert est.weight_bytes == params * TRAIN_BYTES_PER_PARAM
    assert training_memory(MD, proxy, 32, 128, ema=True).weight_bytes == params * (TRAIN_BYTES_PER_PARAM + 4)
    assert est.activation_bytes >= TRAIN_RUNTIME_BYTES + activation_bytes(proxy) * 128 * 2  # sampling, CFG
    assert training_memory(MD, proxy, 64, 128).total > est.total
    assert est.total == est.weight_bytes + est.activation_bytes


def test_estimates_name_the_value_the_user_wrote():
    scale = Budget().scale
    wide = MD.with_level(0, channels=102_400)
    est = training_memory(wide, to_proxy(wide, scale), 32, 128)
    assert "levels[0].channels 102400" in est.largest and est.total > 64 << 30
    deep = MD
    for i in range(3):
        deep = deep.with_level(i, transformer_depth=50, attention="self_cross")
    est = training_memory(deep, to_proxy(deep, scale), 32, 128)
    assert "transformer_depth 50" in est.largest and ".attentions." in est.largest


def test_model_and_block_estimates():
    sd = get_preset("sd15")
    params = sum(block_params(s) for _, s in arch_blocks(sd))
    one = model_memory(sd, "x")
    assert one.weight_bytes == params * 4 and one.activation_bytes == activation_bytes(sd)
    assert model_memory(sd, "x", weight_copies=3).weight_bytes == 3 * one.weight_bytes
    specs = [s for _, s in arch_blocks(sd)][:5]
    chunk = blocks_memory(specs, "chunk")
    assert chunk.weight_bytes == sum(block_params(s) for s in specs) * 4
    assert chunk.activation_bytes == max(block_working_elements(s) for s in specs) * 4


def test_check_fits_refuses_over_the_limit_in_one_line():
    est = MemoryEstimate("training the proxy of arch abc (batch 32)", 3 << 20, 1 << 20, "down_blocks.0.resnets.0 "
                         "(levels[0].channels 320)")
    check_fits(est, max_memory=5 << 20)
    with pytest.raises(TooLargeError) as err:
        check_fits(est, max_memory=2 << 20)
    message = str(err.value)
    assert "\n" not in message and "needs about 4.0 MiB" in message and "--max-memory 2.0 MiB" in message
    assert "levels[0].channels 320" in message
    huge = MemoryEstimate("x", 2 * available_memory(), 0, "y")
    with pytest.raises(TooLargeError, match="available on cpu"):
        check_fits(huge, max_memory=4 * available_memory())  # a limit above what is free does not raise it


PEAK = """
import json, sys, threading, time
import psutil, torch
torch.set_num_threads(1)
from evaluators.training.budget import Budget
from evaluators.training.diffusion import sample, train_scheduler
from evaluators.training.model import build_proxy_model
from evaluators.training.text_encoder import tokenize
from evaluators.training.train import train
from search_spaces.config import ArchConfig
from search_spaces.proxy import to_proxy
config = ArchConfig.from_json(sys.argv[1])
budget = Budget(steps=2, batch_size=16, warmup_steps=1, sample_batch_size=64)
proxy = to_proxy(config, budget.scale)
ids = tokenize(["a red circle above a blue square"] * 64, proxy.context_len)
uncond = tokenize([""], proxy.context_len)[0]
images = torch.randn(64, 3, budget.image_size, budget.image_size)
scheduler = train_scheduler(budget.prediction, budget.beta_schedule)
process = psutil.Process()
before, peak, done = process.memory_info().rss, [0], threading.Event()
def watch():  # the current resident set, sampled: ru_maxrss would count the imports' own peak
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.002)
watcher = threading.Thread(target=watch)
watcher.start()
model = build_proxy_model(proxy, ids, 0)
train(model, scheduler, images, ids, uncond, budget, 0)
model.eval()
sample(model, scheduler, ids, uncond, kind="dpm", steps=1, cfg_scale=3.0, batch_size=64,
       image_shape=(3, budget.image_size, budget.image_size), generator=torch.Generator().manual_seed(0))
done.set()
watcher.join()
print(json.dumps(max(peak[0], process.memory_info().rss) - before))
"""


@pytest.mark.slow
@pytest.mark.parametrize("config", [MD, MD.with_level(0, transformer_depth=4, attention="self_cross")],
                         ids=["mobilediffusion", "relu_self_attention_at_level0"])
def test_training_estimate_brackets_a_real_training(config):
    """A real proxy training (2 steps, batch 16) and sampling (64 captions with CFG) in a fresh process: the
    peak resident memory it adds is within a factor of the estimate (generous, never a tenth of it)."""
    out = subprocess.run([sys.executable, "-c", PEAK, config.to_json(indent=None)], capture_output=True, text=True,
                         check=True, timeout=600)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    budget = Budget(batch_size=16, sample_batch_size=64)
    est = training_memory(config, to_proxy(config, budget.scale), 16, 64).total
    assert 0.5 * measured <= est <= 4 * measured, (est, measured)
