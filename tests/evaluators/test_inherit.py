"""Weight inheritance from a teacher proxy: on every step of the paper path and on random samples of the space,
the inherited fraction is in (0, 1], an identical architecture inherits everything, and every inherited tensor
holds the teacher's (sliced, merged or factorised) values. Conversions that are exact keep the function."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from core.errors import UserError
from evaluators.training.inherit import (
    RULES,
    InheritPolicy,
    compose_separable,
    factorise_conv,
    inherit_model,
    inherit_unet,
    merge_kv,
)
from evaluators.training.model import build_proxy_model
from nas.ablation.panels import paper_panel
from search_spaces.presets import get_preset
from search_spaces.proxy import ProxyScale, to_proxy
from search_spaces.space import get_space
from search_spaces.unet import build_unet

SCALE = ProxyScale()  # the default budget's proxy scale
N_SAMPLES = 8


def proxy_unet(config, seed: int):
    torch.manual_seed(seed)
    return build_unet(to_proxy(config, SCALE))


@pytest.fixture(scope="module")
def sd15_teacher(one_thread):
    return proxy_unet(get_preset("sd15"), 0)


def expected_source(name: str, transfer, teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """The teacher-side tensor a transfer must have copied from, recomputed from the teacher's parameters."""
    src, rule = transfer.source, transfer.rule
    if rule in ("copy", "slice", "split_kv"):
        return teacher[src]
    if rule == "merge_kv":
        return merge_kv(teacher[src], teacher[src.replace(".to_k.", ".to_v.")])
    conv = src.rsplit(".", 2)[0] if rule == "compose" else src.rsplit(".", 1)[0]  # "...resnets.0.conv1"
    if rule == "factorise":
        made = factorise_conv(teacher[f"{conv}.weight"], teacher.get(f"{conv}.bias"))
    else:
        made = compose_separable(*(teacher[f"{conv}.{k}"] for k in (
            "depthwise.weight", "depthwise.bias", "pointwise.weight", "pointwise.bias")))
    return made[name[name.index(conv.rsplit(".", 1)[1]) + len(conv.rsplit(".", 1)[1]) + 1:]]


def check_transfers(teacher, candidate, report) -> None:
    """Every inherited tensor equals its teacher source at the recorded indices; the counts add up."""
    t_params = dict(teacher.named_parameters())
    c_params = dict(candidate.named_parameters())
    assert 0 < report.fraction <= 1 and report.total == sum(p.numel() for p in c_params.values())
    assert report.inherited == sum(t.count for t in report.transfers.values()) == sum(report.by_rule.values())
    for name, transfer in report.transfers.items():
        source = expected_source(name, transfer, t_params)
        got, want = c_params[name].detach(), source.detach()
        for dim, (t_idx, c_idx) in enumerate(transfer.maps):
            assert len(t_idx) == len(c_idx) and len(set(c_idx.tolist())) == len(c_idx), name  # one to one
            assert len(t_idx) and int(t_idx.max()) < want.shape[dim] and int(c_idx.max()) < got.shape[dim]
            got, want = got.index_select(dim, c_idx), want.index_select(dim, t_idx)
        assert torch.equal(got, want.to(got.dtype)), name
        assert transfer.count == got.numel() and transfer.rule in RULES
        if transfer.rule == "copy":
            assert torch.equal(c_params[name], t_params[transfer.source]), name


def test_an_identical_architecture_inherits_everything_and_computes_the_same(sd15_teacher):
    candidate = proxy_unet(get_preset("sd15"), 1)
    report = inherit_unet(sd15_teacher, candidate)
    assert report.fraction == 1.0 and report.by_rule == {"copy": report.total} and not report.fresh_blocks
    x, t, ctx = torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), torch.randn(2, 16, 64)
    with torch.no_grad():
        assert torch.equal(candidate(x, t, ctx), sd15_teacher(x, t, ctx))


@pytest.mark.parametrize("step", [label for label, _ in paper_panel()])
def test_every_paper_step_inherits_a_checked_fraction(sd15_teacher, step):
    config = dict(paper_panel())[step]
    candidate = proxy_unet(config, 1)
    report = inherit_unet(sd15_teacher, candidate)
    check_transfers(sd15_teacher, candidate, report)
    # sd15 is the teacher itself and BK-SDM-Tiny sd15 with blocks removed: every weight of both comes from sd15
    assert (report.fraction == 1.0) == (step in ("sd15", "bk_sdm_tiny"))
    if step == "share_kv":
        assert report.by_rule["merge_kv"] > 0
    if step == "separable_deep":
        assert report.by_rule["factorise"] > 0


def test_the_paper_path_inherits_less_the_further_it_goes(sd15_teacher):
    fractions = {label: inherit_unet(sd15_teacher, proxy_unet(config, 1)).fraction for label, config in paper_panel()}
    path = [f for label, f in fractions.items() if label != "bk_sdm_tiny"]
    assert path[0] == 1.0 and path[-1] < path[1] < 1.0  # mobilediffusion (last) shares least with sd15


@pytest.mark.parametrize("index", range(N_SAMPLES))
def test_random_samples_of_the_space_inherit_a_checked_fraction(sd15_teacher, index):
    config = get_space("unet_mobile").sample_random(N_SAMPLES, seed=3)[index]
    candidate = proxy_unet(config, 1)
    check_transfers(sd15_teacher, candidate, inherit_unet(sd15_teacher, candidate))


@pytest.mark.parametrize("candidate_name", ["sd15", "bk_sdm_tiny"])
def test_a_separable_shared_kv_teacher_passes_on_composed_and_split_weights(one_thread, candidate_name):
    teacher = proxy_unet(get_preset("mobilediffusion"), 0)
    candidate = proxy_unet(get_preset(candidate_name), 1)
    report = inherit_unet(teacher, candidate)
    check_transfers(teacher, candidate, report)
    assert report.by_rule["compose"] > 0 and report.by_rule["split_kv"] > 0


def test_up_path_inputs_are_sliced_part_by_part(one_thread):
    """An up-path ResNet reads [h, skip]: with narrower level-2 channels, h maps to h and skip to skip."""
    teacher_cfg = get_preset("sd15")
    teacher = proxy_unet(teacher_cfg, 0)
    candidate = proxy_unet(teacher_cfg.with_level(2, channels=1024), 1)  # proxy 80 -> 64 channels at level 2
    inherit_unet(teacher, candidate)
    # up level 1 (block 2), first ResNet: h comes from level 2 (80 -> 64), the skip from level 1 (40 -> 40)
    t_w = teacher.up_blocks[2].resnets[0].conv1.weight  # (40, 120, 3, 3)
    c_w = candidate.up_blocks[2].resnets[0].conv1.weight  # (40, 104, 3, 3)
    assert t_w.shape[1] == 120 and c_w.shape[1] == 104
    assert torch.equal(c_w[:, :64], t_w[:, :64]) and torch.equal(c_w[:, 64:], t_w[:, 80:])


def test_glu_halves_and_timestep_frequencies_are_matched(one_thread):
    teacher_cfg = get_preset("sd15")
    teacher = proxy_unet(teacher_cfg, 0)
    candidate = proxy_unet(teacher_cfg.replace(ff_mult=3).with_level(0, channels=192), 1)  # c0 24 -> 16
    inherit_unet(teacher, candidate)
    t_ff, c_ff = teacher.down_blocks[1].attentions[0].transformer_blocks[0].ff, \
        candidate.down_blocks[1].attentions[0].transformer_blocks[0].ff
    inner_t, inner_c = t_ff.proj_out.in_features, c_ff.proj_out.in_features  # 160, 120
    assert torch.equal(c_ff.proj_in.weight[:inner_c], t_ff.proj_in.weight[:inner_c])  # value half
    assert torch.equal(c_ff.proj_in.weight[inner_c:], t_ff.proj_in.weight[inner_t:inner_t + inner_c])  # gate half
    # sinusoid of width 16 (candidate) vs 24 (teacher): column k of each half has frequency P^(-k / half)
    t_lin, c_lin = teacher.time_embedding.linear_1.weight, candidate.time_embedding.linear_1.weight  # (T, 24/16)
    for k in range(8):
        match = [j for j in range(12) if torch.equal(c_lin[:64, k], t_lin[:64, j])]
        assert len(match) == 1 and abs(k / 8 - match[0] / 12) <= 0.5 / 12 + 1e-9


def test_exact_conversions_and_identity_fresh_layers_keep_the_teachers_function(one_thread):
    base = get_preset("sd15")
    x, t, ctx = torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), torch.randn(2, 16, 64)
    cases = [
        (base.with_level(3, separable=True).replace(shared_kv=True), base),  # compose + split: exact
        (base, base.with_level(1, transformer_depth=2)),  # a deeper stack: the new layer starts as identity
        (base.with_level(3, transformer_depth=0, attention="none"),
         base.with_level(3, transformer_depth=1, attention="self_cross")),  # a new transformer: identity
    ]
    for teacher_cfg, candidate_cfg in cases:
        teacher, candidate = proxy_unet(teacher_cfg, 0), proxy_unet(candidate_cfg, 1)
        report = inherit_unet(teacher, candidate)
        with torch.no_grad():
            assert torch.allclose(candidate(x, t, ctx), teacher(x, t, ctx), atol=1e-5), candidate_cfg.arch_id
        assert report.zeroed or report.fraction == 1.0
    deeper = proxy_unet(base.with_level(1, transformer_depth=2), 1)
    inherit_unet(proxy_unet(base, 0), deeper, InheritPolicy(identity_fresh=False))
    with torch.no_grad():
        assert not torch.allclose(deeper(x, t, ctx), proxy_unet(base, 0)(x, t, ctx), atol=1e-5)


def test_svd_factorisation_approximates_the_full_conv():
    """Rank 1 per input channel is what a separable conv (depthwise multiplier 1) can hold: exact on separable
    kernels, and on any kernel the best such approximation, its error the discarded singular values."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8, 8)
    dw, pw = torch.randn(6, 1, 3, 3), torch.randn(5, 6, 1, 1)
    separable = compose_separable(dw, torch.zeros(6), pw, torch.randn(5))
    made = factorise_conv(separable["weight"], separable["bias"])
    full = F.conv2d(x, separable["weight"], separable["bias"], padding=1)
    approx = F.conv2d(F.conv2d(x, made["depthwise.weight"], made["depthwise.bias"], padding=1, groups=6),
                      made["pointwise.weight"], made["pointwise.bias"])
    assert torch.allclose(approx, full, atol=1e-4)

    weight = torch.randn(5, 6, 3, 3) + 2.0 * separable["weight"]  # a kernel with a strong separable part
    made = factorise_conv(weight, None)
    rebuilt = compose_separable(made["depthwise.weight"], made["depthwise.bias"], made["pointwise.weight"],
                                made["pointwise.bias"])["weight"]
    s = torch.linalg.svdvals(weight.permute(1, 0, 2, 3).reshape(6, 5, 9))  # (C_in, 5)
    assert math.isclose((weight - rebuilt).norm().item(), s[:, 1:].pow(2).sum().sqrt().item(), rel_tol=1e-4)
    out = F.conv2d(x, weight, padding=1)
    error = (F.conv2d(x, rebuilt, padding=1) - out).norm() / out.norm()
    perturbed = rebuilt + 0.1 * torch.randn_like(rebuilt) * rebuilt.abs().mean()
    assert error < 0.6 and error < (F.conv2d(x, perturbed, padding=1) - out).norm() / out.norm()


def test_a_policy_sends_a_kind_of_change_fresh_with_its_reason(sd15_teacher):
    config = dict(paper_panel())["separable_deep"]
    report = inherit_unet(sd15_teacher, proxy_unet(config, 1), InheritPolicy(fresh=("separable",),
                                                                             reason="measured: ranks worse"))
    assert "factorise" not in report.by_rule
    assert len(report.fallbacks) == 1 and report.fallbacks[0].startswith("separable: ")
    assert "measured: ranks worse" in report.fallbacks[0]
    with pytest.raises(UserError, match="unknown inheritance fallback 'convs'"):
        InheritPolicy(fresh=("convs",))


def test_a_teacher_that_is_no_parent_or_has_other_text_is_refused(one_thread):
    ids = torch.arange(300, 340).reshape(4, 10)
    teacher = build_proxy_model(to_proxy(get_preset("sd15"), SCALE), ids, 0)
    other_widths = get_preset("sd15").replace(levels=tuple(
        dataclasses.replace(lv, channels=c) for lv, c in zip(get_preset("sd15").levels, (192, 384, 768, 1024))))
    candidate = build_proxy_model(to_proxy(other_widths, SCALE), ids, 1)
    with pytest.raises(UserError, match="is a parent of the candidate .* in no block"):
        inherit_model(teacher, candidate, InheritPolicy(fresh=("width",)))
    assert inherit_model(teacher, candidate).parent_blocks > 0  # sliced, it is a parent
    other_text = build_proxy_model(to_proxy(get_preset("sd15"), SCALE), torch.arange(300, 320).reshape(2, 10), 1)
    with pytest.raises(UserError, match="text encoder does not fit"):
        inherit_model(teacher, other_text)
