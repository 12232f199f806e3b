"""`unet_mobile`: the MobileDiffusion / SnapFusion / BK-SDM design space around SD-1.5.

Covers where transformers sit and how deep they are, cross-only vs self+cross attention, ResNet counts on
both paths, separable convolutions per level, the bottleneck, softmax vs ReLU attention, shared K/V, the GLU
activation and expansion, and the head layout. `sd15`, `bk_sdm_tiny` and `mobilediffusion` are all inside
it (so they can be enqueued as warm starts). Text context (77 x 768) and latents (4 x 64 x 64) are fixed:
they belong to the text encoder and VAE, not the UNet.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna

from search_spaces.blocks import BlockSpec, arch_blocks, part_of
from search_spaces.config import ArchConfig, LevelConfig, MidConfig
from search_spaces.space import SPACES, Dimension, NotInSpaceError, SearchSpace

CHANNELS = ((192, 256, 320), (384, 512, 640), (768, 1024, 1280), (1024, 1280))
DEPTHS = ((0, 1), (0, 1, 2), (0, 1, 2, 3, 4), (0, 1, 2))
GLOBALS = {
    "attn_activation": (("softmax", "relu"), "attention score activation (ReLU attention: MobileDiffusion)"),
    "shared_kv": ((False, True), "one projection for keys and values"),
    "ff_activation": (("gelu", "swish"), "gate activation of the GLU feed-forward"),
    "ff_mult": ((2, 3, 4), "GLU feed-forward expansion (SD: 4)"),
    "heads": (("heads8", "dim64"), "8 heads at every width (SD) or 64 channels per head (MobileDiffusion)"),
}
HEADS = {"heads8": dict(num_heads=8, head_dim=0), "dim64": dict(num_heads=0, head_dim=64)}


@SPACES.register("unet_mobile")
class UNetMobileSpace(SearchSpace):
    name = "unet_mobile"
    description = "text-to-image UNets from SD-1.5 down to MobileDiffusion-like designs (3 or 4 levels)"

    def dimensions(self) -> list[Dimension]:
        dims = [Dimension("num_levels", (3, 4), "resolution levels (64, 32, 16[, 8] at 512x512)")]
        for i in range(4):
            cond = "num_levels == 4" if i == 3 else ""
            dims += [
                Dimension(f"channels_{i}", CHANNELS[i], f"channels of level {i}", cond),
                Dimension(f"down_res_{i}", (1, 2), f"ResNet blocks on the down path of level {i}", cond),
                Dimension(f"up_res_{i}", (1, 2, 3), f"ResNet blocks on the up path of level {i}", cond),
                Dimension(f"depth_{i}", DEPTHS[i], f"transformer blocks after each ResNet block of level {i}", cond),
                Dimension(f"attention_{i}", ("cross", "self_cross"), f"attention kind of level {i}",
                          " and ".join(filter(None, [cond, f"depth_{i} > 0"]))),
                Dimension(f"separable_{i}", (False, True), f"separable convs in level {i}'s ResNet blocks", cond),
            ]
        dims += [
            Dimension("mid_num_res", (0, 1, 2, 3), "bottleneck ResNet blocks (0: no bottleneck)"),
            Dimension("mid_depth", (0, 1, 2, 3, 4), "transformer blocks between bottleneck ResNets", "mid_num_res >= 2"),
            Dimension("mid_attention", ("cross", "self_cross"), "bottleneck attention kind", "mid_depth > 0"),
            Dimension("mid_separable", (False, True), "separable convs in the bottleneck", "mid_num_res >= 1"),
        ]
        dims += [Dimension(name, choices, text) for name, (choices, text) in GLOBALS.items()]
        return dims

    def sample(self, trial: optuna.trial.BaseTrial) -> ArchConfig:
        s = lambda name: self.suggest(trial, name)  # noqa: E731
        levels = []
        for i in range(s("num_levels")):
            depth = s(f"depth_{i}")
            levels.append(LevelConfig(
                channels=s(f"channels_{i}"), down_res=s(f"down_res_{i}"), up_res=s(f"up_res_{i}"),
                transformer_depth=depth, attention=s(f"attention_{i}") if depth else "none",
                separable=s(f"separable_{i}")))
        num_res = s("mid_num_res")
        depth = s("mid_depth") if num_res >= 2 else 0
        mid = MidConfig(num_res=num_res, transformer_depth=depth,
                        attention=s("mid_attention") if depth else "none",
                        separable=s("mid_separable") if num_res else False)
        config = ArchConfig(
            levels=tuple(levels), mid=mid, attn_activation=s("attn_activation"), shared_kv=s("shared_kv"),
            ff_activation=s("ff_activation"), ff_mult=s("ff_mult"), **HEADS[s("heads")])
        config.validate()
        return config

    def params_of(self, config: ArchConfig) -> dict[str, Any]:
        heads = next((k for k, v in HEADS.items() if (config.num_heads, config.head_dim) == tuple(v.values())), None)
        if heads is None:
            raise NotInSpaceError(f"heads: num_heads={config.num_heads}/head_dim={config.head_dim} not in {list(HEADS)}")
        fixed = ArchConfig(levels=config.levels)
        for name in ("context_len", "context_dim", "latent_channels", "latent_size", "norm_groups"):
            if getattr(config, name) != getattr(fixed, name):
                raise NotInSpaceError(f"{name}: fixed at {getattr(fixed, name)} in {self.name}")
        p: dict[str, Any] = {"num_levels": len(config.levels)}
        for i, lv in enumerate(config.levels):
            p.update({f"channels_{i}": lv.channels, f"down_res_{i}": lv.down_res, f"up_res_{i}": lv.up_res,
                      f"depth_{i}": lv.transformer_depth, f"separable_{i}": lv.separable})
            if lv.transformer_depth:
                p[f"attention_{i}"] = lv.attention
        mid = config.mid
        p["mid_num_res"] = mid.num_res
        if mid.num_res >= 2:
            p["mid_depth"] = mid.transformer_depth
        if mid.transformer_depth:
            p["mid_attention"] = mid.attention
        if mid.num_res:
            p["mid_separable"] = mid.separable
        p.update(attn_activation=config.attn_activation, shared_kv=config.shared_kv,
                 ff_activation=config.ff_activation, ff_mult=config.ff_mult, heads=heads)
        if p["num_levels"] not in (3, 4):
            raise NotInSpaceError(f"num_levels: {p['num_levels']} is not one of (3, 4)")
        return self.check_params(p, config)

    def enumerate_blocks(self) -> set[BlockSpec]:
        """Distinct blocks, by enumerating each part over only the dimensions that shape it.

        Each partial assignment is completed with a fixed filler and decomposed with `arch_blocks`, so the
        enumeration uses the same bookkeeping as the model itself.
        """
        blocks: set[BlockSpec] = set()
        for n in (3, 4):
            widths = CHANNELS[:n]
            for i in range(n):
                prev = widths[i - 1] if i else (None,)
                nxt = widths[i + 1] if i + 1 < n else (None,)
                stems = widths[0] if i > 1 else (None,)  # ResNet blocks see the time embedding width 4 * C0
                for c0, cp, ci, cn, down, up, sep in itertools.product(
                        stems, prev, widths[i], nxt, (1, 2), (1, 2, 3), (False, True)):
                    chans = {i: ci} | ({i - 1: cp} if i else {}) | ({i + 1: cn} if i + 1 < n else {})
                    chans |= {0: c0} if c0 else {}
                    blocks |= self._part_blocks(n, chans, {i: dict(down_res=down, up_res=up, separable=sep)}, f"level{i}")
                blocks |= self._transformer_blocks(n, i, widths[i], DEPTHS[i][1:], f"level{i}")
            last = widths[-1]
            for c0, cl, num_res, sep in itertools.product(widths[0], last, (1, 2, 3), (False, True)):
                blocks |= self._part_blocks(n, {0: c0, n - 1: cl}, {}, "mid", MidConfig(num_res, 0, "none", sep))
            blocks |= self._transformer_blocks(n, None, last, (1, 2, 3, 4), "mid")
            for c0 in widths[0]:
                blocks |= self._part_blocks(n, {0: c0}, {}, "stem")
        return blocks

    def _filler(self, n: int, chans: dict[int, int], level_kw: dict[int, dict], mid: MidConfig | None = None,
                **global_kw) -> ArchConfig:
        levels = tuple(LevelConfig(chans.get(i, CHANNELS[i][0]), **level_kw.get(i, dict(down_res=1, up_res=1)),
                                   transformer_depth=0, attention="none") for i in range(n))
        return ArchConfig(levels=levels, mid=mid or MidConfig(1, 0, "none"), **global_kw)

    def _part_blocks(self, n, chans, level_kw, part, mid=None) -> set[BlockSpec]:
        config = self._filler(n, chans, level_kw, mid)
        return {spec for path, spec in arch_blocks(config) if part_of(path, n) == part and spec.kind != "transformer"}

    def _transformer_blocks(self, n, level, widths, depths, part) -> set[BlockSpec]:
        out: set[BlockSpec] = set()
        names = list(GLOBALS)
        for width, depth, attention, *values in itertools.product(
                widths, depths, ("cross", "self_cross"), *(GLOBALS[k][0] for k in names)):
            g = dict(zip(names, values))
            g.update(HEADS[g.pop("heads")])
            if level is None:
                config = self._filler(n, {n - 1: width}, {}, MidConfig(2, depth, attention), **g)
            else:
                config = self._filler(n, {level: width}, {}, None, **g)
                levels = list(config.levels)
                levels[level] = LevelConfig(width, 1, 1, depth, attention)
                config = config.replace(levels=tuple(levels))
            out |= {spec for path, spec in arch_blocks(config) if part_of(path, n) == part and spec.kind == "transformer"}
        return out
