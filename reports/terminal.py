"""What `nas search` prints besides its progress bar: a heartbeat when the output is not a terminal, and the
final Pareto table within 80 columns.

Heartbeat (`PipedProgress`): where a progress bar cannot redraw (CI logs, `nohup`, a pipe, a notebook), one
line per finished trial (number, state, arch id, preset, metrics, counts, elapsed time and ETA) and a line per
latency-table progress step at most every PREPARE_EVERY seconds. The finished trial comes from the progress
callback's `row` when it has one, otherwise from the rows of the run's trials table not printed yet.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.console import err_console
from core.run_folder import RunFolder

FINISHED = ("COMPLETE", "FAIL", "INFEASIBLE", "PRUNED")
PREPARE_EVERY = 30.0  # seconds between latency-table heartbeat lines
SPECS = {"latency_ms": "{:.1f}", "fid": "{:.2f}", "kid": "{:.4f}", "clip_score": "{:.4f}", "val_loss": "{:.4f}",
         "val_loss_grid": "{:.4f}", "cmmd": "{:.3f}"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _value(metric: str, value: float) -> str:
    if metric in ("params", "macs"):
        return f"{value / 1e6:.1f}M" if metric == "params" else f"{value / 1e9:.1f}G"
    return SPECS.get(metric, "{:.4g}").format(value)


def _clock(seconds: float) -> str:
    return str(_dt.timedelta(seconds=int(round(seconds))))


def trial_line(row: dict[str, Any], state: dict[str, Any], metrics: tuple[str, ...], elapsed: float,
               eta: float | None) -> str:
    """One heartbeat line for a finished trial."""
    parts = [f"trial {row.get('number', '?')} {row.get('state', '?')}", str(row.get("arch_id") or "-")]
    if row.get("preset"):
        parts.append(f"({row['preset']})")
    if row.get("state") == "COMPLETE":
        parts += [f"{m}={_value(m, row[m])}" for m in metrics if not _missing(row.get(m))]
    elif row.get("failure_reason"):
        parts.append(f"reason: {str(row['failure_reason']).splitlines()[0][:160]}")
    stopped = f"{state['stopped']} stopped at a rung, " if state.get("stopped") else ""
    counts = (f"| {state.get('done', '?')}/{state.get('total', '?')} finished, {state.get('complete', '?')} ok, "
              f"{stopped}{state.get('failed', '?')} failed, Pareto {state.get('pareto', '?')}")
    timing = f"| elapsed {_clock(elapsed)}, eta {_clock(eta) if eta is not None else '?'}"
    return " ".join(parts + [counts, timing])


class PipedProgress:
    """Heartbeat lines on `console` for the search writing `run_dir`."""

    def __init__(self, console: Console, run_dir: Path, metrics: tuple[str, ...],
                 clock: Callable[[], float] = time.monotonic):
        self.console, self.run, self.metrics, self.clock = console, RunFolder(run_dir), metrics, clock
        self.began = self.trials_began = clock()
        self.finished_here = 0
        self.last_prepare = float("-inf")
        try:  # the trials a resumed run finished before
            self.printed = set(self._finished_rows()["number"]) if self.run.trials_parquet.is_file() else set()
        except OSError:  # an unusable --run-dir: the search rejects it with its own message
            self.printed = set()

    def _finished_rows(self) -> pd.DataFrame:
        table = self.run.read_trials()
        return table[table["state"].isin(FINISHED)] if len(table) else table

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def prepare(self, done: int, total: int) -> None:
        """A latency-table line at most every PREPARE_EVERY seconds, and when the last block is measured."""
        now = self.clock()
        self.trials_began = now
        if done >= total or now - self.last_prepare >= PREPARE_EVERY:
            self.last_prepare = now
            self._print(f"latency table: {done}/{total} warm-start blocks measured | elapsed {_clock(now - self.began)}")

    def trial(self, state: dict[str, Any]) -> None:
        """Lines for the trials that finished since the last call."""
        rows = [state["row"]] if state.get("row") else [
            r for r in self._finished_rows().sort_values("number").to_dict("records") if r["number"] not in self.printed]
        for row in rows:
            self.printed.add(row.get("number"))
            self.finished_here += 1
            now = self.clock()
            remaining = max(0, int(state.get("total", 0)) - int(state.get("done", 0)))
            eta = (now - self.trials_began) / self.finished_here * remaining
            self._print(trial_line(row, state, self.metrics, now - self.began, eta))


def pareto_table(pareto: list[dict[str, Any]], n_complete: int, n_failed: int,
                 objectives: tuple[str, ...] = (), n_stopped: int = 0) -> Table:
    """The final Pareto table: full arch ids, and no wider than 80 columns. The run's objectives come first,
    then latency, FID and CLIP score, up to three metric columns (the rest are in the JSON summary and the trials
    table); a metric column only when a row has a value."""
    titles = {"latency_ms": "latency ms", "fid": "FID", "clip_score": "CLIP", "val_loss_grid": "grid loss",
              "val_loss": "val loss", "kid": "KID", "cmmd": "CMMD", "macs": "MACs"}
    measured = {k for k in titles.keys() | set(objectives) if any(not _missing(p.get(k)) for p in pareto)}
    wanted = [k for k in dict.fromkeys((*objectives, "latency_ms", "fid", "clip_score")) if k != "params"]
    shown = [(k, titles.get(k, k)) for k in wanted if k in measured][:3]
    rest = [titles[k] for k in ("macs", "kid", "val_loss", "val_loss_grid", "cmmd", "fid", "clip_score")
            if k in measured and k not in dict(shown)]
    stopped = f"{n_stopped} stopped early, " if n_stopped else ""
    table = Table(title=f"Pareto set ({len(pareto)} of {n_complete} complete, {stopped}{n_failed} failed)",
                  box=box.SIMPLE_HEAD,
                  caption=f"{', '.join(rest)}: --json or trials.csv" if rest else None, padding=(0, 1),
                  pad_edge=False, show_edge=False)
    table.add_column("trial", justify="right")
    table.add_column("arch id", no_wrap=True, min_width=12)
    table.add_column("preset", overflow="fold")
    table.add_column("params", justify="right")
    for _, title in shown:
        table.add_column(title, justify="right")
    for p in pareto:
        params = "-" if _missing(p.get("params")) else _value("params", p["params"])
        values = ["-" if _missing(p.get(k)) else _value(k, p[k]) for k, _ in shown]
        table.add_row(str(p["number"]), str(p.get("arch_id") or "-"), str(p.get("preset") or ""), params, *values)
    return table


@contextlib.contextmanager
def teacher_progress(label: str) -> Iterator[Callable[[int, int, float], None]]:
    """A progress bar on stderr for a teacher's training (shown only if it trains, on a terminal)."""
    with Progress(TextColumn(f"training teacher {label} (first use; cached)"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bar:
        task = None

        def update(done: int, total: int, loss: float) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("teacher", total=total, loss=loss)
            bar.update(task, completed=done, total=total, loss=loss)

        yield update
