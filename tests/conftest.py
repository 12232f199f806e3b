"""Shared test set-up: offline hubs, one torch thread per test process, small deterministic seeds; `nas_cli`
(the real CLI entry point in-process: exit code, stdout, stderr) and `search_env` (private evaluator and LUT
caches shared by the search tests of one session)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.hugepages import request  # noqa: E402

request()  # huge pages before torch's first allocation, as the project's packages do (core/hugepages.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest_plugins = ["time_budget"]  # --time-budget SECONDS (tests/time_budget.py)


if os.environ.get("NAS_TEST_TIER") == "fast":  # `make test-fast`: a test that starts Ray is marked `ray`
    import ray  # noqa: E402

    def _refuse_ray(*args, **kwargs):
        raise RuntimeError("this test starts Ray: mark it @pytest.mark.ray (make test-fast runs no Ray)")

    ray.init = _refuse_ray


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (the cores are shared: avoids oversubscription stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def nas_cli(capsys):
    from nas.cli import main

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
