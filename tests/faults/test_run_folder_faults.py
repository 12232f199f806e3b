"""Faults a run folder must survive, injected for real: concurrent drivers, a dead lock holder, a copied
folder resumed, SIGINT/SIGTERM mid-trial then resume, a corrupt study, bad paths, early failures.

Each test checks the exit status, that stderr is one line without a traceback, and that no completed trial
is lost or duplicated (counts and values against the study)."""

import dataclasses
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from search_helpers import tiny_options, tiny_settings

from core.run_folder import RunFolder
from nas.run_lock import RunLock
from nas.search import run_search

TESTS_DIR = Path(__file__).resolve().parents[1]
DRIVER = """\
import dataclasses
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]  # the repo first: tests/reports must not shadow the reports package
from search_helpers import tiny_options, tiny_settings
from nas.cli import run_guarded
from nas.search import run_search
run_dir, trials, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
settings = tiny_settings(run_dir)
settings = dataclasses.replace(settings, budget=settings.budget.replace(steps=steps))
run_guarded(lambda: run_search(tiny_options(run_dir, trials=trials, warm_start=(), settings=settings)))
"""


def _study(run_dir: Path) -> optuna.Study:
    run = RunFolder(run_dir)
    manifest = run.manifest()
    return optuna.load_study(study_name=manifest["study_name"], storage=run.storage_url(manifest))


def _complete(run_dir: Path) -> dict[int, list[float]]:
    return {t.number: t.values for t in _study(run_dir).trials if t.state == optuna.trial.TrialState.COMPLETE}


def _driver(tmp_path: Path, run_dir: Path, trials: int, steps: int = 8) -> subprocess.Popen:
    script = tmp_path / "drive.py"
    script.write_text(DRIVER.format(root=str(TESTS_DIR.parent), tests=str(TESTS_DIR)))
    return subprocess.Popen([sys.executable, str(script), str(run_dir), str(trials), str(steps)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            start_new_session=True)  # its own process group, as a command started from a shell


GLOG = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [IWE] \d+ \d+\] \w+\.cc:\d+: ")


def _one_line(stderr: str) -> str:
    """The driver's one stderr line: no traceback, and nothing else on stderr but the program's own one-line
    warnings (e.g. a cache rebuilt by an earlier test of the session) and Ray's C++ log lines (glog format;
    in a loopback-only namespace Ray's core worker warns that it cannot reach 8.8.8.8 to find its address)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines()
             if ln.strip() and not ln.startswith("nas: warning:") and not GLOG.match(ln)]
    assert len(lines) == 1, stderr
    return lines[0]


def _wait_running(proc: subprocess.Popen, run_dir: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "study.db").exists() and (run_dir / "manifest.json").exists():
            try:
                states = [t.state for t in _study(run_dir).trials]
            except Exception:  # the study is being created
                states = []
            if optuna.trial.TrialState.RUNNING in states:
                return
        assert proc.poll() is None, f"the driver ended first: {proc.communicate()[1]}"
        time.sleep(0.3)
    pytest.fail("no trial started in time")


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.ray
def test_two_drivers_started_together_one_is_refused(tmp_path, search_env):
    run_dir = tmp_path / "run"
    first, second = _driver(tmp_path, run_dir, 2), _driver(tmp_path, run_dir, 2)
    errs = {}
    for name, proc in (("first", first), ("second", second)):
        errs[name] = (proc.wait(timeout=600), proc.stderr.read())
    codes = sorted(code for code, _ in errs.values())
    assert codes == [0, 2], errs
    refused = next(err for code, err in errs.values() if code == 2)
    assert "in use by another nas driver" in _one_line(refused)
    study = _study(run_dir)
    assert len(_complete(run_dir)) == 2 == len(study.trials)  # nothing trained twice, nothing settled stale
    table = RunFolder(run_dir).read_trials()
    assert list(table["state"]) == ["COMPLETE", "COMPLETE"]


@pytest.mark.slow
@pytest.mark.ray
def test_second_driver_on_a_live_run_is_refused_and_the_first_finishes(tmp_path, search_env):
    run_dir = tmp_path / "run"
    first = _driver(tmp_path, run_dir, 2, steps=60)
    _wait_running(first, run_dir)
    second = _driver(tmp_path, run_dir, 3, steps=60)  # the same search (another budget is refused before the lock)
    code, err = second.wait(timeout=120), second.stderr.read()
    assert code == 2
    line = _one_line(err)
    assert "in use by another nas driver" in line and f"pid {first.pid}" in line
    assert first.wait(timeout=600) == 0, first.stderr.read()
    study = _study(run_dir)
    assert len(_complete(run_dir)) == 2 == len(study.trials)
    assert not any(t.user_attrs.get("stale") for t in study.trials)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r); from nas.run_lock import RunLock; "
        "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)") % str(TESTS_DIR.parent),
        str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        RunLock(run_dir).acquire()
    holder.kill()
    holder.wait()
    lock = RunLock(run_dir).acquire()  # the kernel dropped the dead process's lock
    try:
        assert lock.previous["pid"] == holder.pid  # and the dead holder's record is known
        assert lock.holder()["pid"] == os.getpid()
    finally:
        lock.release()


@pytest.mark.slow
@pytest.mark.ray
def test_a_copied_run_folder_resumes_into_itself(tmp_path, search_env):
    original, copy = tmp_path / "a", tmp_path / "b"
    run_search(tiny_options(original, trials=1, warm_start=(), report=False))
    before = _hashes(original)
    values = _complete(original)
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    result = run_search(tiny_options(copy, trials=2, resume=True, warm_start=(), report=False))
    assert result.n_complete == 2
    assert _hashes(original) == before  # the original is untouched, byte for byte
    assert _complete(original) == values
    copied = _complete(copy)
    assert len(copied) == 2 and copied[min(copied)] == values[min(values)]
    assert RunFolder(copy).storage_url() == f"sqlite:///{(copy / 'study.db').resolve()}"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_trial_interrupts_then_resume_finishes_exactly(tmp_path, search_env, sig, code):
    run_dir, n = tmp_path / "run", 2
    proc = _driver(tmp_path, run_dir, n, steps=60)
    _wait_running(proc, run_dir)
    if sig == signal.SIGINT:  # Ctrl-C in a terminal: the whole foreground process group gets it
        os.killpg(proc.pid, sig)
    else:  # `kill PID`
        proc.send_signal(sig)
    assert proc.wait(timeout=180) == code
    line = _one_line(proc.stderr.read())
    assert f"interrupted by {sig.name}" in line and "--resume" in line
    study = _study(run_dir)
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state == optuna.trial.TrialState.FAIL for t in interrupted)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    table = RunFolder(run_dir).read_trials().set_index("number")
    assert all(table.loc[t.number, "state"] == "INTERRUPTED" for t in interrupted)
    assert RunFolder(run_dir).manifest()["last_stop"]["reason"] == f"interrupted by {sig.name}"
    before = _complete(run_dir)

    settings = tiny_settings(run_dir)  # the driver's settings: a resumed search keeps its budget
    settings = dataclasses.replace(settings, budget=settings.budget.replace(steps=60))
    result = run_search(tiny_options(run_dir, trials=n, resume=True, warm_start=(), report=False, settings=settings))
    after = _complete(run_dir)
    assert result.n_complete == n == len(after)
    assert all(after[k] == v for k, v in before.items())  # nothing lost, nothing rerun
    table = RunFolder(run_dir).read_trials()
    assert (table["state"] == "COMPLETE").sum() == n and table["number"].is_unique


@pytest.mark.slow
@pytest.mark.ray
def test_a_corrupt_study_is_refused_in_one_line_and_the_report_warns(tmp_path, search_env, nas_cli):
    run_dir = tmp_path / "run"
    run_search(tiny_options(run_dir, trials=1, warm_start=(), report=False))
    (run_dir / "study.db").write_bytes(b"\x00garbage" * 100)
    before = _hashes(run_dir)
    proc = _driver(tmp_path, run_dir, 2)
    assert proc.wait(timeout=300) == 2
    assert "cannot open storage" in _one_line(proc.stderr.read())
    assert _hashes(run_dir) == before
    code, out, err = nas_cli("report", run_dir)  # the table still makes a report; the terminal says what is missing
    assert code == 0 and "report:" in out
    assert err.startswith("nas: warning: Optuna study unavailable") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("relative, message", [
    ("x" * 300, "bytes long"),
    ("file", "existing file"),
    ("file/run", "is a file"),
])
def test_bad_run_dir_paths_are_one_line_errors(tmp_path, nas_cli, relative, message):
    (tmp_path / "file").write_text("")
    run_dir = tmp_path / relative
    listing = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = nas_cli("search", "--trials", "1", "--run-dir", run_dir)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing created


def test_a_search_that_fails_before_its_first_trial_leaves_no_folder(tmp_path, search_env):
    run_dir = tmp_path / "run"
    options = tiny_options(run_dir, trials=1, warm_start=())
    options.settings = tiny_settings(run_dir, evaluator_recipe=dict(no_such_field=1))
    with pytest.raises(Exception, match="domain CLIP"):
        run_search(options)
    assert not run_dir.exists()


def test_a_run_folder_that_held_a_run_is_kept_when_resume_fails(tmp_path, search_env):
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / "keep.txt").write_text("user file")
    with pytest.raises(Exception, match="not an empty folder"):
        run_search(tiny_options(run_dir, trials=1, warm_start=()))
    assert (run_dir / "keep.txt").read_text() == "user file"


def test_atomic_writes_respect_the_umask(tmp_path):
    from core.io import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
