"""Weight inheritance: start a candidate proxy from a trained teacher proxy wherever the weights carry over.

Blocks are matched by their place in the UNet, never by module path: level i of the candidate (counted from
the highest resolution) takes the weights of level i of the teacher, the k-th ResNet or transformer of a
level's down (or up) path those of the teacher's k-th, the bottleneck those of the bottleneck, and the stem
(`conv_in`, `time_embedding`, `out`) those of the stem. Within a matched block:

- **same shape**: copied.
- **wider or narrower channels**: the overlapping leading channels are copied (sliced), the rest keep their
  fresh initialisation. Concatenated inputs are sliced per part: an up-path ResNet reads [h, skip], so the h
  channels map to h channels and the skip channels to skip channels; the GLU's first projection produces
  [value, gate] halves, sliced half by half. The timestep sinusoid's width sets its frequencies
  (P^(-k/half)), so its columns are matched by nearest frequency rather than by position.
- **a transformer stack cut to its first k layers**: layer j takes the teacher's layer j; deeper layers of
  the candidate have no counterpart.
- **softmax -> ReLU attention** (and GELU -> Swish gates): the same projections, copied.
- **separate -> shared K/V**: the shared projection is the mean of the key and value projections, the
  merge closest to both in the least-squares sense (argmin_W |W - Wk|^2 + |W - Wv|^2). Shared -> separate:
  both start from the shared one (exact: the function is unchanged).
- **full -> separable 3x3 conv**: `factorise_conv`. A separable conv (depthwise, multiplier 1, then
  pointwise) is exactly a full conv whose kernel slice of each input channel, a (C_out x 9) matrix, has rank
  one: W[o, i] = P[o, i] * D[i]. Its best approximation of a full kernel is therefore the rank-1 truncated SVD
  of every input channel's slice (Eckart-Young, slice by slice: the slices are independent parameters);
  the rank is 1 because the depthwise multiplier is 1, and the discarded singular values are the error.
  Separable -> full: `compose_separable` (exact).
- **attention kind changes** (self+cross -> cross): the attentions both have are inherited, others are fresh.

Everything else (a block, layer or attention with no counterpart) starts fresh. A fresh residual branch
starts at zero output (its output projection zeroed: `InheritPolicy.identity_fresh`), so the block starts as
the identity and the candidate starts as close to the teacher's function as the mapping allows.

A policy can send whole kinds of change back to a fresh start (`InheritPolicy.fresh`, kinds in
`FALLBACK_KINDS`), for changes where a measurement shows inheritance ranks worse than scratch; the report
lists each fallback with its reason. The report counts the candidate UNet's parameters that received
teacher values (copied, sliced, merged, factorised or composed): `InheritReport.fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import UserError
from search_spaces.blocks import BlockSpec, arch_blocks
from search_spaces.config import ArchConfig

FALLBACK_KINDS = ("separable", "shared_kv", "width", "relu_attention")  # kinds of change a policy can send fresh
RULES = ("copy", "slice", "factorise", "compose", "merge_kv", "split_kv")  # how a tensor got teacher values

Role = tuple  # a block's place: ("down", level, "resnets", j), ("mid", "attentions", j), ("conv_in",), ...


@dataclass(frozen=True)
class InheritPolicy:
    """What inheritance may carry over."""

    fresh: tuple[str, ...] = ()  # kinds of change (FALLBACK_KINDS) whose tensors start fresh instead
    reason: str = ""  # why those kinds start fresh (recorded with each fallback)
    identity_fresh: bool = True  # fresh residual branches start with a zeroed output projection

    def __post_init__(self) -> None:
        unknown = [k for k in self.fresh if k not in FALLBACK_KINDS]
        if unknown:
            raise UserError(f"unknown inheritance fallback {unknown[0]!r}; known: {', '.join(FALLBACK_KINDS)}")


@dataclass
class Transfer:
    """How one candidate tensor got its teacher values: candidate[ix(c)] = adapted_teacher[ix(t)] per dim."""

    source: str  # teacher parameter name (for factorised / merged tensors: the teacher tensor it came from)
    rule: str  # one of RULES
    count: int  # elements that received teacher values
    maps: list[tuple[torch.Tensor, torch.Tensor]]  # per dimension: (teacher indices, candidate indices)


@dataclass
class InheritReport:
    """What a candidate UNet inherited from its teacher."""

    total: int = 0  # parameters of the candidate UNet
    inherited: int = 0  # of which received teacher values
    parent_blocks: int = 0  # candidate blocks outside the stem that received teacher values
    by_rule: dict[str, int] = field(default_factory=dict)  # inherited parameters per rule
    fresh_blocks: list[str] = field(default_factory=list)  # candidate blocks with no teacher counterpart
    fallbacks: list[str] = field(default_factory=list)  # one line per policy fallback applied
    transfers: dict[str, Transfer] = field(default_factory=dict)  # candidate parameter name -> its transfer
    zeroed: list[str] = field(default_factory=list)  # fresh output projections set to zero (identity start)
    text_inherited: bool = False  # the text encoder was copied whole (ProxyModel inheritance)

    @property
    def fraction(self) -> float:
        """Inherited share of the candidate UNet's parameters, in [0, 1]."""
        return self.inherited / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary (without the per-tensor index maps)."""
        return dict(fraction=self.fraction, total=self.total, inherited=self.inherited,
                    parent_blocks=self.parent_blocks, by_rule=dict(self.by_rule),
                    fresh_blocks=list(self.fresh_blocks), fallbacks=list(self.fallbacks), zeroed=len(self.zeroed),
                    text_inherited=self.text_inherited)


# ----------------------------------------------------------------------------------------------- conversions
def factorise_conv(weight: torch.Tensor, bias: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The separable conv closest to a full conv: per input channel, the rank-1 truncated SVD of its kernel slice.

    Args:
        weight: the full kernel (C_out, C_in, k, k).
        bias: its bias (C_out,) or None.

    Returns:
        {"depthwise.weight" (C_in, 1, k, k), "depthwise.bias" (C_in,) zeros, "pointwise.weight"
        (C_out, C_in, 1, 1), "pointwise.bias" (C_out,)}: pointwise(depthwise(x)) approximates the full conv,
        exactly when every slice has rank one. The sign of each channel's pair is fixed so that the depthwise
        kernel sums to a non-negative value (the SVD's sign is arbitrary).
    """
    c_out, c_in, kh, kw = weight.shape
    slices = weight.detach().float().permute(1, 0, 2, 3).reshape(c_in, c_out, kh * kw)  # (C_in, C_out, k*k)
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)  # (C_in, C_out, r), (C_in, r), (C_in, r, k*k)
    root = s[:, 0].sqrt()  # (C_in,)
    column, kernel = u[:, :, 0] * root[:, None], vh[:, 0, :] * root[:, None]  # (C_in, C_out), (C_in, k*k)
    sign = torch.where(kernel.sum(1) < 0, -1.0, 1.0)[:, None]  # (C_in, 1)
    column, kernel = column * sign, kernel * sign
    dtype = weight.dtype
    return {"depthwise.weight": kernel.reshape(c_in, 1, kh, kw).to(dtype),
            "depthwise.bias": torch.zeros(c_in, dtype=dtype),
            "pointwise.weight": column.T.reshape(c_out, c_in, 1, 1).contiguous().to(dtype),
            "pointwise.bias": (bias.detach().clone() if bias is not None else torch.zeros(c_out, dtype=dtype))}


def compose_separable(depthwise_w: torch.Tensor, depthwise_b: torch.Tensor, pointwise_w: torch.Tensor,
                      pointwise_b: torch.Tensor) -> dict[str, torch.Tensor]:
    """The full conv equal to depthwise-then-pointwise: W[o, i] = P[o, i] * D[i], b = P @ d + p (exact).

    Returns:
        {"weight" (C_out, C_in, k, k), "bias" (C_out,)}.
    """
    p = pointwise_w.detach()[:, :, 0, 0]  # (C_out, C_in)
    weight = p[:, :, None, None] * depthwise_w.detach()[:, 0][None]  # (C_out, C_in, k, k)
    return {"weight": weight, "bias": p @ depthwise_b.detach() + pointwise_b.detach()}


def merge_kv(key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The shared K/V projection closest to separate key and value projections (least squares): their mean."""
    return (key.detach() + value.detach()) / 2


# ----------------------------------------------------------------------------------------------- block layout
@dataclass(frozen=True)
class _Block:
    path: str  # module path in the UNet
    spec: BlockSpec
    in_parts: tuple[int, ...]  # channel parts of the input: (h,) or (h, skip) for an up-path ResNet


def _blocks(config: ArchConfig) -> dict[Role, _Block]:
    """Every block of the UNet by its place (level counted from the highest resolution, position in the path)."""
    n = len(config.levels)
    out: dict[Role, _Block] = {}
    flowing = None  # channels of the feature map flowing into the next block
    for path, spec in arch_blocks(config):
        parts = path.split(".")
        if parts[0] in ("down_blocks", "up_blocks"):
            level = int(parts[1]) if parts[0] == "down_blocks" else n - 1 - int(parts[1])
            role = (parts[0][:-7], level, *parts[2:3], *(int(p) for p in parts[3:]))
        elif parts[0] == "mid_block":
            role = ("mid", parts[1], int(parts[2]))
        else:
            role = (path,)
        in_parts = (spec.in_ch,)
        if spec.kind == "resnet" and flowing is not None and spec.in_ch != flowing:
            in_parts = (flowing, spec.in_ch - flowing)
        if spec.kind != "time_embed":
            flowing = spec.out_ch
        out[role] = _Block(path, spec, in_parts)
    return out


def _axes(kind: str, name: str) -> tuple[str, ...]:
    """The meaning of every dimension of a block's parameter `name` (relative to the block).

    "c"/"out": channels (leading slice); "in": the ResNet input (per part); "temb": the timestep-embedding
    width; "sin": the timestep sinusoid (nearest frequency); "ff": the GLU inner width; "ff2": the GLU's
    [value, gate] halves; "=": must be equal (kernel taps, image channels, text width).
    """
    module, _, leaf = name.rpartition(".")
    head = module.split(".")[0]
    if kind == "resnet":
        src = {"norm1": "in", "conv1": "in", "conv_shortcut": "in"}.get(head, "out")
        if head.startswith("norm"):
            return (src,)
        if head == "time_emb_proj":
            return ("out", "temb") if leaf == "weight" else ("out",)
        if module.endswith("depthwise"):
            return (src, "=", "=", "=") if leaf == "weight" else (src,)
        return ("out", src, "=", "=") if leaf == "weight" else ("out",)
    if kind == "transformer":
        last = module.rsplit(".", 1)[-1]
        if module.endswith("ff.proj_in"):
            return ("ff2", "c") if leaf == "weight" else ("ff2",)
        if module.endswith("ff.proj_out"):
            return ("c", "ff") if leaf == "weight" else ("c",)
        if module.endswith(("attn2.to_k", "attn2.to_v", "attn2.to_kv")):
            return ("c", "=")  # cross-attention keys and values read the text (one width at one proxy scale)
        if last in ("proj_in", "proj_out"):
            return ("c", "c", "=", "=") if leaf == "weight" else ("c",)
        return ("c", "c") if leaf == "weight" and last.startswith("to_") else ("c",)
    if kind == "time_embed":
        if module == "linear_1":
            return ("temb", "sin") if leaf == "weight" else ("temb",)
        return ("temb", "temb") if leaf == "weight" else ("temb",)
    if kind == "conv_in":
        return ("c", "=", "=", "=") if leaf == "weight" else ("c",)
    if kind == "conv_out":
        if head == "norm":
            return ("c",)
        return ("=", "c", "=", "=") if leaf == "weight" else ("=",)
    return ("c", "c", "=", "=") if leaf == "weight" else ("c",)  # downsample, upsample


def _leading(t: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(min(t, c))
    return idx, idx


def _parts(t_parts: tuple[int, ...], c_parts: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading slices part by part of a concatenated dimension (parts present in only one side are skipped)."""
    t_idx, c_idx, t_off, c_off = [], [], 0, 0
    for t, c in zip(t_parts, c_parts):
        k = torch.arange(min(t, c))
        t_idx.append(t_off + k)
        c_idx.append(c_off + k)
        t_off, c_off = t_off + t, c_off + c
    return torch.cat(t_idx), torch.cat(c_idx)


def _frequencies(t: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of two [cos, sin] sinusoids of widths t and c paired by nearest frequency (one to one)."""
    ht, hc = t // 2, c // 2
    if ht >= hc:
        c_k = torch.arange(hc)
        t_k = torch.round(c_k * ht / hc).long()
    else:
        t_k = torch.arange(ht)
        c_k = torch.round(t_k * hc / ht).long()
    return torch.cat([t_k, ht + t_k]), torch.cat([c_k, hc + c_k])


def _maps(axes: tuple[str, ...], t_shape: torch.Size, c_shape: torch.Size, t_block: _Block,
          c_block: _Block) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per dimension (teacher indices, candidate indices), or None when a fixed dimension differs."""
    maps = []
    for axis, t, c in zip(axes, t_shape, c_shape):
        if axis == "=":
            if t != c:
                return None
            maps.append((torch.arange(t), torch.arange(c)))
        elif axis == "in":
            maps.append(_parts(t_block.in_parts, c_block.in_parts))
        elif axis == "ff2":
            maps.append(_parts((t // 2, t // 2), (c // 2, c // 2)))
        elif axis == "sin":
            maps.append(_frequencies(t, c))
        else:
            maps.append(_leading(t, c))
    return maps


# ----------------------------------------------------------------------------------------------- adaptation
def _adapt(t_params: dict[str, torch.Tensor], t_block: _Block, c_block: _Block, c_names: set[str],
           policy: InheritPolicy, fresh: dict[str, int]) -> dict[str, tuple[torch.Tensor, str, str]]:
    """The teacher block's tensors under the candidate block's parameter names: name -> (tensor, rule, source).

    Converts full <-> separable convs and separate <-> shared K/V, and leaves out what the policy sends fresh
    (counted in `fresh`: fallback kind -> candidate tensors left fresh).
    """
    out = {name: (tensor, "copy", name) for name, tensor in t_params.items()}
    ts, cs = t_block.spec, c_block.spec

    def remove(prefixes: tuple[str, ...]) -> None:
        for name in [n for n in out if n.startswith(prefixes)]:
            del out[name]

    def send_fresh(kind: str, prefixes: tuple[str, ...]) -> None:
        fresh[kind] = fresh.get(kind, 0) + sum(n.startswith(prefixes) for n in c_names)
        remove(prefixes)

    if cs.kind == "resnet" and ts.separable != cs.separable:
        for conv in ("conv1", "conv2"):
            if "separable" in policy.fresh:
                send_fresh("separable", (f"{conv}.",))
            elif cs.separable:  # full -> separable
                made = factorise_conv(t_params[f"{conv}.weight"], t_params.get(f"{conv}.bias"))
                remove((f"{conv}.",))
                out |= {f"{conv}.{k}": (v, "factorise", f"{conv}.weight") for k, v in made.items()}
            else:  # separable -> full
                made = compose_separable(*(t_params[f"{conv}.{k}"] for k in (
                    "depthwise.weight", "depthwise.bias", "pointwise.weight", "pointwise.bias")))
                remove((f"{conv}.",))
                out |= {f"{conv}.{k}": (v, "compose", f"{conv}.pointwise.weight") for k, v in made.items()}
    if cs.kind == "transformer":
        for attn in sorted({n[:n.index(".to_q.")] for n in t_params if ".to_q." in n}):  # "transformer_blocks.0.attn1"
            if ts.attn_activation != cs.attn_activation and "relu_attention" in policy.fresh:
                send_fresh("relu_attention", (f"{attn}.to_",))
            elif ts.shared_kv == cs.shared_kv:
                continue
            elif "shared_kv" in policy.fresh:
                send_fresh("shared_kv", (f"{attn}.to_k", f"{attn}.to_v"))
            elif cs.shared_kv:
                key, value = out.pop(f"{attn}.to_k.weight")[0], out.pop(f"{attn}.to_v.weight")[0]
                out[f"{attn}.to_kv.weight"] = (merge_kv(key, value), "merge_kv", f"{attn}.to_k.weight")
            else:
                shared = out.pop(f"{attn}.to_kv.weight")[0]
                out[f"{attn}.to_k.weight"] = (shared, "split_kv", f"{attn}.to_kv.weight")
                out[f"{attn}.to_v.weight"] = (shared, "split_kv", f"{attn}.to_kv.weight")
    return {k: v for k, v in out.items() if k in c_names}


def _params(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix) + 1:]: p for name, p in model.named_parameters() if name.startswith(prefix + ".")}


def _branch_gate(name: str, names: set[str]) -> str | None:
    """If `name` is the output projection of a residual branch (attention `to_out`, GLU `proj_out`, a
    transformer's `proj_out`, a ResNet's last conv or its pointwise half), the branch's input projection:
    when that one is fresh, the whole branch is, and its output projection is zeroed."""
    module = name.rpartition(".")[0]
    if module.endswith("to_out"):
        gate = module[:-len("to_out")] + "to_q.weight"
    elif module.endswith("proj_out"):
        gate = module[:-len("out")] + "in.weight"
    elif module in ("conv2", "conv2.pointwise"):
        gate = "conv1.weight" if "conv1.weight" in names else "conv1.pointwise.weight"
    else:
        return None
    return gate if gate in names else None


def _copy(param: torch.Tensor, tensor: torch.Tensor, maps: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """param[ix(candidate indices)] = tensor[ix(teacher indices)]; returns the elements written."""
    src = tensor.to(param.device, param.dtype)
    for dim, (t_idx, _) in enumerate(maps):
        src = src.index_select(dim, t_idx.to(param.device))
    param[torch.meshgrid(*(c_idx.to(param.device) for _, c_idx in maps), indexing="ij")] = src
    return src.numel()


def inherit_unet(teacher: nn.Module, candidate: nn.Module, policy: InheritPolicy = InheritPolicy()) -> InheritReport:
    """Copy the teacher UNet's weights into the candidate UNet in place wherever they carry over.

    Args:
        teacher: a `search_spaces.unet.UNet` (its `config` describes it), trained.
        candidate: a freshly initialised UNet at the same proxy scale.
        policy: which kinds of change start fresh, and whether fresh residual branches start as the identity.

    Returns:
        The report: inherited parameters and how, fresh blocks, fallbacks, and per-tensor index maps.
    """
    t_blocks, c_blocks = _blocks(teacher.config), _blocks(candidate.config)
    report = InheritReport(total=sum(p.numel() for p in candidate.parameters()))
    fresh: dict[str, int] = {}  # fallback kind -> candidate tensors the policy left fresh
    with torch.no_grad():
        for role, c_block in c_blocks.items():
            c_params = _params(candidate, c_block.path)
            t_block = t_blocks.get(role)
            transfers_before = len(report.transfers)
            if t_block is None:
                report.fresh_blocks.append(c_block.path)
                adapted = {}
            else:
                adapted = _adapt(_params(teacher, t_block.path), t_block, c_block, set(c_params), policy, fresh)
            for name, (tensor, rule, source) in adapted.items():
                param = c_params[name]
                resized = tuple(tensor.shape) != tuple(param.shape)
                if resized and "width" in policy.fresh:
                    fresh["width"] = fresh.get("width", 0) + 1
                    continue
                maps = _maps(_axes(c_block.spec.kind, name), tensor.shape, param.shape, t_block, c_block)
                if maps is None:
                    continue
                count = _copy(param, tensor, maps)
                rule = "slice" if rule == "copy" and resized else rule
                report.transfers[f"{c_block.path}.{name}"] = Transfer(f"{t_block.path}.{source}", rule, count, maps)
                report.by_rule[rule] = report.by_rule.get(rule, 0) + count
                report.inherited += count
            if len(role) > 1 and len(report.transfers) > transfers_before:
                report.parent_blocks += 1
            if policy.identity_fresh:
                got = {n for n in c_params if f"{c_block.path}.{n}" in report.transfers}
                for name, param in c_params.items():
                    gate = _branch_gate(name, set(c_params))
                    if gate and name not in got and gate not in got:
                        param.zero_()
                        report.zeroed.append(f"{c_block.path}.{name}")
    reason = f" ({policy.reason})" if policy.reason else ""
    report.fallbacks = [f"{kind}: {n} tensor(s) start fresh instead of inheriting{reason}"
                        for kind, n in sorted(fresh.items()) if n]
    return report


def inherit_model(teacher: nn.Module, candidate: nn.Module, policy: InheritPolicy = InheritPolicy()) -> InheritReport:
    """`inherit_unet` on two ProxyModels, and the teacher's text encoder copied whole into the candidate's.

    Raises:
        UserError: the text encoders differ in shape (the teacher was trained on other captions or at another
            text scale), or the teacher is a parent of the candidate in no block outside the stem (conv_in,
            time embedding, output head).
    """
    t_text, c_text = teacher.text.state_dict(), candidate.text.state_dict()
    mismatched = [k for k in c_text if k not in t_text or t_text[k].shape != c_text[k].shape]
    if mismatched or set(t_text) != set(c_text):
        raise UserError(f"the teacher's text encoder does not fit the candidate's ({(mismatched or ['keys'])[0]}): "
                        "it was trained on other captions or at another proxy scale")
    report = inherit_unet(teacher.unet, candidate.unet, policy)
    if report.parent_blocks == 0:
        raise UserError(f"the teacher (proxy {teacher.config.arch_id}) is a parent of the candidate (proxy "
                        f"{candidate.config.arch_id}) in no block: nothing to inherit (use --proxy scratch)")
    candidate.text.load_state_dict(t_text)
    report.text_inherited = True
    return report
