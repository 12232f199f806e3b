"""The `nas` command line. Each command group lives in `nas/commands/<name>.py` with a `register(app)`."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

import typer

from core.errors import RunFailed, UserError
from nas.interrupt import Interrupted

# Command modules, in `nas --help` order. A module registers its commands on the root app.
COMMAND_MODULES = (
    "nas.commands.spaces",
    "nas.commands.cost",
    "nas.commands.search",
    "nas.commands.lut",
    "nas.commands.report",
    "nas.commands.dashboard",
    "nas.commands.export",
    "nas.commands.evaluators",
    "nas.commands.evaluate",
    "nas.commands.ablate",
    "nas.commands.fidelity",
)

app = typer.Typer(
    name="nas", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Hardware-aware architecture search and ablation studies for mobile text-to-image diffusion UNets.",
)
for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def run_guarded(fn: Callable[[], object]) -> None:
    """Run `fn` with the command line's exit contract: a user error is one line on stderr and exit status 2; a
    run that produced nothing (`RunFailed`) one line and 1; an interrupted run one line and 130 (SIGINT) or 143
    (SIGTERM)."""
    try:
        fn()
    except UserError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as exc:  # the input was fine, the run produced nothing: not a success
        print(f"nas: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as exc:  # the run settled what it could and says how to resume
        print(f"nas: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (see `run_guarded`)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_guarded(lambda: app(args=argv, prog_name="nas"))  # standalone: click reports bad flags itself (exit 2)


if __name__ == "__main__":
    main()
