"""Design dimensions a person can read: parallel categories per UNet level, and the Pareto set's designs side
by side with what each one changed against the `sd15` and `mobilediffusion` anchors.

Dimensions are grouped by name, as the search spaces spell them: `<name>_<i>` belongs to level i, `mid_<name>`
to the bottleneck, anything else to the global choices. A group with more than MAX_AXES dimensions is drawn in
several figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.run_data import RunData
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset
from search_spaces.registry import UnknownNameError
from search_spaces.space import get_space

ANCHORS = ("sd15", "mobilediffusion")
MAX_AXES = 7  # design axes per figure: labels stay apart in half the page width
_LEVEL = re.compile(r"^(?P<base>.+)_(?P<level>\d+)$")


# ---------------------------------------------------------------------------------------------- parallel categories
@dataclass(frozen=True)
class Axis:
    name: str  # axis label (the dimension name without its group part)
    values: list[float]  # position per trial: the index of its choice, -1 where the dimension is inactive
    ticks: list[tuple[float, str]]  # (position, label) of every choice


@dataclass(frozen=True)
class DesignGroup:
    """One parallel-categories figure: a UNet part's dimensions, ribbons coloured by the first objective."""

    title: str  # "level 0", "bottleneck", "global", with "(1 of 2)" when split
    dimensions: list[str]  # full dimension names, in axis order
    axes: list[Axis]


@dataclass(frozen=True)
class ParallelInfo:
    groups: list[DesignGroup]  # design dimensions that at least one complete trial used, per UNet part
    colour_by: str  # metric column the ribbons are coloured by (the first objective)
    colour: list[float]
    numbers: list[int]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _axis(name: str, column: pd.Series) -> Axis:
    """Design dimensions are finite choices: drawn at evenly spaced positions (numbers in numeric order,
    strings and booleans alphabetically), with trials where the dimension is inactive at -1 ("n/a")."""
    present = column.dropna()
    numeric = all(_is_number(v) for v in present)
    choices = sorted(set(present.astype(float) if numeric else present.astype(str)))
    pos = {choice: float(i) for i, choice in enumerate(choices)}
    values = [-1.0 if pd.isna(v) else pos[float(v) if numeric else str(v)] for v in column]
    ticks = [(p, f"{c:g}" if numeric else c) for c, p in pos.items()]
    return Axis(name, values, ([(-1.0, "n/a")] if -1.0 in values else []) + ticks)


def group_of(dimension: str) -> tuple[str, str]:
    """(group title, axis label) of a design dimension."""
    if dimension.startswith("mid_"):
        return "bottleneck", dimension[4:]
    match = _LEVEL.match(dimension)
    if match:
        return f"level {match['level']}", match["base"]
    return "global", dimension


def parallel_info(data: RunData) -> ParallelInfo:
    frame = data.complete
    colour_by = data.objectives[0].name
    try:  # the space's own dimension order (channels, ResNets, depth, ...) reads better than alphabetical
        known = [d.name for d in get_space(str(data.manifest.get("space"))).dimensions()]
    except UnknownNameError:
        known = []
    used = [c[2:] for c in data.design_columns if frame[c].notna().any()]
    grouped: dict[str, list[str]] = {}
    for dim in sorted(used, key=lambda d: (known.index(d) if d in known else len(known), d)):
        grouped.setdefault(group_of(dim)[0], []).append(dim)
    order = sorted(grouped, key=lambda g: (g != "global", g == "bottleneck", g))  # global, levels, bottleneck
    groups = []
    for title in order:
        dims = grouped[title]
        chunks = [dims[i:i + MAX_AXES] for i in range(0, len(dims), MAX_AXES)]
        for k, chunk in enumerate(chunks):
            suffix = f" ({k + 1} of {len(chunks)})" if len(chunks) > 1 else ""
            groups.append(DesignGroup(title + suffix, chunk, [_axis(group_of(d)[1], frame[f"p_{d}"]) for d in chunk]))
    return ParallelInfo(groups, colour_by, frame[colour_by].astype(float).tolist(), [int(n) for n in frame.index])


# ---------------------------------------------------------------------------------------------- side by side
def flatten(config: ArchConfig) -> dict[str, str]:
    """Every field of a config as "level 0 channels" -> "320", "mid num_res" -> "2", "ff_mult" -> "4"."""
    out: dict[str, str] = {}
    for i, level in enumerate(config.to_dict()["levels"]):
        out |= {f"level {i} {k}": str(v) for k, v in level.items()}
    out |= {f"mid {k}": str(v) for k, v in config.to_dict()["mid"].items()}
    out |= {k: str(v) for k, v in config.to_dict().items() if k not in ("levels", "mid")}
    return out


@dataclass(frozen=True)
class DesignColumn:
    title: str  # "sd15", "trial 4 (knee)"
    number: int | None  # trial number (None for an anchor)
    arch_id: str
    knee: bool
    values: dict[str, str]  # flattened config ("—" where the field does not exist, e.g. a 4th level)


@dataclass(frozen=True)
class MemberDiff:
    """What one Pareto member changed against each anchor."""

    number: int
    arch_id: str
    preset: str  # preset name when the member is one
    knee: bool
    changes: dict[str, list[str]]  # anchor -> ["level 1 channels: 640 -> 512", ...]


@dataclass(frozen=True)
class DesignTableInfo:
    """The anchors and the Pareto set's designs, one column each; fields equal in every column are folded."""

    columns: list[DesignColumn]  # anchors first, then Pareto members in Pareto-table order
    fields: list[str]  # fields that differ between at least two columns, in config order
    folded: list[str]  # fields equal in every column
    diffs: list[MemberDiff]


def _changes(values: dict[str, str], anchor: dict[str, str], fields: list[str]) -> list[str]:
    """"field: anchor value → member value" per differing field; a level only one side has is one entry."""
    out: list[str] = []
    for f in fields:
        level = re.match(r"^level \d+", f)
        if level and (f in values) != (f in anchor):
            if out and out[-1].startswith(level[0] + " "):
                continue  # the whole level was reported by its first field
            mine = ", ".join(f"{k[len(level[0]) + 1:]} {v}" for k, v in values.items() if k.startswith(level[0] + " "))
            out.append(f"{level[0]} added ({mine})" if f in values else f"{level[0]} removed")
        elif values.get(f) != anchor.get(f):
            out.append(f"{f}: {anchor.get(f, '—')} → {values.get(f, '—')}")
    return out


def design_table(data: RunData, pareto_rows: list) -> DesignTableInfo:
    """Anchors plus the members of `pareto_rows` (ParetoRow objects, in their order)."""
    columns = [DesignColumn(name, None, get_preset(name).arch_id, False, flatten(get_preset(name))) for name in ANCHORS]
    for row in pareto_rows:
        config = ArchConfig.from_json(str(data.complete.loc[row.number, "config_json"]))
        title = f"trial {row.number}" + (f" ({row.preset})" if row.preset else "") + (" ★ knee" if row.knee else "")
        columns.append(DesignColumn(title, row.number, row.arch_id, row.knee, flatten(config)))
    order: list[str] = []
    for col in columns:
        order += [f for f in col.values if f not in order]
    differ = [f for f in order if len({c.values.get(f, "—") for c in columns}) > 1]
    folded = [f for f in order if f not in differ]
    anchors = {c.title: c.values for c in columns[:len(ANCHORS)]}
    diffs = [MemberDiff(c.number, c.arch_id, row.preset, c.knee,
                        {a: _changes(c.values, v, order) for a, v in anchors.items()})
             for c, row in zip(columns[len(ANCHORS):], pareto_rows)]
    return DesignTableInfo(columns, differ, folded, diffs)
