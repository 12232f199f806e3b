"""Parts that the ablation and fidelity reports share: provenance rows, trial counts and sample grids."""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class SampleGrid:
    """One trial's labelled sample grid, inlined in the page."""

    title: str  # e.g. "share_kv (seed 0)"
    png: str  # base64 PNG
    number: int  # trial number


def provenance_rows(manifest: dict[str, Any], trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, value) rows for the header: trial counts, command, creation time and package versions."""
    prov = manifest.get("provenance") or {}
    command = manifest.get("command", "")
    states = trials["state"].value_counts().to_dict() if "state" in trials.columns else {}
    counts = ", ".join(f"{n} {str(s).lower()}" for s, n in states.items()) or "none finished"
    versions = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("versions") or {}).items()))
    return [("trials", counts), ("command", shlex.join(map(str, command)) if isinstance(command, list) else str(command)),
            ("created", str(prov.get("created", "not recorded"))), ("versions", versions or "not recorded")]


def sample_grid(run_path: Path, row: pd.Series, title: str) -> SampleGrid | None:
    """The grid a trials-table row names, if the file exists."""
    rel = row.get("sample_grid")
    if not isinstance(rel, str) or not rel or not (run_path / rel).is_file():
        return None
    return SampleGrid(title, base64.b64encode((run_path / rel).read_bytes()).decode(), int(row["number"]))


def first_seed_grids(run_path: Path, trials: pd.DataFrame, wanted: list[tuple[str, str]]) -> list[SampleGrid]:
    """One grid per (title, arch id) in `wanted`: its lowest-seed complete trial."""
    if "sample_grid" not in trials.columns or trials.empty:
        return []
    done = trials[trials["state"] == "COMPLETE"]
    done = done.sort_values(["seed", "number"] if "seed" in done.columns else ["number"])
    out = []
    for title, arch_id in wanted:
        rows = done[done["arch_id"] == arch_id]
        if len(rows):
            first = rows.iloc[0]
            seed = f" (seed {int(first['seed'])})" if pd.notna(first.get("seed")) else ""
            grid = sample_grid(run_path, first, title + seed)
            if grid:
                out.append(grid)
    return out
