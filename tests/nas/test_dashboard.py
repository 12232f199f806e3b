"""`nas dashboard`: serves the run's Optuna study on loopback (a real optuna-dashboard, fetched over HTTP), and
says what is wrong in one line when it cannot."""

import importlib.util
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from core.run_folder import RunFolder

_spec = importlib.util.spec_from_file_location("report_run_builder", Path(__file__).parents[1] / "reports" / "conftest.py")
_builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builder)

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the environment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _builder.build_run(tmp_path_factory.mktemp("dash") / "run", n_random=3, n_failed=1)


def _get(url: str) -> tuple[int, str, bytes]:
    with NO_PROXY.open(url, timeout=30) as reply:
        return reply.status, reply.headers.get("Content-Type", ""), reply.read()


@pytest.mark.timeout(180)
def test_dashboard_serves_the_study_on_loopback(run):
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "nas.cli", "dashboard", str(run.path),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the port is bound
        assert line.startswith("optuna-dashboard: study 'search' of "), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/studies/1")
        base = url.split("/dashboard", 1)[0]
        status, kind, body = _get(url)
        assert status == 200 and kind.startswith("text/html") and b"<html" in body.lower()
        status, _, body = _get(f"{base}/api/studies")
        studies = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["search"]
        status, _, body = _get(f"{base}/api/studies/1?after=0")
        trials = json.loads(body)["trials"]
        table = run.read_trials()
        assert len(trials) == len(table)
        complete = [t for t in trials if t["state"] == "Complete"]
        assert len(complete) == int((table["state"] == "COMPLETE").sum())
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        try:
            _, err = proc.communicate(timeout=120)  # generous: two test workers share the cores
        except subprocess.TimeoutExpired:  # where it hangs: faulthandler prints every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate()
            pytest.fail(f"the dashboard did not stop within 120 s of Ctrl-C; its stacks: {err[-3000:]}")
    assert proc.returncode == 0 and err == ""


def _one_line(code: int, err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("nas: error: ") and fragment in lines[0], err


def test_missing_extra_says_how_to_install(run):
    blocked = ("import sys; sys.modules['optuna_dashboard'] = None\n"  # as if the extra were not installed
               "from nas.cli import main; main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", blocked, "dashboard", str(run.path)], capture_output=True, text=True,
                          timeout=120)
    _one_line(proc.returncode, proc.stderr, "pip install 'mobile-diffusion-nas[dashboard]'")


def test_run_folders_without_a_study(nas_cli, tmp_path, run):
    RunFolder.create(tmp_path / "ablate", {"kind": "ablation", "name": "a"})
    code, _, err = nas_cli("dashboard", tmp_path / "ablate")
    _one_line(code, err, "a run folder of kind 'ablation' has no Optuna study")
    code, _, err = nas_cli("dashboard", tmp_path / "missing")
    _one_line(code, err, "no such run folder")
    gone = RunFolder.create(tmp_path / "gone", {"name": "g", "storage": f"sqlite:///{tmp_path}/gone/study.db",
                                                "study_name": "search"})
    code, _, err = nas_cli("dashboard", gone.path)
    _one_line(code, err, "does not exist")
    assert not (tmp_path / "gone" / "study.db").exists()  # not created by looking


def test_bad_ports(nas_cli, run):
    import socket

    code, _, err = nas_cli("dashboard", run.path, "--port", "70000")
    _one_line(code, err, "--port must be in 0..65535")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = nas_cli("dashboard", run.path, "--port", str(taken.getsockname()[1]))
    _one_line(code, err, "cannot listen on 127.0.0.1:")
