"""Ctrl-C and SIGTERM as an interruption: the first signal asks for a clean stop, a second exits at once."""

from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A run stopped by a signal after settling what it could; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM (the shells' convention)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class SignalGuard:
    """While active (in the main thread), the first SIGINT/SIGTERM is recorded in `received`. In `immediate`
    mode (the default: set-up work with nothing to settle) it also raises `Interrupted` at once; otherwise the
    run is expected to poll `received` and stop gracefully. A second signal prints one line and exits the
    process at once with 128 + its number (`os._exit`: no clean-up runs, so whatever is on disk stays as a
    killed driver leaves it: resumable).

    Args:
        hint: appended to the messages (e.g. how to resume).
    """

    def __init__(self, hint: str = "") -> None:
        self.hint = hint
        self.received: int | None = None
        self.immediate = True
        self.on_first: list = []  # callables run at the first signal (before a stop is asked for)
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
            for hook in self.on_first:
                hook()
            if self.immediate:
                raise Interrupted(signum, f"interrupted by {signal.Signals(signum).name} before any trial "
                                          f"started{self.hint}")
            return
        print(f"nas: {signal.Signals(signum).name} again: exiting now{self.hint}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def install(self) -> None:
        """(Re)install the handlers: libraries that start later (Ray's driver installs its own SIGTERM
        handler in `ray.init`) would otherwise take the signals over."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                previous = signal.signal(sig, self._handle)
                self._previous.setdefault(sig, previous)

    def __enter__(self) -> "SignalGuard":
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
