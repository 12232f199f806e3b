"""The search against real infrastructure: SIGKILL + resume, a `ray start` cluster, a PostgreSQL study."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from search_helpers import free_port, ray_start_cluster, tiny_options

from core.run_folder import RunFolder
from nas.search import run_search

TESTS_DIR = Path(__file__).resolve().parents[1]


def _study(run_dir: Path) -> optuna.Study:
    manifest = RunFolder(run_dir).manifest()
    return optuna.load_study(study_name=manifest["study_name"], storage=RunFolder(run_dir).storage_url(manifest))


@pytest.mark.slow
@pytest.mark.ray
def test_sigkill_mid_run_then_resume_counts_exactly(tmp_path, search_env):
    run_dir, n = tmp_path / "run", 3
    script = tmp_path / "drive.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nsys.path.insert(0, %r)\n"
        "from search_helpers import free_port, ray_start_cluster, tiny_options\nfrom nas.search import run_search\n"
        "run_search(tiny_options(Path(sys.argv[1]), trials=int(sys.argv[2]), warm_start=()))\n" % str(TESTS_DIR))
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(n)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.time() + 600
    try:
        while time.time() < deadline:  # kill once one trial finished and the next one is running
            if (run_dir / "study.db").exists() and (run_dir / "manifest.json").exists():
                states = [t.state for t in _study(run_dir).trials]
                if states.count(optuna.trial.TrialState.COMPLETE) >= 1 and optuna.trial.TrialState.RUNNING in states:
                    break
            assert proc.poll() is None, "the search ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.number: t.values for t in _study(run_dir).trials if t.state == optuna.trial.TrialState.COMPLETE}
    running = [t.number for t in _study(run_dir).trials if t.state == optuna.trial.TrialState.RUNNING]
    assert before and running

    result = run_search(tiny_options(run_dir, trials=n, resume=True, warm_start=()))
    study = _study(run_dir)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n == result.n_complete
    for number, values in before.items():  # completed before the kill: kept, not rerun
        assert study.trials[number].values == values
    table = RunFolder(run_dir).read_trials().set_index("number")
    for number in running:  # the trial the kill interrupted is settled as stale, with its reason
        assert table.loc[number, "state"] == "STALE"
        assert "stale" in table.loc[number, "failure_reason"]
    assert (table["state"] == "COMPLETE").sum() == n
    assert len(table.index) == len(set(table.index)) == len(study.trials)


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_a_ray_cluster_started_with_ray_start(tmp_path, search_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with ray_start_cluster() as address:
        run_dir = tmp_path / "run"
        result = run_search(tiny_options(run_dir, trials=4, address=address, warm_start=()))
        assert result.n_complete == 4
        table = RunFolder(run_dir).read_trials()
        assert set(table["ray_gcs"]) == {address}  # every trial ran on that cluster


@pytest.fixture
def postgres():
    """A real PostgreSQL server on loopback, in a throwaway data folder (Debian's postgresql package)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) and root are needed")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    root.chmod(0o755)
    data, port = root / "data", free_port()
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "start", "-l",
                            str(data / "log")], check=True, capture_output=True)
    try:
        subprocess.run(as_pg + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "nas"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/nas"
    finally:
        subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(tmp_path, search_env, postgres):
    run_dir = tmp_path / "run"
    result = run_search(tiny_options(run_dir, trials=4, storage=postgres, workers=2, warm_start=()))
    assert result.n_complete == 4
    study = _study(run_dir)
    assert RunFolder(run_dir).manifest()["storage"] == postgres
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # every trial recorded once
    table = RunFolder(run_dir).read_trials()
    assert list(table["number"]) == [0, 1, 2, 3] and set(table["state"]) == {"COMPLETE"}


def test_unreachable_storage_is_a_user_error(tmp_path, nas_cli):
    code, _, err = nas_cli("search", "--trials", "1", "--run-dir", tmp_path / "run",
                           "--storage", "postgresql+psycopg://u@127.0.0.1:9/x")
    assert code == 2 and "cannot open storage" in err
    assert not (tmp_path / "run").exists()
