"""Tiny but real search settings shared by the search, ablation and report tests (importable: tests/ is on
pytest's pythonpath)."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TINY_BUDGET = dict(steps=8, batch_size=8, n_train=64, n_val=16, n_samples=16, n_real=32, sample_steps=2,
                   sample_batch_size=16, grid_images=4, warmup_steps=2, report_every=4)
TINY_RECIPE = dict(steps=20, n_train=256, batch_size=32)  # a domain CLIP that trains in seconds


def tiny_settings(run_dir, metrics=("fid", "clip_score", "latency_ms"), **changes):
    """Real trials, small enough for tests: an 8-step proxy training, a tiny domain CLIP, and phone-roofline
    latency (instant; measured CPU latency has its own tests)."""
    from evaluators.training import Budget
    from nas.trial_runner import TrialSettings

    base = dict(run_dir=str(run_dir), metrics=tuple(metrics), budget=Budget(**TINY_BUDGET),
                latency_device="iphone15pro", image_size=512, threads=1, evaluator_recipe=dict(TINY_RECIPE))
    return TrialSettings(**(base | changes))


def tiny_options(run_dir, trials=3, objectives="fid,clip_score,latency_ms", **changes):
    from core.objectives import parse_objectives
    from nas.search import SearchOptions

    objs = parse_objectives(objectives)
    settings = changes.pop("settings", None) or tiny_settings(run_dir, tuple(o.name for o in objs))
    return SearchOptions(run_dir=run_dir, objectives=objs, trials=trials, settings=settings, cpus_per_trial=1,
                         command=["pytest"], **changes)


def free_port() -> int:
    """A loopback port free now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_start_cluster(num_cpus: int = 2):
    """A Ray cluster started with `ray start --head` on loopback, as a user would start one; yields its address.

    It runs in its own temp folder (short: Ray's socket paths must fit in 107 bytes) and stopping it kills only
    its own processes: `ray stop` would kill every Ray on the machine, a parallel test worker's included. Token
    authentication (Ray 2.5x): the cluster and this driver share the default token file (~/.ray/auth_token; the
    caller sets RAY_AUTH_MODE=token, since Ray caches the token per process)."""
    import psutil

    bin_dir, port = Path(sys.executable).parent, free_port()
    subprocess.run([str(bin_dir / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True)
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    subprocess.run([str(bin_dir / "ray"), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, env=dict(os.environ))

    def ours(proc) -> bool:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            return False
        return temp in cmd or f"127.0.0.1:{port}" in cmd or f"--gcs_server_port={port}" in cmd

    try:
        yield f"127.0.0.1:{port}"
    finally:
        procs = [p for p in psutil.process_iter() if p.pid != os.getpid() and ours(p)]
        for p in procs:
            p.kill()
        psutil.wait_procs(procs, timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
