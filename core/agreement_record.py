"""The published-panel agreement on record: how often the proxy at a search's budget makes the papers' call.

Like `core.fidelity_record`, two records are read: the one shipped with the package
(`core/agreement_record.json`, written from the project's committed rows by `nas fidelity --panel published
... --record-shipped`) and the user's own (`agreement_record.json` in the evaluator cache), which every finished
published-panel study updates. An entry is keyed by the budget hash the panel was trained at (the proxy regime,
steps and every other budget field); it holds, per signal, the agreement counts of
`nas.ablation.published_calls.agreement`, the published orders' Kendall tau, and where it was measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.cache import cache_dir
from core.io import read_json_object, write_json

SHIPPED = Path(__file__).with_name("agreement_record.json")
USER_FILE = "agreement_record.json"


def _user_record() -> Path:
    return Path(cache_dir()) / USER_FILE


def on_record(budget_hash: str) -> dict[str, Any] | None:
    """The published-panel study on record for this budget (the user's own first), or None."""
    for path in (_user_record(), SHIPPED):
        entry = read_json_object(path).get(budget_hash)
        if entry:
            return entry | {"record": str(path)}
    return None


def record(budget_hash: str, study: dict[str, Any], shipped: bool = False) -> Path:
    """Add (or replace) the entry of a finished published-panel study; returns the record file written."""
    path = SHIPPED if shipped else _user_record()
    data = read_json_object(path)
    data[budget_hash] = study
    return write_json(path, data)


def summary(study: dict[str, Any] | None, signal: str) -> str:
    """One line for reports and manifests: "agrees with the papers on k of n ..." for `signal`, or "not measured"."""
    if not study:
        return "not measured for this budget (`nas fidelity --panel published` measures it)"
    row = (study.get("signals") or {}).get(signal)
    if not row or not row.get("measured"):
        return f"not measured for {signal} (the published-panel study on record has no call on it)"
    total = row["measured"] + row["missing"]
    misses = f"; not the paper's call: {', '.join(row['misses'])}" if row.get("misses") else ""
    budget = study.get("budget", "budget not recorded")
    return (f"agrees with the published full-scale results on {row['agree']} of {row['measured']} measured "
            f"outcomes ({row['missing']} of {total} not measured{misses}; {budget}, "
            f"{study.get('seeds', '?')} seeds, measured {study.get('created', '?')})")
