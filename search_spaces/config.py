"""The architecture description: a frozen, nested, typed config with a JSON round trip and a stable id.

An `ArchConfig` describes a text-conditioned diffusion UNet at *full* (deployment) scale. Everything the
rest of the project does (build, cost, latency, proxy training, ablation) starts from one of these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field

from search_spaces.errors import UserError

ATTENTION_KINDS = ("none", "cross", "self", "self_cross")
ATTN_ACTIVATIONS = ("softmax", "relu")
FF_ACTIVATIONS = ("gelu", "swish")


class ConfigError(UserError, ValueError):
    """A config that cannot describe a buildable UNet; the message names the offending field."""


@dataclass(frozen=True)
class LevelConfig:
    """One resolution level of the UNet (the down block and its mirrored up block)."""

    channels: int  # output channels of every block at this level
    down_res: int  # ResNet blocks on the down path
    up_res: int  # ResNet blocks on the up path (diffusers uses down_res + 1, one per skip)
    transformer_depth: int  # transformer blocks after each ResNet block (0 = no transformer)
    attention: str = "self_cross"  # "none" | "cross" | "self" | "self_cross" inside those transformers
    separable: bool = False  # depthwise 3x3 + pointwise 1x1 instead of full 3x3 convs in ResNet blocks


@dataclass(frozen=True)
class MidConfig:
    """The bottleneck stage: ResNet, then (transformer, ResNet) x (num_res - 1); num_res 0 removes it."""

    num_res: int = 2  # ResNet blocks in the bottleneck (0 = no mid block, as in BK-SDM-Tiny)
    transformer_depth: int = 1  # transformer blocks between consecutive ResNet blocks
    attention: str = "self_cross"  # attention kind inside the bottleneck transformers
    separable: bool = False  # separable convs in the bottleneck ResNet blocks


@dataclass(frozen=True)
class ArchConfig:
    """A whole UNet: levels from highest to lowest resolution, the bottleneck, and global choices."""

    levels: tuple[LevelConfig, ...]  # highest resolution first; every level but the last downsamples
    mid: MidConfig = field(default_factory=MidConfig)  # the bottleneck stage
    attn_activation: str = "softmax"  # "softmax", or "relu": relu(q.k / sqrt(d)) / key length
    shared_kv: bool = False  # one projection weight serves as both key and value
    ff_activation: str = "gelu"  # gate activation of the GLU feed-forward: "gelu" (GEGLU) or "swish"
    ff_mult: int = 4  # GLU inner width / channels (SD: 4, i.e. an 8x projection before the gate)
    num_heads: int = 8  # attention heads per transformer; 0 = derive from head_dim
    head_dim: int = 0  # channels per head; 0 = derive from num_heads (exactly one of the two is set)
    context_len: int = 77  # text tokens in the conditioning sequence
    context_dim: int = 768  # width of the text encoder's hidden states
    latent_channels: int = 4  # channels of the latent (or pixel) input and output
    latent_size: int = 64  # spatial size of the latent (64 for 512x512 images through an 8x VAE)
    norm_groups: int = 32  # GroupNorm groups in ResNet blocks and transformer input norms

    # ------------------------------------------------------------------ derived properties
    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding (4x the first level's channels, as in SD)."""
        return 4 * self.levels[0].channels

    def heads_for(self, channels: int) -> int:
        """Number of attention heads of a transformer with `channels` channels."""
        return self.num_heads if self.num_heads else channels // self.head_dim

    def resolution(self, level: int) -> int:
        """Spatial size of the feature maps of level `level`."""
        return self.latent_size >> level

    @property
    def arch_id(self) -> str:
        """Stable short id: first 12 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json(indent=None).encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        separators = None if indent else (",", ":")
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, separators=separators)

    @classmethod
    def from_dict(cls, data: typing.Any) -> "ArchConfig":
        """Build and validate a config from plain data; unknown keys and wrong types raise ConfigError."""
        config = _from_data(cls, data, "")
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def replace(self, **changes) -> "ArchConfig":
        """A validated copy with some top-level fields changed."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def with_level(self, index: int, **changes) -> "ArchConfig":
        """A validated copy with fields of one level changed."""
        levels = list(self.levels)
        levels[index] = dataclasses.replace(levels[index], **changes)
        return self.replace(levels=tuple(levels))

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ConfigError naming the first field that makes the UNet unbuildable."""
        _check(len(self.levels) >= 1, "levels", "at least one level is required")
        _check(self.attn_activation in ATTN_ACTIVATIONS, "attn_activation",
               f"must be one of {ATTN_ACTIVATIONS}, got {self.attn_activation!r}")
        _check(self.ff_activation in FF_ACTIVATIONS, "ff_activation",
               f"must be one of {FF_ACTIVATIONS}, got {self.ff_activation!r}")
        _check(self.ff_mult >= 1, "ff_mult", f"must be >= 1, got {self.ff_mult}")
        _check((self.num_heads > 0) != (self.head_dim > 0), "num_heads",
               f"exactly one of num_heads / head_dim must be positive (got {self.num_heads} / {self.head_dim})")
        _check(self.num_heads >= 0 and self.head_dim >= 0, "head_dim", "must not be negative")
        for name in ("context_len", "context_dim", "latent_channels", "latent_size", "norm_groups"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        n_down = len(self.levels) - 1
        _check(self.latent_size % (1 << n_down) == 0, "latent_size",
               f"{self.latent_size} is not divisible by 2**{n_down} (one halving per level after the first)")
        for i, level in enumerate(self.levels):
            where = f"levels[{i}]"
            self._check_width(level.channels, level.transformer_depth > 0, f"{where}.channels")
            _check(level.down_res >= 1, f"{where}.down_res", f"must be >= 1, got {level.down_res}")
            _check(level.up_res >= 1, f"{where}.up_res", f"must be >= 1, got {level.up_res}")
            self._check_attention(level.transformer_depth, level.attention, where)
        mid = self.mid
        _check(mid.num_res >= 0, "mid.num_res", f"must be >= 0, got {mid.num_res}")
        self._check_attention(mid.transformer_depth, mid.attention, "mid")
        _check(mid.transformer_depth == 0 or mid.num_res >= 2, "mid.transformer_depth",
               "bottleneck transformers sit between ResNet blocks: they need mid.num_res >= 2")
        if mid.num_res:
            self._check_width(self.levels[-1].channels, mid.transformer_depth > 0, "mid")

    def _check_width(self, channels: int, has_attention: bool, where: str) -> None:
        _check(channels >= 1, where, f"must be >= 1, got {channels}")
        _check(channels % self.norm_groups == 0, where,
               f"{channels} channels are not divisible by norm_groups={self.norm_groups}")
        if has_attention:
            divisor = self.num_heads or self.head_dim
            what = "num_heads" if self.num_heads else "head_dim"
            _check(channels % divisor == 0, where, f"{channels} channels are not divisible by {what}={divisor}")

    @staticmethod
    def _check_attention(depth: int, attention: str, where: str) -> None:
        _check(depth >= 0, f"{where}.transformer_depth", f"must be >= 0, got {depth}")
        _check(attention in ATTENTION_KINDS, f"{where}.attention",
               f"must be one of {ATTENTION_KINDS}, got {attention!r}")
        _check((depth == 0) == (attention == "none"), f"{where}.attention",
               f"attention {attention!r} does not match transformer_depth={depth} "
               "(use 'none' exactly when there are no transformers)")


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {message}")


def _from_data(tp: typing.Any, data: typing.Any, where: str) -> typing.Any:
    """Strictly convert JSON data into `tp` (a dataclass, tuple[...] or scalar type)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'config'}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        prefix = f"{where}." if where else ""
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(fields)})")
        kwargs = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{prefix}{name}: missing required field")
                continue
            kwargs[name] = _from_data(hints[name], data[name], f"{prefix}{name}")
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(data, list):
            raise ConfigError(f"{where}: expected a list, got {type(data).__name__}")
        return tuple(_from_data(item_tp, item, f"{where}[{i}]") for i, item in enumerate(data))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported union type")  # no unions in ArchConfig
    # bool is a subclass of int: reject True for an int field and 1 for a bool field.
    if tp is int and (not isinstance(data, int) or isinstance(data, bool)):
        raise ConfigError(f"{where}: expected an integer, got {type(data).__name__} {data!r}")
    if tp is bool and not isinstance(data, bool):
        raise ConfigError(f"{where}: expected true or false, got {type(data).__name__} {data!r}")
    if tp is str and not isinstance(data, str):
        raise ConfigError(f"{where}: expected a string, got {type(data).__name__} {data!r}")
    return data
