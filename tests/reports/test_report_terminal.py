"""What `nas search` prints when its output is not a terminal, and its final table at 80 columns."""

import io
import shutil

from rich.console import Console

from core.run_folder import RunFolder
from reports.terminal import PREPARE_EVERY, PipedProgress, pareto_table, trial_line

STATE = {"done": 5, "total": 8, "complete": 4, "failed": 1, "pareto": 3}


class Clock:
    """A settable monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, highlight=False), out  # a file: not a terminal, as in CI or a pipe


def test_trial_lines():
    row = {"number": 4, "state": "COMPLETE", "arch_id": "bd595794b5e0", "preset": "", "fid": 16.6612,
           "clip_score": 0.32461, "latency_ms": 340.93}
    line = trial_line(row, STATE, ("fid", "clip_score", "latency_ms"), elapsed=245, eta=150)
    assert line == ("trial 4 COMPLETE bd595794b5e0 fid=16.66 clip_score=0.3246 latency_ms=340.9 | 5/8 finished, "
                    "4 ok, 1 failed, Pareto 3 | elapsed 0:04:05, eta 0:02:30")
    failed = {"number": 5, "state": "FAIL", "arch_id": "4a069fddebe0", "preset": "sd15",
              "failure_reason": "RuntimeError: proxy training diverged (NaN loss)\nTraceback ..."}
    line = trial_line(failed, STATE, ("fid",), elapsed=10, eta=None)
    assert "trial 5 FAIL 4a069fddebe0 (sd15) reason: RuntimeError: proxy training diverged (NaN loss) |" in line
    assert "Traceback" not in line and line.endswith("eta ?")
    stopped = {"number": 6, "state": "STOPPED", "arch_id": "4a069fddebe1",
               "failure_reason": "stopped early by the mo-asha scheduler at step 64 of 125"}
    line = trial_line(stopped, dict(STATE, stopped=2), ("fid",), elapsed=10, eta=None)
    assert "reason: stopped early by the mo-asha scheduler" in line and "4 ok, 2 stopped at a rung, 1 failed" in line


def test_one_line_per_finished_trial_from_the_trials_table(finished_run, tmp_path):
    shutil.copytree(finished_run.path, tmp_path / "run")
    run = RunFolder(tmp_path / "run")
    rows = run.read_trials().to_dict("records")
    run.write_trials(rows[:3])  # a resumed run: three trials finished before this driver started
    console, out = _console()
    clock = Clock()
    progress = PipedProgress(console, run.path, ("fid", "latency_ms"), clock=clock)
    assert out.getvalue() == ""
    clock.now += 60
    run.write_trials(rows[:5])  # the search rewrites the table, then calls progress
    progress.trial({"done": 5, "total": 14, "complete": 5, "failed": 0, "pareto": 2})
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["3", "4"]  # only the new trials, in number order
    assert all(len(line) > 80 for line in lines)  # one line each: not wrapped at the console width
    assert lines[-1].endswith("elapsed 0:01:00, eta 0:04:30")  # 30 s per trial, 9 to go
    assert rows[3]["arch_id"] in lines[0] and "fid=" in lines[0] and "latency_ms=" in lines[0]
    progress.trial({"done": 5, "total": 14, "complete": 5, "failed": 0, "pareto": 2})
    assert len(out.getvalue().splitlines()) == 2  # nothing new finished: nothing printed
    given = dict(rows[5], number=99)
    progress.trial({**STATE, "row": given})  # a callback that passes the finished row is printed as given
    assert out.getvalue().splitlines()[-1].startswith(f"trial 99 {given['state']} {given['arch_id']}")


def test_latency_table_lines_are_throttled(tmp_path):
    console, out = _console()
    clock = Clock()
    progress = PipedProgress(console, tmp_path / "new-run", ("fid",), clock=clock)
    progress.prepare(1, 40)
    clock.now += PREPARE_EVERY / 2
    progress.prepare(2, 40)
    clock.now += PREPARE_EVERY
    progress.prepare(30, 40)
    progress.prepare(40, 40)
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["1/40", "30/40", "40/40"]


def test_pareto_table_fits_80_columns_with_full_arch_ids():
    pareto = [{"number": n, "arch_id": f"{n:x}" * 12, "preset": p, "params": 859_520_964.0, "macs": 4.02e11,
               "latency_ms": 1001.3, "fid": 14.3, "kid": 0.0143, "clip_score": 0.3178, "val_loss": 0.17}
              for n, p in ((10, "mobilediffusion"), (11, "sd15"), (12, ""))]
    for n in range(13, 30):
        pareto.append(dict(pareto[2], number=n, arch_id=f"{n:02x}" * 6))
    console, out = _console()
    console.print(pareto_table(pareto, 120, 3))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert all(p["arch_id"] in text for p in pareto) and "mobilediffusion" in text
    assert "859.5M" in text and "14.30" in text and "0.3178" in text and "--json or trials.csv" in text
    cost_only = [{k: v for k, v in p.items() if k not in ("fid", "kid", "clip_score")} for p in pareto]
    console, out = _console()
    console.print(pareto_table(cost_only, 120, 3, n_stopped=7))
    assert "FID" not in out.getvalue() and "CLIP" not in out.getvalue()
    assert "of 120 complete, 7 stopped early, 3 failed" in " ".join(out.getvalue().split())
    # the run's objectives come first: a grid-loss search shows its ranking signal, within 80 columns
    graded = [dict(p, val_loss_grid=0.0925) for p in pareto]
    console, out = _console()
    console.print(pareto_table(graded, 120, 3, ("val_loss_grid", "latency_ms")))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "arch id" in line)
    assert header.index("grid loss") < header.index("latency ms") < header.index("FID")
    assert "0.0925" in text and "MACs, KID, val loss, CLIP: --json or trials.csv" in text


def test_an_unusable_run_dir_is_left_to_the_search(tmp_path):
    console, out = _console()
    progress = PipedProgress(console, tmp_path / ("x" * 300) / "run", ("fid",))  # a name too long to stat
    assert progress.printed == set() and out.getvalue() == ""
