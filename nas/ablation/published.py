"""The published panel: full-scale outcomes from the papers, each an architecture compared with its base.

The shipped file `nas/ablation/published.json` holds, per row, how to build the architecture (a preset, a
full `ArchConfig`, or an earlier label plus registered ablation steps and/or a config patch as in
`nas/ablation/patch.py`), the base it is compared with, the paper's numbers (null where none are published),
the paper's call (helps / neutral / hurts) and its source. `architectures` holds bases that are no comparison
themselves; `orders` holds published orders of several models (Kendall tau needs >= 4); `not_expressible`
lists outcomes the space cannot express (read by people, not built). A row the space cannot express is an
error naming the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from search_spaces.config import ArchConfig

SHIPPED = Path(__file__).with_name("published.json")
CALLS = ("helps", "neutral", "hurts")
MIN_ORDER = 4  # models a published order needs before a rank correlation with it is reported
ROW_KEYS = ("label", "build", "base", "comparison", "published", "call", "call_basis", "source", "note")
NUMBER_KEYS = ("fid", "clip_score", "params_b", "params_change", "latency_change", "flops_change", "efficiency")
PAIR_KEYS = ("fid", "clip_score", "params_b")  # published as [base, row]
TOP_KEYS = ("format", "description", "architectures", "rows", "orders", "not_expressible")


@dataclass(frozen=True)
class PublishedRow:
    """One published outcome: `label`'s architecture against `base`'s."""

    label: str  # row id, unique in the file
    config: ArchConfig  # the row's architecture (full scale)
    base: str  # label of the architecture it is compared with (a preset, an architecture or an earlier row)
    comparison: str  # what changed, in words
    call: str  # the paper's call: helps | neutral | hurts
    paper: str  # the paper's name
    arxiv: str  # its arXiv id
    published: dict[str, Any] = field(default_factory=dict)  # the paper's numbers (NUMBER_KEYS; null if none)
    call_basis: str = "paper"  # "paper": the paper's words; "numbers": read from its numbers (see note)
    where: str = ""  # table or section
    note: str = ""


@dataclass(frozen=True)
class PublishedOrder:
    """A published order of models by one metric (e.g. BK-SDM's four UNets by FID)."""

    name: str
    metric: str  # the paper's metric the values are in ("fid": lower is better; "clip_score": higher)
    values: dict[str, float]  # label -> the paper's value
    source: str = ""


@dataclass(frozen=True)
class PublishedPanel:
    """Every architecture the rows need (by label) and the rows and orders over them."""

    path: Path
    configs: dict[str, ArchConfig]  # label -> config, bases first, in file order
    rows: list[PublishedRow]
    orders: list[PublishedOrder]
    not_expressible: list[dict[str, Any]]

    def architectures(self) -> list[tuple[str, ArchConfig]]:
        """(label, config) of every architecture a row or an order needs, once per architecture id."""
        needed = {r.label for r in self.rows} | {r.base for r in self.rows} | {
            m for o in self.orders for m in o.values}
        seen: dict[str, tuple[str, ArchConfig]] = {}
        for label, config in self.configs.items():
            if label in needed:
                seen.setdefault(config.arch_id, (label, config))
        return list(seen.values())


def _known(label: str, configs: dict[str, ArchConfig], where: str) -> ArchConfig:
    from search_spaces.presets import PRESETS, get_preset

    if label in configs:
        return configs[label]
    if label in PRESETS.names():
        configs[label] = get_preset(label)
        return configs[label]
    raise UserError(f"{where}: {label!r} is neither a preset nor an earlier label of the file")


def _build(build: Any, configs: dict[str, ArchConfig], where: str) -> ArchConfig:
    """The architecture of one `build` object (see the module docstring)."""
    from nas.ablation.patch import patch_step
    from nas.ablation.step import get_step

    if not isinstance(build, dict) or len({"preset", "config", "from"} & set(build)) != 1:
        raise UserError(f"{where}.build: expected an object with exactly one of 'preset', 'config' or 'from'")
    unknown = set(build) - {"preset", "config", "from", "steps", "set"}
    if unknown or ("from" not in build and {"steps", "set"} & set(build)):
        bad = sorted(unknown or {"steps", "set"} & set(build))
        raise UserError(f"{where}.build: unknown or misplaced key(s) {bad} ('steps' and 'set' go with 'from')")
    if "preset" in build:
        return _known(build["preset"], {}, f"{where}.build.preset")
    if "config" in build:
        return ArchConfig.from_dict(build["config"])
    config = _known(build["from"], configs, f"{where}.build.from")
    steps = build.get("steps", [])
    if not isinstance(steps, list) or not (steps or "set" in build):
        raise UserError(f"{where}.build: 'from' needs a list of 'steps' and/or a 'set' patch")
    for name in steps:
        config = get_step(name)(config)
    if "set" in build:
        config = patch_step(dict(name="patch", set=build["set"]), f"{where}.build")(config)
    return config


def _published_numbers(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) - set(NUMBER_KEYS):
        raise UserError(f"{where}.published: expected an object with keys among {', '.join(NUMBER_KEYS)}")
    out = {k: data.get(k) for k in NUMBER_KEYS}
    for key in PAIR_KEYS:
        value = out[key]
        if value is not None and not (isinstance(value, list) and len(value) == 2
                                      and all(isinstance(v, (int, float)) for v in value)):
            raise UserError(f"{where}.published.{key}: expected [base, row] numbers or null, got {value!r}")
    for key in ("params_change", "latency_change", "flops_change"):
        if out[key] is not None and not isinstance(out[key], (int, float)):
            raise UserError(f"{where}.published.{key}: expected a number or null, got {out[key]!r}")
    return out


def _row(data: Any, configs: dict[str, ArchConfig], where: str) -> PublishedRow:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected an object")
    label = data.get("label")
    where = f"{where} ({label})" if isinstance(label, str) else where
    if set(data) - set(ROW_KEYS):
        raise UserError(f"{where}: unknown key(s) {sorted(set(data) - set(ROW_KEYS))}")
    for key in ("label", "build", "call", "source"):
        if key not in data:
            raise UserError(f"{where}.{key}: missing required field")
    if label in configs:
        raise UserError(f"{where}.label: {label!r} is used twice")
    if data["call"] not in CALLS:
        raise UserError(f"{where}.call: must be one of {', '.join(CALLS)}, got {data['call']!r}")
    build = data["build"]
    base = data.get("base") or (build.get("from") if isinstance(build, dict) else None)
    if not base:
        raise UserError(f"{where}.base: missing (required unless the row is built 'from' its base)")
    try:
        config = _build(build, configs, where)
        _known(base, configs, f"{where}.base")
    except UserError as err:  # a step that does not apply, a bad patch, an unbuildable config
        raise UserError(f"published row {label!r} cannot be expressed: {err}") from None
    configs[label] = config
    source = data["source"] if isinstance(data["source"], dict) else {}
    return PublishedRow(label, config, base, str(data.get("comparison", "")), data["call"],
                        str(source.get("paper", "")), str(source.get("arxiv", "")),
                        _published_numbers(data.get("published", {}), where), str(data.get("call_basis", "paper")),
                        str(source.get("where", "")), str(data.get("note", "")))


def _order(data: Any, configs: dict[str, ArchConfig], where: str) -> PublishedOrder:
    values = data.get("models") if isinstance(data, dict) else None
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise UserError(f"{where}.models: expected an object {{label: number}}")
    if data.get("metric") not in ("fid", "clip_score"):
        raise UserError(f"{where}.metric: must be fid or clip_score, got {data.get('metric')!r}")
    for label in values:
        _known(label, configs, f"{where}.models")
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    return PublishedOrder(str(data.get("name", where)), data["metric"], dict(values),
                          f"{source.get('paper', '')}, arXiv {source.get('arxiv', '')}")


def load_published(path: str | Path | None = None) -> PublishedPanel:
    """The published panel of `path` (default: the shipped file).

    Raises:
        UserError: an unreadable or malformed file, or a row the space cannot express (the message names it).
    """
    path = Path(path) if path is not None else SHIPPED
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read published panel {path}: {getattr(err, 'strerror', None) or err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or set(data) - set(TOP_KEYS):
        raise UserError(f"{path}: not a published panel (an object with a 'rows' list; keys among "
                        f"{', '.join(TOP_KEYS)})")
    configs: dict[str, ArchConfig] = {}
    for i, arch in enumerate(data.get("architectures", [])):
        where = f"{path.name}: architectures[{i}]"
        if not isinstance(arch, dict) or not isinstance(arch.get("label"), str) or "build" not in arch:
            raise UserError(f"{where}: expected an object with 'label' and 'build'")
        try:
            configs[arch["label"]] = _build(arch["build"], configs, where)
        except UserError as err:
            raise UserError(f"published architecture {arch['label']!r} cannot be expressed: {err}") from None
    rows = [_row(r, configs, f"{path.name}: rows[{i}]") for i, r in enumerate(data["rows"])]
    if not rows:
        raise UserError(f"{path}: the published panel has no rows")
    orders = [_order(o, configs, f"{path.name}: orders[{i}]") for i, o in enumerate(data.get("orders", []))]
    return PublishedPanel(path, configs, rows, orders, list(data.get("not_expressible", [])))
