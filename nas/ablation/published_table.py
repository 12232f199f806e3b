"""The published panel's table in words: one line per outcome (the paper's call and numbers, the proxy's calls),
the agreement counts and the published orders' Kendall tau. Shared by the Markdown file and the console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.ablation.published_calls import NEUTRAL_RULE

if TYPE_CHECKING:
    from nas.ablation.published import PublishedPanel
    from nas.ablation.published_study import PublishedResult

PAIRS = (("fid", "FID", ".2f"), ("clip_score", "CLIP", ".3f"), ("params_b", "params", ".2f"))
CHANGES = (("params_change", "params"), ("latency_change", "latency"), ("flops_change", "FLOPs"))


def paper_numbers(call: dict[str, Any]) -> str:
    """The paper's published numbers of one outcome, e.g. "FID 12.50 -> 17.87, CLIP 0.325 -> 0.302"."""
    parts = []
    for key, name, fmt in PAIRS:
        pair = call.get(f"paper_{key}")
        if pair:
            unit = "B" if key == "params_b" else ""
            parts.append(f"{name} {pair[0]:{fmt}}{unit} -> {pair[1]:{fmt}}{unit}")
    for key, name in CHANGES:
        value = call.get(f"paper_{key}")
        if value is not None:
            parts.append(f"{name} {value:+.0%}")
    if call.get("paper_efficiency"):
        parts.append(str(call["paper_efficiency"]))
    return ", ".join(parts) if parts else "no numbers published"


def proxy_cell(call: dict[str, Any], signal: str) -> str:
    """The proxy's call on one signal with its evidence, e.g. "hurts (+0.0071; spread 0.0013)"."""
    verdict = call.get(f"{signal}_call")
    if verdict is None:
        seeds = call.get(f"{signal}_seeds") or 0
        return "not measured" if seeds == 0 else f"{seeds} seed (no call)"
    mark = "" if verdict == call["paper_call"] else " x"
    return f"{verdict}{mark} ({call[f'{signal}_diff']:+.3g}; spread {call[f'{signal}_spread']:.3g})"


def summary_lines(result: PublishedResult) -> list[str]:
    """The agreement count per signal and the Kendall tau of each published order."""
    lines = []
    for a in result.agreement:
        lines.append(f"{a['signal']}: agrees with the paper on {a['agree']} of {a['measured']} outcomes "
                     f"(hurts vs not: {a['harm_agree']} of {a['measured']}; {a['missing']} not measured)")
    for o in result.orders:
        tau = "not measured" if o["tau"] is None else f"{o['tau']:+.2f}"
        lines.append(f"{o['order']} order ({o['models']} models, paper {o['paper_metric']}) vs proxy {o['signal']}: "
                     f"Kendall tau {tau} ({o['measured']} of {o['models']} measured)")
    return lines


def markdown(result: PublishedResult, panel: PublishedPanel) -> str:
    """The published panel's table as Markdown, with the rule, the budget and the agreement counts."""
    prov = result.provenance
    signals = result.signals
    lines = [f"# Published panel: the proxy's calls beside the papers' ({prov.get('budget', '')}, "
             f"{prov.get('seeds', {}).get('short')} seeds)", "",
             f"- published file: {panel.path.name}; {len(panel.rows)} outcomes; trials missing: {result.missing}",
             f"- rule: {NEUTRAL_RULE}; x marks a call that is not the paper's",
             f"- created {prov.get('created')}; device {prov.get('device')}", "",
             "| outcome | vs | paper | paper's numbers | " + " | ".join(f"proxy {s}" for s in signals) + " |",
             "|---|---|---|---|" + "---|" * len(signals)]
    for call in result.calls:
        basis = "" if call.get("call_basis") == "paper" else " (from numbers)"
        lines.append(f"| {call['label']} | {call['base']} | {call['paper_call']}{basis} | {paper_numbers(call)} | "
                     + " | ".join(proxy_cell(call, s) for s in signals) + " |")
    lines += [""] + [f"- {line}" for line in summary_lines(result)]
    if panel.not_expressible:
        lines += ["", "Not expressible in this space: " + "; ".join(
            f"{item.get('label')} ({item.get('reason')})" for item in panel.not_expressible)]
    return "\n".join(lines) + "\n"
