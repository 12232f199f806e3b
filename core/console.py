"""Terminal output shared by commands: rich consoles and JSON printing."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def warn(message: str) -> None:
    """One line on stderr, `nas: warning: ...` (the form of the CLI's `nas: error: ...` lines)."""
    print(f"nas: warning: {message}", file=sys.stderr, flush=True)
