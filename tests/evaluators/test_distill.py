"""Distillation from a teacher (BK-SDM: denoising + output-level + feature-level terms) and the teacher distance."""

import pytest
import torch
import torch.nn.functional as F

from core.errors import UserError
from evaluators.data import load_dataset
from evaluators.training import Budget
from evaluators.training.diffusion import denoising_loss, grid_problems, train_scheduler
from evaluators.training.distill import (
    DistillWeights,
    Distiller,
    feature_points,
    shared_points,
    teacher_distance,
)
from evaluators.training.inherit import inherit_model
from evaluators.training.model import build_proxy_model
from evaluators.training.text_encoder import tokenize
from evaluators.training.train import train
from search_spaces.presets import get_preset
from search_spaces.proxy import ProxyScale, to_proxy

SCALE = ProxyScale(width_divisor=32, image_size=8)


@pytest.fixture(scope="module")
def data(one_thread):
    train_set = load_dataset(kind="synthetic", split="train", image_size=8, n=64, seed=0)
    ids = tokenize(list(train_set.captions), SCALE.context_len)
    return train_set.images, ids


def model(name: str, ids, seed: int):
    return build_proxy_model(to_proxy(get_preset(name), SCALE), ids, seed)


def batch(images, ids, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images[:8].shape, generator=gen)
    return images[:8], ids[:8], noise, torch.randint(0, 1000, (8,), generator=gen)


def test_feature_points_are_stage_outputs_matched_by_level_and_size():
    sd15, mobile = to_proxy(get_preset("sd15"), SCALE), to_proxy(get_preset("mobilediffusion"), SCALE)
    points = feature_points(sd15)
    assert set(points) == {"down0", "down1", "down2", "down3", "mid", "up0", "up1", "up2", "up3"}
    assert points["down0"] == ("down_blocks.0.attentions.1", 8) and points["up3"] == ("up_blocks.0.resnets.2", 1)
    assert points["mid"] == ("mid_block.resnets.1", 1)
    shared = shared_points(mobile, sd15, ("down", "mid", "up"))
    assert "mid" not in shared  # sd15's bottleneck is at 1x1, MobileDiffusion's at 2x2: not compared
    assert shared["down0"] == ("down_blocks.0.resnets.0", "down_blocks.0.attentions.1")
    assert set(shared_points(mobile, sd15, ("up", "down1"))) == {"up0", "up1", "up2", "down1"}


def test_a_student_equal_to_its_teacher_has_no_distillation_loss(data):
    images, ids = data
    teacher = model("sd15", ids, 0).eval().requires_grad_(False)
    student = model("sd15", ids, 1)
    inherit_model(teacher, student)
    scheduler = train_scheduler("epsilon", "squaredcos_cap_v2")
    clean, cap, noise, t = batch(images, ids)
    with Distiller(teacher, student) as loss_fn:
        objective, denoise = loss_fn(student, scheduler, clean, cap, noise, t)
        assert len(loss_fn.points) == 9
    assert torch.allclose(objective, denoise) and torch.equal(denoise, denoising_loss(student, scheduler, clean, cap,
                                                                                       noise, t))


def test_the_terms_add_up_and_only_the_student_gets_gradients(data):
    images, ids = data
    teacher = model("sd15", ids, 0).eval().requires_grad_(False)
    student = model("mobilediffusion", ids, 1)
    scheduler = train_scheduler("epsilon", "squaredcos_cap_v2")
    clean, cap, noise, t = batch(images, ids)
    with Distiller(teacher, student, DistillWeights(output=0, feature=0)) as plain:
        objective, denoise = plain(student, scheduler, clean, cap, noise, t)
        assert torch.equal(objective, denoise) and not plain.points
    with Distiller(teacher, student, DistillWeights(output=2.0, feature=0)) as output_only:
        objective, denoise = output_only(student, scheduler, clean, cap, noise, t)
    noisy = scheduler.add_noise(clean, noise, t)
    with torch.no_grad():
        kd = F.mse_loss(student(noisy, t, cap), teacher(noisy, t, cap))
    assert torch.allclose(objective, denoise + 2.0 * kd)
    with Distiller(teacher, student, DistillWeights(output=0, feature=1.0, points=("up",))) as features:
        objective, denoise = features(student, scheduler, clean, cap, noise, t)
        assert set(features.points) == {"up0", "up1", "up2"} and objective > denoise
    objective.backward()
    assert all(p.grad is not None for p in student.unet.up_blocks.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(m._forward_hooks for m in (*student.modules(), *teacher.modules()))  # hooks removed on exit


def test_distilled_training_moves_the_student_towards_the_teacher(data):
    images, ids = data
    teacher = model("sd15", ids, 0).eval().requires_grad_(False)
    scheduler = train_scheduler("epsilon", "squaredcos_cap_v2")
    uncond = tokenize([""], SCALE.context_len)[0]
    budget = Budget(steps=15, batch_size=16, n_train=64, lr=3e-3, warmup_steps=2, image_size=8, width_divisor=32)
    distances = {}
    for output in (0.0, 5.0):
        student = model("bk_sdm_tiny", ids, 1)
        with Distiller(teacher, student, DistillWeights(output=output, feature=0)) as loss_fn:
            outcome = train(student, scheduler, images, ids, uncond, budget, seed=0, loss_fn=loss_fn)
        assert outcome.failure_reason is None and len(outcome.losses) == 15
        distances[output] = teacher_distance(student.eval(), teacher, images[:16], ids[:16], scheduler, 16)
    assert distances[5.0] < distances[0.0]


def test_teacher_distance_is_zero_for_the_teacher_and_uses_the_grid_problems(data):
    images, ids = data
    scheduler = train_scheduler("epsilon", "squaredcos_cap_v2")
    teacher, student = model("sd15", ids, 0).eval(), model("bk_sdm_tiny", ids, 1).eval()
    assert teacher_distance(teacher, teacher, images[:16], ids[:16], scheduler, 8) == 0.0
    distance = teacher_distance(student, teacher, images[:16], ids[:16], scheduler, 8, n_timesteps=2)
    manual = []
    with torch.no_grad():
        for noise, t in grid_problems(images[:16], 2):
            noisy = scheduler.add_noise(images[:16], noise, t)
            manual.append(F.mse_loss(student(noisy, t, ids[:16]), teacher(noisy, t, ids[:16])).item())
    assert distance == pytest.approx(sum(manual) / 2, rel=1e-5) and distance > 0


def test_bad_distillation_options_are_one_line_errors():
    with pytest.raises(UserError, match="must not be negative"):
        DistillWeights(output=-1)
    with pytest.raises(UserError, match="unknown feature point 'middle'"):
        DistillWeights(points=("middle",))
    assert DistillWeights(points=("down2", "up0", "mid")).points == ("down2", "up0", "mid")
