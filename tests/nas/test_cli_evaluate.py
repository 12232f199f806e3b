"""`nas evaluate`: one real (tiny) trial end to end through the CLI, and bad input -> one line, exit 2."""

import json

import pytest
from PIL import Image

# A tiny but real trial: MobileDiffusion's topology at 8x8 pixels and 1/32 width, a 10-step domain CLIP.
TINY = ["--steps", "6", "--image-size", "8", "--width-divisor", "32", "--train-images", "64", "--batch-size", "8",
        "--samples", "16", "--sample-steps", "2", "--evaluator-steps", "10", "--evaluator-images", "256",
        "--threads", "1"]


@pytest.mark.slow
def test_evaluate_prints_metrics_and_writes_grid_and_record(nas_cli, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = nas_cli("evaluate", "--preset", "mobilediffusion", *TINY, "--cache-dir", tmp_path / "cache",
                              "--out", out, "--json")
    assert code == 0
    record = json.loads(stdout)
    for key in ("fid", "kid", "clip_score", "val_loss"):
        assert isinstance(record[key], float)
    assert {"setup", "train", "val", "val_grid", "sample", "score"} == set(record["seconds"])
    assert record["steps"] == 6 and record["failed"] is False and record["evaluator"]["source"] == "domain"
    with Image.open(record["sample_grid"]) as grid:
        assert grid.format == "PNG"
    assert json.loads((out / "trial.json").read_text())["fid"] == record["fid"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"samples-{record['arch_id']}-seed0.png", "trial.json"])

    code, stdout, _ = nas_cli("evaluate", "--config", out / "trial.json", *TINY, "--cache-dir", tmp_path / "cache",
                              "--out", tmp_path / "text")
    assert code == 2  # a trial record is not an ArchConfig
    code, stdout, _ = nas_cli("evaluate", "--preset", "mobilediffusion", *TINY, "--cache-dir", tmp_path / "cache",
                              "--out", tmp_path / "text")
    assert code == 0
    for label in ("FID", "KID", "CLIP score", "held-out denoising loss", "sample grid:", "time: setup"):
        assert label in stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "budget steps must be a positive integer"),
    (["--seconds", "-1"], "budget seconds must be positive"),
    (["--steps", "5", "--seconds", "3"], "at most one of --budget and --budget-seconds"),
    (["--budget", "5", "--budget-seconds", "3"], "at most one of --budget and --budget-seconds"),
    (["--budget", "0"], "budget steps must be a positive integer"),  # the same flag as nas search's
    (["--diffusion-sampler", "euler"], "budget sampler"),
    (["--samples", "0"], "budget n_samples"),
    (["--prediction", "x0"], "budget prediction"),
    (["--threads", "0"], "--threads must be positive"),
    (["--source", "inception"], "unknown --source"),
    (["--max-memory", "lots"], "--max-memory must be a positive size"),
    (["--max-memory", "1MiB"], "needs about"),
    (["--n-real", "5000"], "the held-out split of synthetic has 2048 images, fewer than --n-real 5000"),
    (["--n-val", "0"], "budget n_val must be a positive integer"),
])
def test_bad_input_is_one_line_exit_2(nas_cli, tmp_path, args, message):
    code, _, stderr = nas_cli("evaluate", "--preset", "mobilediffusion", "--out", tmp_path / "out", *args)
    assert code == 2
    assert stderr.startswith("nas: error:") and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_deprecated_sampler_flag_warns_and_still_applies(nas_cli, tmp_path):
    code, _, stderr = nas_cli("evaluate", "--preset", "mobilediffusion", "--out", tmp_path / "out", "--sampler", "euler")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert "use --diffusion-sampler" in lines[0] and "budget sampler" in lines[1]
    assert not (tmp_path / "out").exists()


def test_needs_exactly_one_architecture(nas_cli):
    code, _, stderr = nas_cli("evaluate", "--steps", "5")
    assert code == 2 and "exactly one of --preset" in stderr


def test_a_config_the_proxy_cannot_halve_names_the_users_levels(nas_cli, tmp_path):
    from search_spaces.presets import get_preset

    config = get_preset("mobilediffusion").to_dict()
    config["levels"], config["latent_size"] = [config["levels"][0]] * 12, 4096  # valid at full scale
    path = tmp_path / "twelve.json"
    path.write_text(json.dumps(config))
    code, _, stderr = nas_cli("evaluate", "--config", path, "--out", tmp_path / "out")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "levels: 12 levels halve the image 11 times, but the proxy image size 16 (--image-size)" in stderr
    assert "latent_size" not in stderr and not (tmp_path / "out").exists()
