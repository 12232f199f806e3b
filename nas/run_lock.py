"""One driver per run folder: an exclusive lock on `<run>/.driver.lock`, its holder in `<run>/.driver.json`.

The lock is filelock's `FileLock` (an OS lock, `flock` on Linux): the kernel drops it when the holding
process dies, however it dies, so a lock left by a dead driver is taken over by the next one without any
guess about pids. The holder file only names the holder for the refusal message and for the record; it is
never trusted to decide whether the lock is free. A run folder on a network filesystem that does not
support `flock` cannot be locked this way; runs that share an external database (`--storage`) are
coordinated through the database's trial heartbeats instead and do not take this lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core.errors import UserError
from core.io import write_json

LOCK_FILE = ".driver.lock"
HOLDER_FILE = ".driver.json"


class RunInUseError(UserError):
    """Another live driver holds the run folder."""


def driver_id() -> str:
    """This process as a driver: host, pid and start time (unique across restarts of a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(_START)}"


_START = time.time()


class RunLock:
    """The exclusive lock of one run folder (a context manager; reentrant in one process only by nesting)."""

    def __init__(self, run_path: str | Path) -> None:
        self.path = Path(run_path)
        self._lock = FileLock(str(self.path / LOCK_FILE))
        self.previous: dict[str, Any] | None = None  # the holder record a dead driver left, if any

    def holder(self) -> dict[str, Any] | None:
        """The last holder's record, or None when there is none or it is unreadable."""
        try:
            data = json.loads((self.path / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> "RunLock":
        """Take the lock without waiting.

        Raises:
            RunInUseError: a live driver holds it (the message names its host, pid and start time).
        """
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            h = self.holder() or {}
            who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started {h.get('started', '?')}"
            raise RunInUseError(f"{self.path} is in use by another nas driver ({who}); wait for it to finish "
                                "or stop it first") from None
        self.previous = self.holder()
        write_json(self.path / HOLDER_FILE, dict(host=socket.gethostname(), pid=os.getpid(), driver=driver_id(),
                                                 started=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
        return self

    def release(self) -> None:
        """Drop the lock (the holder record goes with it)."""
        if self._lock.is_locked:
            (self.path / HOLDER_FILE).unlink(missing_ok=True)
            self._lock.release(force=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
