"""Run folders built from real parts, for the report and export tests (reusable by the search tests).

`build_run(path, ...)` writes what `nas search` leaves behind, through the run-folder API:
- configs: real samples of `unet_mobile` (Optuna RandomSampler by seed) plus real presets as warm starts;
- params / MACs: `evaluators.cost.analytic_cost`; latency and per-block breakdown: the real roofline
  predictor of a phone profile (an ESTIMATE, labelled so in the manifest);
- a real Optuna study in SQLite inside the folder, one trial per table row with the same number, params
  from `space.params_of(config)` and the objective values in manifest order;
- sample grids: real PNGs from the trial's own grid writer; trial records: the real record writer.

QUALITY NUMBERS ARE NOT MEASURED. `fid`, `kid`, `clip_score` and `val_loss` come from `synthetic_quality`,
a cheap deterministic function of the config (bigger, more attention -> better), so that fronts have a
realistic shape. They are never presented as measured FIDs: the manifest's evaluator says so.

`build_ablation_run` and `build_fidelity_run` do the same for `nas ablate` and `nas fidelity` folders: the
real plans (`plan_rows`, `StudyPlan`), aggregation with seed intervals and the real table writers
(`aggregate` + `write_tables`, `write_study`), over synthetic per-seed quality (`synthetic_quality` plus a
fixed per-seed offset) and roofline latencies.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

import optuna
import pytest
import torch

from core.metrics import METRIC_DIRECTIONS, names
from core.run_folder import RunFolder
from evaluators.cost import analytic_cost
from evaluators.latency import get_predictor
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset
from search_spaces.space import get_space

SPACE = "unet_mobile"
CAPTIONS = ("a red circle top left", "two blue squares", "a small <b>green</b> triangle & friends",
            "a large yellow circle")


def synthetic_quality(config: ArchConfig, macs: int) -> dict[str, float]:
    """Stand-in quality metrics (NOT measured): a smooth function of compute and transformer count."""
    transformers = sum(lv.transformer_depth * (lv.down_res + lv.up_res) for lv in config.levels)
    transformers += config.mid.transformer_depth * max(config.mid.num_res - 1, 0)
    capacity = macs / 4e10 + 0.2 * transformers
    fid = 11.0 + 30.0 * math.exp(-capacity / 6.0) + (1.5 if config.attn_activation == "relu" else 0.0)
    clip = 0.33 - 0.09 * math.exp(-transformers / 8.0) - 0.002 * (4 - config.ff_mult)
    return {"fid": round(fid, 4), "kid": round(fid / 1000.0, 6), "clip_score": round(clip, 5),
            "val_loss": round(0.1 + fid / 200.0, 5)}


def draw_grid(path: Path, config: ArchConfig, captions: Sequence[str]) -> None:
    """The sample grid a trial writes (`evaluators.training.grid.write_grid`, the real writer) over four
    synthetic 32px images whose colours come from the arch id, each labelled with its caption."""
    from evaluators.training.grid import write_grid

    seed = int(config.arch_id[:6], 16)
    images = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32).repeat(4, 1, 1, 1)
    for k in range(4):
        images[k] = (images[k] * ((seed >> (3 * k)) % 7 + 1) / 7).clamp(-1, 1)
    write_grid(images, list(captions[:4]), path, tile=64, title=f"arch {config.arch_id}")


def _distributions(space, params: dict) -> dict:
    dims = {d.name: d for d in space.dimensions()}
    return {name: optuna.distributions.CategoricalDistribution(dims[name].choices) for name in params}


def build_run(path: Path, n_random: int = 10, n_failed: int = 2, presets: Sequence[str] = ("sd15", "mobilediffusion"),
              objectives: Sequence[str] = ("fid", "clip_score", "latency_ms"), seed: int = 0,
              device: str = "iphone15pro", name: str = "demo <run> & co",
              extra: Sequence[ArchConfig] = ()) -> RunFolder:
    """A finished run folder at `path` (see the module docstring for what is real and what is not).

    `extra` configs outside the space (e.g. small ones for fast ONNX tests) are added last as complete
    trials without design parameters.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(SPACE)
    predictor = get_predictor(device)
    run = RunFolder(path)
    study_name = "search"
    storage = run.default_storage()
    directions = [METRIC_DIRECTIONS[o] for o in objectives]
    path.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=study_name, storage=storage, directions=directions)
    arch = [(name, get_preset(name)) for name in presets]
    sampled = space.sample_random(n_random + n_failed, seed) if n_random + n_failed else []
    arch += [("", c) for c in sampled[n_failed:]] + [("", c) for c in extra] + [("", c) for c in sampled[:n_failed]]
    rows = []
    for number, (preset, config) in enumerate(arch):
        params = space.params_of(config) if space.contains(config) else {}
        p_cols = {f"p_{k}": (str(v) if isinstance(v, bool) else v) for k, v in params.items()}
        failed = number >= len(arch) - n_failed
        row = {"number": number, "arch_id": config.arch_id, "preset": preset, "cached": False,
               "config_json": config.to_json(indent=None), **p_cols}
        if failed:
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                                      distributions=_distributions(space, params)))
            rows.append(row | {"state": "FAIL", "failure_reason": "RuntimeError: proxy training diverged (NaN loss)",
                               "sample_grid": ""})
            continue
        cost = analytic_cost(config)
        prediction = predictor.predict(config)
        metrics = {"params": cost.params, "macs": cost.macs, "macs_no_attention": cost.macs_no_attention,
                   "latency_ms": prediction.latency_ms, **synthetic_quality(config, cost.macs)}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=_distributions(space, params), values=[metrics[o] for o in objectives]))
        grid = f"trials/{number:04d}/samples.png"
        draw_grid(path / grid, config, CAPTIONS)
        row |= metrics | {"state": "COMPLETE", "failure_reason": "", "sample_grid": grid, "seconds_train": 1.0,
                          "seconds_sample": 0.5, "seconds_score": 0.2, "seconds_latency": 0.01, "seconds_total": 1.71}
        blocks = [{"path": b.path, "key": b.key, "ms": b.ms} for b in prediction.blocks]
        row["sample_captions"] = list(CAPTIONS)
        run.write_trial_record(row | {"latency_blocks": blocks})  # the real record writer
        rows.append(row)
    run.write_trials(rows)
    manifest = {
        "name": name, "command": f"nas search --space {SPACE} --run-dir {path}", "space": SPACE,
        "objectives": [{"name": o, "direction": METRIC_DIRECTIONS[o]} for o in objectives],
        "sampler": "nsga2", "seed": seed, "n_trials": len(arch),
        "constraints": {"latency_budget_ms": None, "max_params": None},
        "storage": storage, "study_name": study_name,
        "latency": {"device": device, "image_size": 512, "fingerprint": f"roofline:{device}", "estimate": True},
        "evaluator": {"source": "domain", "note": "test fixture: quality values are synthetic, not measured"},
        "budget": {"train_steps": 400},
        "provenance": {"versions": {"optuna": optuna.__version__}, "cpu": "test cpu", "created": "2026-11-27T10:00:00+00:00"},
    }
    RunFolder.create(path, manifest)
    return run


SEED_OFFSET = (-0.25, 0.25, 0.0, 0.1)  # synthetic FID offset of seeds 0, 1, 2, 3 (the seed spread of the fixtures)


def _seeded(config: ArchConfig, seed: int, steps: int = 400) -> dict[str, float]:
    """Synthetic quality of one seed (and training budget: more steps, lower FID); NOT measured."""
    macs = analytic_cost(config).macs
    q = synthetic_quality(config, macs)
    fid = q["fid"] * (400 / steps) ** 0.1 + SEED_OFFSET[seed % len(SEED_OFFSET)]
    return q | {"fid": round(fid, 4), "kid": round(fid / 1000.0, 6), "cmmd": round(fid / 40.0, 5),
                "clip_score": round(q["clip_score"] + SEED_OFFSET[seed % len(SEED_OFFSET)] / 200, 5),
                "val_loss": round(q["val_loss"] + SEED_OFFSET[seed % len(SEED_OFFSET)] / 100, 5),
                "val_loss_grid": round(q["val_loss"] + SEED_OFFSET[seed % len(SEED_OFFSET)] / 120, 5),
                "teacher_distance": round(q["val_loss"] / 10 + SEED_OFFSET[seed % len(SEED_OFFSET)] / 1000, 6)}


def _trial_row(run: RunFolder, number: int, label: str, config: ArchConfig, seed: int, extra: dict) -> dict:
    grid = f"trials/{number:04d}/samples.png"
    draw_grid(run.path / grid, config, CAPTIONS)
    cost = analytic_cost(config)
    row = {"number": number, "state": "COMPLETE", "arch_id": config.arch_id, "preset": label, "seed": seed,
           "params": cost.params, "macs": cost.macs, "sample_grid": grid, "failure_reason": None,
           "sample_captions": list(CAPTIONS[:4]), "config_json": config.to_json(indent=None)} | extra
    return run.write_trial_record(row).row()  # the real record writer


def build_ablation_run(path: Path, steps: Sequence[str] = ("share_kv", "relu_attention", "swish_glu"),
                       seeds: int = 3, mode: str = "both", baseline: str = "sd15") -> RunFolder:
    """A finished `nas ablate` run folder (see the module docstring for what is real and what is not)."""
    from nas.ablation import get_step, plan_rows
    from nas.ablation.study import (
        AblationSpec,
        aggregate,
        open_run,
        unique_jobs,
        write_tables,
    )

    devices = ("iphone15pro", "pixel8")
    rows = tuple(plan_rows(baseline, get_preset(baseline), [get_step(s) for s in steps], mode))
    spec = AblationSpec(space=SPACE, baseline=baseline, rows=rows, seeds=seeds, latency_devices=devices,
                        command=["nas", "ablate", "--baseline", baseline, "--steps", ",".join(steps)])
    budget = {"steps": 400, "batch_size": 8}
    manifest = dict(command=spec.command, space=SPACE, baseline=baseline, seeds=seeds, confidence=spec.confidence,
                    steps=[[r.mode, r.step] for r in rows], budget=budget, latency_devices=list(devices),
                    image_size=512, metrics=["latency_ms", *names("quality")], device="cpu",
                    provenance={"versions": {"optuna": optuna.__version__}, "created": "2026-11-27T10:00:00+00:00"})
    run, _ = open_run(path, "ablation", manifest)
    jobs = unique_jobs([(r.step, r.config) for r in rows], seeds)
    trial_rows = {}
    for job in jobs:
        trial_rows[(job.config.arch_id, job.seed)] = _trial_row(run, job.number, job.label, job.config, job.seed,
                                                                _seeded(job.config, job.seed))
    run.write_trials(list(trial_rows.values()))
    predictors = {d: get_predictor(d) for d in devices}
    latencies = {(r.config.arch_id, d): predictors[d].predict(r.config).latency_ms for r in rows for d in devices}
    prov = {"budget": budget, "evaluator": {"note": "test fixture: synthetic quality"}, "image_size": 512,
            "device": "cpu", "versions": {"optuna": optuna.__version__}, "created": "2026-11-27T10:00:00+00:00"}
    write_tables(run, spec, aggregate(spec, trial_rows, latencies), prov)
    return run


def build_fidelity_run(path: Path, n_random: int = 2, seeds: int = 2, short: int = 400,
                       reference: int = 1600) -> RunFolder:
    """A finished `nas fidelity` run folder: the real plan and table writer (`StudyPlan`, `write_study`) over
    synthetic per-seed quality of the presets and `n_random` sampled designs."""
    from evaluators.training import Budget
    from nas.ablation.fidelity import StudyPlan, write_study
    from nas.ablation.study import open_run
    from nas.trial_runner import QUALITY_KEYS, TrialSettings

    panel = [(n, get_preset(n)) for n in ("sd15", "mobilediffusion", "bk_sdm_tiny")]
    panel += [(f"sample_{c.arch_id[:6]}", c) for c in get_space(SPACE).sample_random(n_random, 0)]
    settings = {name: TrialSettings(run_dir=str(path), metrics=QUALITY_KEYS, budget=Budget(steps=steps))
                for name, steps in (("short", short), ("reference", reference))}
    plan = StudyPlan("random", panel, settings["short"], settings["reference"], seeds, seeds)
    budgets = {name: s.budget.to_dict() for name, s in settings.items()}
    manifest = dict(command=["nas", "fidelity", "--panel", "random"], panel="random", archs=[n for n, _ in panel],
                    seeds=dict(short=seeds, reference=seeds), budgets=budgets, metrics=list(QUALITY_KEYS),
                    device="cpu", provenance={"versions": {"optuna": optuna.__version__},
                                              "created": "2026-11-27T10:00:00+00:00"})
    run, _ = open_run(path, "fidelity", manifest, same=("budgets",))
    jobs = plan.jobs()
    rows = {name: [_trial_row(run, job.number, job.label, job.config, job.seed,
                              _seeded(job.config, job.seed, settings[name].budget.steps) | {"seconds_train": 1.0})
                   for job in jobs[name]] for name in settings}
    write_study(run.path, plan, jobs, rows, {name: {"model_id": "test-fixture"} for name in settings}, 0.95)
    return run


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> RunFolder:
    """One finished 3-objective run (2 presets, 10 random designs, 2 failed), shared read-only by tests."""
    return build_run(tmp_path_factory.mktemp("runs") / "demo")


@pytest.fixture(scope="session")
def large_run(tmp_path_factory) -> RunFolder:
    """A 3-objective run above the importance threshold: 2 presets + 43 random designs (45 complete)."""
    return build_run(tmp_path_factory.mktemp("runs") / "large", n_random=43, n_failed=1, seed=5)


@pytest.fixture(scope="session")
def ablation_run(tmp_path_factory) -> RunFolder:
    """A finished 3-seed ablation run (cumulative and leave-one-out) from sd15."""
    return build_ablation_run(tmp_path_factory.mktemp("runs") / "ablate")


@pytest.fixture(scope="session")
def fidelity_run(tmp_path_factory) -> RunFolder:
    """A finished 2-seed fidelity run: 5 architectures at 400 (short) and 1600 (reference) steps."""
    return build_fidelity_run(tmp_path_factory.mktemp("runs") / "fidelity")


@pytest.fixture(scope="session")
def two_objective_run(tmp_path_factory) -> RunFolder:
    """A 2-objective run (FID, latency) without presets."""
    return build_run(tmp_path_factory.mktemp("runs") / "two", n_random=6, n_failed=0, presets=(),
                     objectives=("fid", "latency_ms"), seed=3)


# ---------------------------------------------------------------------------------------------- headless browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900",
    # WebGL (3-D scatter, parallel coordinates) through the software rasteriser, as on a machine without a GPU
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
)


def _high_fd(fd: int) -> int:
    """Move `fd` to a number >= 10 so that the shell's `3<&N 4>&M` cannot clobber it."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class DevTools:
    """A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (fds 3 and 4, NUL-framed JSON).

    No websocket library is needed and no port is opened. Every event is kept in `events`.
    """

    def __init__(self, profile_dir: Path):
        profile_dir.mkdir(parents=True, exist_ok=True)
        self.log = profile_dir / "chromium-stderr.log"  # browser noise (dbus) goes here, not into a pipe
        to_browser_r, self._to_browser = map(_high_fd, os.pipe())
        self._from_browser, from_browser_w = map(_high_fd, os.pipe())
        # bash (dash has no fds > 9) moves our pipe ends to the fds 3 and 4 the browser expects, then becomes the browser
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, CHROMIUM, *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile_dir}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.events: list[dict] = []
        self._replies: "queue.Queue[dict]" = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                (self._replies.put if "id" in msg else self.events.append)(msg)

    def call(self, method: str, session: str | None = None, timeout: float = 30.0, **params) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._replies.get(timeout=max(0.01, deadline - time.monotonic()))
            if reply["id"] == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"no {method} event within {timeout} s")

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and error-level log entries seen so far."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url', '')})")
        return out

    def webgl_contexts_lost(self) -> int:
        """How often the browser dropped its oldest WebGL context (a figure silently blank) for a newer one."""
        return sum(e.get("method") == "Log.entryAdded" and "Too many active WebGL contexts" in
                   e["params"]["entry"].get("text", "") for e in self.events)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, queue.Empty, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)


@pytest.fixture
def devtools(tmp_path):
    """A headless Chromium driven over the DevTools pipe (skips when no chromium binary is installed)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); the browser test needs it")
    browser = DevTools(tmp_path / "chromium-profile")
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def run_builder():
    """`build_run` itself, for tests that need a run folder of their own shape."""
    return build_run


@pytest.fixture(scope="session")
def ablation_builder():
    """`build_ablation_run` itself, for tests that need an ablation run folder of their own shape."""
    return build_ablation_run


COUNT_JS = """(() => {
  const plots = [...document.querySelectorAll('div.js-plotly-plot')];
  return JSON.stringify({
    plots: plots.length,
    rendered: plots.filter(p => p._fullLayout && p.querySelector('.plot-container svg.main-svg')).length,
    ids: plots.filter(p => p._fullLayout && p.querySelector('.plot-container svg.main-svg')).map(p => p.id),
    webgl_canvases: document.querySelectorAll('canvas').length,
    no_webgl: document.body.innerText.includes('WebGL is not supported'),
    images: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
    knee_rows: document.querySelectorAll('#pareto-table tr.knee').length,
    injected: document.querySelectorAll('b').length,
    text: document.body.innerText,
    title: document.title,
  });
})()"""


@pytest.fixture
def load_page(devtools):
    """`load_page(path, n_figures)`: open a file in the headless browser, wait until `n_figures` Plotly figures
    have drawn (or `timeout`), and return the page state (COUNT_JS) with a full-page PNG screenshot."""
    def load(page: Path, n_figures: int, timeout: float = 90.0) -> dict:
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            devtools.call(f"{domain}.enable", session=session)
        devtools.call("Page.navigate", session=session, url=page.resolve().as_uri())
        devtools.wait_event("Page.loadEventFired", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            state = json.loads(devtools.call("Runtime.evaluate", session=session, expression=COUNT_JS,
                                             returnByValue=True)["result"]["value"])
            if state["rendered"] >= n_figures or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        metrics = devtools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = devtools.call("Page.captureScreenshot", session=session, format="png", captureBeyondViewport=True,
                             clip=dict(x=0, y=0, width=metrics["width"], height=metrics["height"], scale=1))
        state["screenshot"] = base64.b64decode(shot["data"])
        return state

    return load
