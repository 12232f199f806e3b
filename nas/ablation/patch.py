"""Ablation steps from a JSON patch file, for users who do not write Python.

A file holds one patch object or a list of them:

    {"name": "narrow_mid", "description": "one ResNet in the bottleneck",
     "set": {"ff_mult": 2, "mid": {"num_res": 1, "transformer_depth": 0, "attention": "none"},
             "levels": {"0": {"separable": true}}}}

`set` holds top-level `ArchConfig` fields, `mid` fields, and per-level fields keyed by level index (negative
indices count from the last level). Unknown keys are rejected naming the key. The step does not apply to a
config that already has every value it sets.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from core.errors import UserError
from nas.ablation.step import AblationStep, not_applicable
from search_spaces.config import ArchConfig, LevelConfig, MidConfig

PATCH_KEYS = ("name", "description", "set")
_TOP_FIELDS = tuple(f.name for f in dataclasses.fields(ArchConfig) if f.name not in ("levels", "mid"))
_LEVEL_FIELDS = tuple(f.name for f in dataclasses.fields(LevelConfig))
_MID_FIELDS = tuple(f.name for f in dataclasses.fields(MidConfig))


def _check_keys(data: Any, known: tuple[str, ...], where: str) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected an object, got {type(data).__name__}")
    for key in data:
        if key not in known:
            raise UserError(f"{where}.{key}: unknown field (known: {', '.join(known)})")
    return data


def _apply(name: str, changes: dict, config: ArchConfig) -> ArchConfig:
    top = {k: v for k, v in changes.items() if k not in ("levels", "mid")}
    mid = dataclasses.replace(config.mid, **changes.get("mid", {}))
    levels = list(config.levels)
    for key, fields in changes.get("levels", {}).items():
        index = int(key)
        if not -len(levels) <= index < len(levels):
            raise not_applicable(name, f"the config has no level {index} (it has {len(levels)})")
        levels[index] = dataclasses.replace(levels[index], **fields)
    patched = dataclasses.replace(config, levels=tuple(levels), mid=mid, **top)
    return ArchConfig.from_json(patched.to_json())  # strict: wrong value types raise ConfigError naming the field


def patch_step(data: Any, where: str = "patch") -> AblationStep:
    """An `AblationStep` from one parsed patch object (see the module docstring).

    Raises:
        UserError: unknown or missing keys, or a malformed level index.
    """
    data = _check_keys(data, PATCH_KEYS, where)
    for key in ("name", "set"):
        if key not in data:
            raise UserError(f"{where}.{key}: missing required field")
    name = data["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"{where}.name: must be an identifier such as 'narrow_mid', got {name!r}")
    changes = _check_keys(data["set"], _TOP_FIELDS + ("levels", "mid"), f"{where}.set")
    if not changes:
        raise UserError(f"{where}.set: sets nothing")
    _check_keys(changes.get("mid", {}), _MID_FIELDS, f"{where}.set.mid")
    levels = changes.get("levels", {})
    if not isinstance(levels, dict):
        raise UserError(f"{where}.set.levels: expected an object keyed by level index")
    for key, fields in levels.items():
        try:
            int(key)
        except ValueError:
            raise UserError(f"{where}.set.levels.{key}: not a level index") from None
        _check_keys(fields, _LEVEL_FIELDS, f"{where}.set.levels.{key}")
    return AblationStep(name=name, description=str(data.get("description", f"patch {name}")),
                        transform=lambda config: _apply(name, changes, config))


def load_patch_steps(path: str | Path) -> list[AblationStep]:
    """The steps of a JSON patch file (one object or a list of them).

    Raises:
        UserError: the file is unreadable, not JSON, or a patch is malformed (the message names the field).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read the patch file ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    items = data if isinstance(data, list) else [data]
    return [patch_step(item, f"{path.name}[{i}]" if isinstance(data, list) else path.name)
            for i, item in enumerate(items)]
