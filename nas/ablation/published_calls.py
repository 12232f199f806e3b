"""The proxy's call on each published outcome, beside the paper's (pandas and scipy only, no torch).

Input: one row per finished proxy trial (`arch_id`, `seed`, `state`, the quality metrics). For a published
row and one signal, the proxy compares the row's seed mean with its base's and calls the change by
`NEUTRAL_RULE`; the call agrees with the paper's only when it is the same word (a harmful outcome called
neutral is a miss). A published order of >= 4 models is compared with the proxy's order by Kendall tau.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from core.metrics import get_metric
from nas.ablation.published import MIN_ORDER, PublishedPanel

NEUTRAL_RULE = ("neutral when |mean(row) - mean(base)| <= the larger of the two architectures' seed ranges "
                "(max - min over seeds); otherwise helps or hurts by the sign, in the signal's better direction; "
                "no call with fewer than 2 seeds of either")
MIN_SEEDS = 2  # a seed range needs two seeds


def seed_stats(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per architecture id: seed mean, seed range (max - min) and count of `metric` over complete trials."""
    if metric not in trials.columns:
        return pd.DataFrame(columns=["mean", "range", "count"])
    ok = trials[(trials["state"] == "COMPLETE") & trials[metric].notna()]
    grouped = ok.groupby("arch_id")[metric]
    return pd.DataFrame({"mean": grouped.mean(), "range": grouped.max() - grouped.min(), "count": grouped.count()})


def proxy_call(row: dict[str, float], base: dict[str, float], maximize: bool) -> dict[str, Any]:
    """The call of one change from the seed statistics of the row and its base (`mean`, `range`, `count`).

    Returns:
        `diff` (row - base mean), `spread` (the larger seed range), `call` (helps / neutral / hurts, None when
        either has fewer than MIN_SEEDS seeds) and `seeds` (the smaller seed count of the two).
    """
    seeds = int(min(row.get("count", 0), base.get("count", 0)))
    if seeds < MIN_SEEDS:
        return dict(diff=None, spread=None, call=None, seeds=seeds)
    diff = float(row["mean"] - base["mean"])
    spread = float(max(row["range"], base["range"]))
    if abs(diff) <= spread:
        call = "neutral"
    else:
        call = "helps" if (diff > 0) == maximize else "hurts"
    return dict(diff=diff, spread=spread, call=call, seeds=seeds)


def _stats_of(table: pd.DataFrame, arch_id: str) -> dict[str, float]:
    return table.loc[arch_id].to_dict() if arch_id in table.index else {}


def call_table(panel: PublishedPanel, trials: pd.DataFrame, signals: tuple[str, ...]) -> pd.DataFrame:
    """One row per published outcome: the paper's call and numbers, and per signal the proxy's difference,
    spread and call (`<signal>_diff`, `<signal>_spread`, `<signal>_call`)."""
    per_signal = {s: seed_stats(trials, s) for s in signals}
    out = []
    for row in panel.rows:
        base = panel.configs[row.base]
        record: dict[str, Any] = dict(label=row.label, base=row.base, arch_id=row.config.arch_id,
                                      base_arch_id=base.arch_id, comparison=row.comparison, paper=row.paper,
                                      arxiv=row.arxiv, where=row.where, paper_call=row.call,
                                      call_basis=row.call_basis)
        record |= {f"paper_{k}": v for k, v in row.published.items()}
        for signal in signals:
            table = per_signal[signal]
            call = proxy_call(_stats_of(table, row.config.arch_id), _stats_of(table, base.arch_id),
                              get_metric(signal).maximize)
            record |= {f"{signal}_{k}": v for k, v in call.items()}
        out.append(record)
    return pd.DataFrame(out)


def agreement(calls: pd.DataFrame, signal: str) -> dict[str, Any]:
    """How often the proxy's call on `signal` is the paper's: `agree` of `measured` outcomes (same word),
    `harm_agree` (hurts vs not hurts), `missing` (no call: not measured or one seed), and the `misses` (labels
    of the measured outcomes called otherwise, when the table has labels)."""
    called = calls[calls[f"{signal}_call"].notna()] if f"{signal}_call" in calls.columns else calls.iloc[:0]
    same = called[f"{signal}_call"] == called["paper_call"] if len(called) else pd.Series(dtype=bool)
    harm = (called[f"{signal}_call"] == "hurts") == (called["paper_call"] == "hurts") if len(called) else same
    misses = [str(v) for v in called.loc[~same, "label"]] if "label" in called.columns and len(called) else []
    return dict(signal=signal, agree=int(same.sum()), measured=len(called), harm_agree=int(harm.sum()),
                missing=len(calls) - len(called), misses=misses)


def order_taus(panel: PublishedPanel, trials: pd.DataFrame, signals: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per published order of >= MIN_ORDER models and signal: Kendall tau between the paper's values and the
    proxy's seed means, both oriented so that a positive tau calls the same models better (None, with the
    count measured, when a model has no measurement)."""
    out = []
    for order in panel.orders:
        if len(order.values) < MIN_ORDER:
            continue
        paper_sign = -1.0 if get_metric(order.metric).maximize else 1.0
        for signal in signals:
            table = seed_stats(trials, signal)
            ids = {label: panel.configs[label].arch_id for label in order.values}
            measured = [label for label, i in ids.items() if i in table.index]
            tau = None
            if len(measured) == len(ids):
                sign = -1.0 if get_metric(signal).maximize else 1.0
                proxy = [sign * float(table.loc[ids[label], "mean"]) for label in order.values]
                paper = [paper_sign * v for v in order.values.values()]
                value = stats.kendalltau(paper, proxy).statistic
                tau = None if math.isnan(value) else float(value)
            out.append(dict(order=order.name, paper_metric=order.metric, signal=signal, models=len(ids),
                            measured=len(measured), tau=tau, source=order.source))
    return out
