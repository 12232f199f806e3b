"""`nas_cli(*args)`: run the real CLI entry point in-process; returns (exit code, stdout, stderr)."""

import pytest

from nas.cli import main


@pytest.fixture
def nas_cli(capsys):
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run
