"""Evaluator faults injected for real, on real files and processes, through the real CLI in a subprocess:
a corrupt domain-CLIP cache (binary or list sidecar, truncated weights), a corrupt LUT (truncated, garbage,
values edited behind its checksum), architectures too large for the memory (102,400 channels, transformer
depth 50) in `nas evaluate`, `nas lut predict`, `nas export --onnx` and a search, a config the proxy cannot
halve, and a 48-image folder dataset.

Each test checks the exit status, that stderr is exactly one line without a traceback (none for a search that
goes on), and the outcome: rebuilt after the warning, or refused with nothing half-written; for the search, that
the oversized architecture is a FAIL row with its reason and no completed trial is lost or duplicated."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from search_helpers import TINY_BUDGET

from core.run_folder import RunFolder
from evaluators.latency.store import LutStore
from evaluators.memory import training_memory
from evaluators.quality.cache import sha256
from evaluators.training import Budget
from search_spaces.config import ArchConfig, LevelConfig, MidConfig
from search_spaces.presets import get_preset
from search_spaces.proxy import to_proxy

TESTS_DIR = Path(__file__).resolve().parents[1]
# A real trial in seconds: MobileDiffusion's topology at 8x8 pixels and 1/32 width, a 5-step domain CLIP.
EVALUATOR = ["--evaluator-steps", "5", "--evaluator-images", "256", "--image-size", "8"]
TRAINING = ["--steps", "2", "--width-divisor", "32", "--train-images", "16", "--batch-size", "8", "--sample-steps", "1",
            "--threads", "1", *EVALUATOR]
HELDOUT = ["--n-val", "8", "--n-samples", "8", "--n-real", "8"]
TINY_LUT = ArchConfig(levels=(LevelConfig(32, 1, 2, 1, "self_cross"), LevelConfig(64, 1, 2, 1, "cross")),
                      mid=MidConfig(2, 1, "self_cross"), context_len=8, context_dim=32, latent_size=8, norm_groups=8,
                      num_heads=2)
MD = get_preset("mobilediffusion")
WIDE = MD.with_level(0, channels=102_400)
DEEP = MD.with_level(0, transformer_depth=50, attention="self_cross").with_level(
    1, transformer_depth=50, attention="self_cross").with_level(2, transformer_depth=50)


def nas(*args, cache: Path | None = None, lut: Path | None = None) -> subprocess.CompletedProcess:
    """`nas ARGS` in a fresh process (the console entry point, as `python -m nas.cli`)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env |= {"NAS_CACHE_DIR": str(cache)} if cache else {}
    env |= {"NAS_LUT_DIR": str(lut)} if lut else {}
    return subprocess.run([sys.executable, "-m", "nas.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900)


def one_line(stderr: str) -> str:
    """The only line on stderr (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def write_config(path: Path, config: ArchConfig | dict) -> Path:
    path.write_text(config.to_json() if isinstance(config, ArchConfig) else json.dumps(config))
    return path


@pytest.fixture(scope="module")
def domain_cache(tmp_path_factory) -> Path:
    """A cache holding the tiny domain CLIP, trained by a real `nas evaluate` run."""
    root = tmp_path_factory.mktemp("domain")
    done = nas("evaluate", "--preset", "mobilediffusion", *TRAINING, *HELDOUT, "--cache-dir", root / "cache",
               "--out", root / "out")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return root / "cache"


def _cache_copy(domain_cache: Path, tmp_path: Path) -> tuple[Path, Path]:
    cache = shutil.copytree(domain_cache, tmp_path / "cache")
    (weights,) = (cache / "domain_clip").glob("*.safetensors")
    return cache, weights


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("damage, culprit, reason", [
    ("binary_sidecar", "sidecar", "is not readable JSON text"),
    ("list_sidecar", "sidecar", "is not a JSON object with recipe, train and weights_sha256"),
    ("truncated_weights", "weights", "does not match the SHA-256 in its sidecar (truncated or modified)"),
])
def test_corrupt_domain_clip_cache_is_rebuilt_after_one_warning(domain_cache, tmp_path, damage, culprit, reason):
    cache, weights = _cache_copy(domain_cache, tmp_path)
    sidecar = weights.with_suffix(".json")
    if damage == "binary_sidecar":
        sidecar.write_bytes(np.random.default_rng(0).integers(128, 256, 200, dtype=np.uint8).tobytes())
    elif damage == "list_sidecar":
        sidecar.write_text(json.dumps([1, 2, 3]))
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "out"
    done = nas("evaluate", "--preset", "mobilediffusion", *TRAINING, *HELDOUT, "--cache-dir", cache, "--out", out,
               "--json")
    assert done.returncode == 0
    named = sidecar if culprit == "sidecar" else weights
    assert one_line(done.stderr) == f"nas: warning: domain CLIP cache {named} {reason}; retraining it (5 steps)"
    record = json.loads(done.stdout)
    assert record["evaluator"]["trained_now"] and math.isfinite(record["fid"])
    meta = json.loads(sidecar.read_text())  # the rebuilt entry checks out
    assert meta["weights_sha256"] == sha256(weights) == record["evaluator"]["weights_sha256"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"samples-{MD.arch_id}-seed0.png", "trial.json"])
    assert not [p for p in weights.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory) -> Path:
    """A real CPU LUT of a tiny architecture at 64px."""
    root = tmp_path_factory.mktemp("lut")
    done = nas("lut", "build", "--device", "cpu", "--config", write_config(root / "tiny.json", TINY_LUT),
               "--image-size", "64", "--rounds", "1", "--no-calibrate", "--lut-dir", root / "lut")
    assert done.returncode == 0, done.stderr
    return root / "lut" / "cpu.parquet"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("damage, reason", [
    ("truncated", "it is not a readable Parquet file (Parquet magic bytes not found in footer)"),
    ("garbage", "it is not a readable Parquet file (Parquet magic bytes not found in footer)"),
    ("edited", "its entries do not match the checksum stored with them (the file was damaged or edited)"),
])
def test_corrupt_lut_is_refused_in_one_sentence_naming_the_file_and_the_remedy(lut_file, tmp_path, damage, reason):
    lut_dir = tmp_path / "lut"
    path = Path(shutil.copytree(lut_file.parent, lut_dir)) / "cpu.parquet"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))
    else:  # plausible latencies in a valid Parquet file: only the checksum can tell
        table = pq.read_table(path)
        ms = table.column("ms").to_pylist()
        pq.write_table(table.set_column(table.schema.get_field_index("ms"), "ms", [[ms[0] * 2] + ms[1:]]), path)
    before = path.read_bytes()
    config = write_config(tmp_path / "tiny.json", TINY_LUT)
    done = nas("lut", "predict", "--device", "cpu", "--config", config, "--image-size", "64", "--lut-dir", lut_dir)
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"nas: error: LUT file {path} is corrupt: {reason}. Rebuild it with `nas lut build --device cpu --replace` "
        "(or `nas lut import FILE --device cpu --replace` for an imported one), or delete it.")
    assert path.read_bytes() == before  # refused, never rewritten
    if damage == "truncated":  # the remedy the message names works
        done = nas("lut", "build", "--device", "cpu", "--config", config, "--image-size", "64", "--rounds", "1",
                   "--no-calibrate", "--replace", "--lut-dir", lut_dir)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert LutStore(lut_dir).load("cpu").entries


def _twelve_levels() -> dict:
    config = MD.to_dict()
    config["levels"], config["latent_size"] = [config["levels"][0]] * 12, 4096  # valid at full scale
    return config


@pytest.mark.parametrize("config, limit, expected", [
    (WIDE, "4GiB", "more than --max-memory 4.0 GiB; the largest block is up_blocks.2.resnets.1 "
                    "(levels[0].channels 102400)"),
    (DEEP, "4GiB", "more than --max-memory 4.0 GiB; the largest block is down_blocks.0.attentions.0 "
                    "(levels[0].channels 320, levels[0].transformer_depth 50)"),
    (_twelve_levels(), None, "nas: error: levels: 12 levels halve the image 11 times, but the proxy image size 16 "
                             "(--image-size) is not divisible by 2**11; use at most 5 levels or an image size that "
                             "is a multiple of 2048"),
], ids=["102400_channels", "transformer_depth_50", "12_levels"])
def test_evaluate_refuses_what_cannot_be_built_naming_the_users_value(tmp_path, config, limit, expected):
    path = write_config(tmp_path / "arch.json", config)
    out = tmp_path / "out"
    done = nas("evaluate", "--config", path, "--out", out, *(["--max-memory", limit] if limit else []),
               cache=tmp_path / "cache")
    assert done.returncode == 2
    line = one_line(done.stderr)
    if limit:
        assert line.startswith(f"nas: error: training the proxy of arch {config.arch_id} (batch 32) needs about ")
        assert line.endswith(expected)
    else:
        assert line == expected
    assert not out.exists() and not (tmp_path / "cache").exists()  # refused before the domain CLIP or any output


def test_lut_refuses_blocks_too_large_for_the_memory(tmp_path):
    done = nas("lut", "predict", "--device", "cpu", "--config", write_config(tmp_path / "wide.json", WIDE),
               "--image-size", "64", "--lut-dir", tmp_path / "lut")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("nas: error: timing ") and "latency-table block(s) on cpu needs about " in line
    assert line.endswith("the largest block is a resnet block (204800 -> 102400 channels, 8x8)")
    assert not (tmp_path / "lut").exists()


def _build_run(path: Path, extra: tuple[ArchConfig, ...]) -> RunFolder:
    """The run-folder builder the report tests share (real configs, costs and study; synthetic quality)."""
    spec = importlib.util.spec_from_file_location("report_run_builder", TESTS_DIR / "reports" / "conftest.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder.build_run(path, n_random=0, n_failed=0, presets=(), extra=extra)


def test_export_refuses_an_onnx_model_too_large_for_the_memory(tmp_path):
    run = _build_run(tmp_path / "run", (DEEP,))
    out, onnx = tmp_path / "best.json", tmp_path / "best.onnx"
    done = nas("export", run.path, "--pick", "trial:0", "--out", out, "--onnx", onnx, "--max-memory", "4GiB")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"nas: error: exporting arch {DEEP.arch_id} to ONNX needs about ")
    assert line.endswith("more than --max-memory 4.0 GiB; the largest block is down_blocks.2.attentions.0 "
                         "(levels[2].channels 1024, levels[2].transformer_depth 50)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing half-written


def _folder_dataset(root: Path) -> Path:
    """48 good 16x16 images with distinct captions; 4 of them fall in the held-out split."""
    root.mkdir()
    captions = [f"a {c} {s} at the {p}" for c in ("red", "green", "blue", "yellow")
                for s in ("circle", "square", "triangle") for p in ("left", "right", "top", "bottom")]
    rng = np.random.default_rng(0)
    lines = []
    for i, caption in enumerate(captions):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
        lines.append(json.dumps({"file": f"{i:02d}.png", "caption": caption}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
@pytest.mark.ray
def test_a_48_image_folder_dataset_is_evaluated_with_held_out_sizes_that_fit(domain_cache, tmp_path):
    cache, _ = _cache_copy(domain_cache, tmp_path)
    data = ["--data", "folder", "--data-path", _folder_dataset(tmp_path / "data")]
    out = tmp_path / "out"
    done = nas("evaluate", "--preset", "mobilediffusion", *TRAINING, *data, "--cache-dir", cache, "--out", out,
               "--json")
    assert done.returncode == 0
    assert one_line(done.stderr) == (
        f"nas: warning: the held-out split of {tmp_path / 'data' / 'captions.jsonl'} has 4 images, fewer than the "
        "default --n-val 256, --n-samples 256, --n-real 512; using 4")
    record = json.loads(done.stdout)
    assert (record["budget"]["n_val"], record["budget"]["n_samples"], record["budget"]["n_real"]) == (4, 4, 4)
    assert record["data"]["heldout"]["n"] == 4 and record["data"]["train"]["n"] == 16
    assert not record["failed"] and all(math.isfinite(record[k]) for k in ("fid", "kid", "clip_score", "val_loss"))
    assert json.loads((out / "trial.json").read_text())["fid"] == record["fid"]

    done = nas("evaluate", "--preset", "mobilediffusion", *TRAINING, *data, "--n-real", "10", "--cache-dir", cache,
               "--out", tmp_path / "refused")
    assert done.returncode == 2
    assert one_line(done.stderr) == (f"nas: error: the held-out split of {tmp_path / 'data' / 'captions.jsonl'} "
                                     "has 4 images, fewer than --n-real 10")
    assert not (tmp_path / "refused").exists()


SEARCH = """\
import dataclasses
import importlib.util
import sys
from pathlib import Path
from nas.cli import run_guarded
from nas.search import run_search
# by file: tests/ on sys.path would let its reports/ folder shadow the reports package
spec = importlib.util.spec_from_file_location("search_helpers", {helpers!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
run_dir, limit = Path(sys.argv[1]), int(sys.argv[2])
settings = dataclasses.replace(helpers.tiny_settings(run_dir, ("fid", "latency_ms")), max_memory=limit)
run_guarded(lambda: run_search(helpers.tiny_options(run_dir, trials=2, objectives="fid,latency_ms",
                                                    warm_start=("mobilediffusion", "sd15"), settings=settings)))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_search_records_an_architecture_too_large_for_the_memory_as_a_failed_trial(tmp_path, search_env):
    """A memory limit between the two warm starts' estimates: mobilediffusion trains, sd15 is a FAIL row with the
    reason, and the search finishes (a real driver process, real Ray, real trainings)."""
    budget = Budget(**TINY_BUDGET)
    md, sd = (training_memory(c, to_proxy(c, budget.scale), budget.batch_size, budget.sample_batch_size).total
              for c in (MD, get_preset("sd15")))
    assert md < sd
    script = tmp_path / "search.py"
    script.write_text(SEARCH.format(helpers=str(TESTS_DIR / "search_helpers.py")))
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, str(script), str(run_dir), str((md + sd) // 2)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("nas:")], done.stderr
    table = RunFolder(run_dir).read_trials().set_index("number")
    assert list(table.index) == [0, 1] and list(table["state"]) == ["COMPLETE", "FAIL"]  # none lost or twice
    assert list(table["preset"]) == ["mobilediffusion", "sd15"] and math.isfinite(table.loc[0, "fid"])
    reason = table.loc[1, "failure_reason"]
    assert reason.startswith(f"training the proxy of arch {get_preset('sd15').arch_id} (batch 8) needs about ")
    assert "more than --max-memory" in reason and "the largest block is " in reason
    metrics = json.loads((run_dir / "trials" / "0001" / "metrics.json").read_text())
    assert metrics["state"] == "FAIL" and metrics["failure_reason"] == reason and "traceback" not in metrics
