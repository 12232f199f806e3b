"""A Ray Tune callback that reports finished trials to a driver-side `progress(done, total)`.

Its own module because it imports Ray at import time; commands import it only when they start trials.
"""

from __future__ import annotations

from typing import Callable

from ray import tune


class ProgressCallback(tune.Callback):
    """Counts finished trials. Tune pickles its callbacks with the experiment state, so the hook (which may
    hold an unpicklable rich progress bar) is dropped from pickled copies."""

    def __init__(self, progress: Callable[[int, int], None] | None, done: int, total: int):
        self.progress, self.done, self.total = progress, done, total

    def __getstate__(self) -> dict:
        return {"progress": None, "done": self.done, "total": self.total}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)
