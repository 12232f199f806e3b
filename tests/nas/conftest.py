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



@pytest.fixture(scope="session")
def search_env(tmp_path_factory):
    """Private caches for the domain CLIP and LUTs, shared by the search tests of one session."""
    import os

    root = tmp_path_factory.mktemp("search-env")
    old = {k: os.environ.get(k) for k in ("NAS_CACHE_DIR", "NAS_LUT_DIR")}
    os.environ["NAS_CACHE_DIR"], os.environ["NAS_LUT_DIR"] = str(root / "cache"), str(root / "lut")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
