"""`nas report` and `nas export` through the real CLI entry point: outputs, round trips and bad input."""

import importlib.util
import json
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from core.run_folder import RunFolder
from nas.arch_input import load_config_file
from search_spaces.config import ArchConfig, LevelConfig, MidConfig

_spec = importlib.util.spec_from_file_location("report_run_builder", Path(__file__).parents[1] / "reports" / "conftest.py")
_builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builder)
build_run = _builder.build_run  # the shared run-folder builder (real configs, costs, study; synthetic quality)

# full-scale-shaped but small: 2 levels, 16x16 latents, 8x32 text, so ONNX export takes about a second
SMALL = ArchConfig(levels=(LevelConfig(32, 1, 2, 1, "self_cross"), LevelConfig(64, 1, 2, 1, "cross")),
                   mid=MidConfig(2, 1, "self_cross"), context_len=8, context_dim=32, latent_size=16,
                   norm_groups=8, num_heads=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("cli") / "run", n_random=6, n_failed=1, extra=(SMALL,))


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_report_writes_html(nas_cli, run, tmp_path):
    code, out, err = nas_cli("report", run.path, "--out", tmp_path / "r.html")
    assert code == 0, err
    assert "r.html" in out and "knee: trial" in out
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_report_of_ablation_and_fidelity_run_folders(nas_cli, tmp_path):
    ablation = _builder.build_ablation_run(tmp_path / "ablate", steps=("relu_attention",), mode="cumulative")
    code, out, err = nas_cli("report", ablation.path)
    assert code == 0, err
    assert "ablation: 2 rows in 1 tables" in out and ablation.report_path.read_text().startswith("<!DOCTYPE html>")
    fidelity = _builder.build_fidelity_run(tmp_path / "fidelity", n_random=0)
    code, out, err = nas_cli("report", fidelity.path, "--out", tmp_path / "f.html")
    assert code == 0, err
    assert "fidelity: 3 architectures" in out and "Kendall tau" in (tmp_path / "f.html").read_text()
    code, _, err = nas_cli("export", ablation.path, "--pick", "knee", "--out", tmp_path / "x.json")
    _one_line_error(code, err, "a run folder of kind 'ablation' has no searched architectures")
    assert not (tmp_path / "x.json").exists()


def test_export_knee_round_trips_through_nas_cost(nas_cli, run, tmp_path):
    out = tmp_path / "best.json"
    code, stdout, err = nas_cli("export", run.path, "--pick", "knee", "--out", out, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc == json.loads(out.read_text())
    config = load_config_file(out)
    table = run.read_trials().set_index("number")
    assert config.arch_id == doc["arch_id"] == table.loc[doc["trial"], "arch_id"]
    assert doc["metrics"]["latency_ms"] == pytest.approx(table.loc[doc["trial"], "latency_ms"])
    assert doc["run"]["space"] == "unet_mobile" and doc["provenance"]["versions"]["torch"]
    code, stdout, err = nas_cli("cost", "--config", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["arch_id"] == config.arch_id


def test_export_picks_under_a_budget(nas_cli, run, tmp_path):
    table = run.read_trials()
    done = table[table["state"] == "COMPLETE"]
    budget = float(done["latency_ms"].median())
    out = tmp_path / "fast.json"
    code, _, err = nas_cli("export", run.path, "--pick", "min-fid", "--latency-budget-ms", budget, "--out", out)
    assert code == 0, err
    under = done[done["latency_ms"] <= budget]
    assert json.loads(out.read_text())["trial"] == int(under.loc[under["fid"].idxmin(), "number"])
    code, _, err = nas_cli("export", run.path, "--pick", "max-clip", "--out", out)
    assert json.loads(out.read_text())["trial"] == int(done.loc[done["clip_score"].idxmax(), "number"])


def test_export_onnx_matches_torch(nas_cli, run, tmp_path):
    number = int(run.read_trials().query("arch_id == @SMALL.arch_id")["number"].iloc[0])
    out, onnx_file = tmp_path / "small.json", tmp_path / "small.onnx"
    code, stdout, err = nas_cli("export", run.path, "--pick", f"trial:{number}", "--out", out, "--onnx", onnx_file)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["onnx"]["max_abs_diff"] < 1e-3 and doc["onnx"]["opset"] == 17 and "max abs diff" in stdout
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"sample", "timestep", "encoder_hidden_states"}
    result = session.run(None, {"sample": torch.randn(1, 4, 16, 16).numpy(), "timestep": [500.0],
                                "encoder_hidden_states": torch.randn(1, 8, 32).numpy()})[0]
    assert result.shape == (1, 4, 16, 16)
    assert _files(tmp_path) == {"small.json", "small.onnx"}  # cross-only attention: no diffusers config
    assert "attention kind 'cross' (level 1)" in doc["diffusers"]["reasons"]


def test_export_writes_diffusers_config_when_expressible(nas_cli, run, tmp_path):
    from diffusers import UNet2DConditionModel

    out = tmp_path / "sd.json"
    code, stdout, err = nas_cli("export", run.path, "--pick", "trial:0", "--out", out)  # trial 0: the sd15 preset
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["preset"] == "sd15" and doc["diffusers"]["expressible"]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((tmp_path / "sd.diffusers_unet.json").read_text()))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    code, stdout, err = nas_cli("export", run.path, "--pick", "trial:1", "--out", tmp_path / "md.json")
    doc = json.loads((tmp_path / "md.json").read_text())
    assert code == 0 and not doc["diffusers"]["expressible"] and "ReLU attention" in doc["diffusers"]["reasons"]
    assert "no diffusers config: ReLU attention" in " ".join(stdout.split())
    assert not (tmp_path / "md.diffusers_unet.json").exists()


# ---------------------------------------------------------------------------------------------- bad input
def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("command", ["report", "export"])
def test_not_a_run(nas_cli, tmp_path, command):
    extra = ["--pick", "knee", "--out", tmp_path / "x.json"] if command == "export" else []
    code, _, err = nas_cli(command, tmp_path, *extra)
    _one_line_error(code, err, "not a run folder")
    code, _, err = nas_cli(command, tmp_path / "missing", *extra)
    _one_line_error(code, err, "no such run folder")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "report.html").exists()


def test_empty_and_all_failed_runs(nas_cli, tmp_path):
    empty = RunFolder.create(tmp_path / "empty", {"name": "e", "objectives": [{"name": "fid", "direction": "minimize"}]})
    code, _, err = nas_cli("report", empty.path)
    _one_line_error(code, err, "no complete trial", "no trials")
    failed = build_run(tmp_path / "failed", n_random=0, n_failed=2, presets=())
    code, _, err = nas_cli("report", failed.path)
    _one_line_error(code, err, "no complete trial", "2 fail")
    code, _, err = nas_cli("export", failed.path, "--pick", "knee", "--out", tmp_path / "x.json")
    _one_line_error(code, err, "no complete trial")
    assert not failed.report_path.exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("pick, fragments", [
    ("best", ("unknown pick 'best'", "knee, min-latency, min-fid, max-clip")),
    ("trial:99", ("trial 99 does not exist",)),
    ("trial:x", ("needs a trial number",)),
])
def test_bad_picks(nas_cli, run, tmp_path, pick, fragments):
    code, _, err = nas_cli("export", run.path, "--pick", pick, "--out", tmp_path / "x.json")
    _one_line_error(code, err, *fragments)
    assert _files(tmp_path) == set()


def test_failed_trial_and_budget_without_fit(nas_cli, run, tmp_path):
    failed = int(run.read_trials().query("state == 'FAIL'")["number"].iloc[0])
    code, _, err = nas_cli("export", run.path, "--pick", f"trial:{failed}", "--out", tmp_path / "x.json")
    _one_line_error(code, err, f"trial {failed} is FAIL")
    code, _, err = nas_cli("export", run.path, "--pick", "knee", "--latency-budget-ms", "0.001", "--out", tmp_path / "x.json")
    _one_line_error(code, err, "no complete trial fits the latency budget of 0.001 ms")
    assert _files(tmp_path) == set()


def test_unwritable_outputs(nas_cli, run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = nas_cli("export", run.path, "--pick", "knee", "--out", blocker / "x.json")
    _one_line_error(code, err, "--out", "cannot write there")
    code, _, err = nas_cli("export", run.path, "--pick", "knee", "--out", tmp_path / "ok.json", "--onnx", blocker / "m.onnx")
    _one_line_error(code, err, "--onnx", "cannot write there")
    code, _, err = nas_cli("export", run.path, "--pick", "knee", "--out", tmp_path)
    _one_line_error(code, err, "is a folder")
    code, _, err = nas_cli("report", run.path, "--out", blocker / "r.html")
    _one_line_error(code, err, "cannot write")
    code, _, err = nas_cli("report", run.path, "--out", tmp_path)
    _one_line_error(code, err, "is a folder")
    assert _files(tmp_path) == {"a-file"}


@pytest.mark.slow
def test_export_real_preset_to_onnx(nas_cli, run, tmp_path):
    """The MobileDiffusion preset at full scale (~380M params, 64x64 latents, 77x768 text) through ONNX."""
    out, onnx_file = tmp_path / "md.json", tmp_path / "md.onnx"
    code, _, err = nas_cli("export", run.path, "--pick", "trial:1", "--out", out, "--onnx", onnx_file)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["preset"] == "mobilediffusion" and doc["onnx"]["max_abs_diff"] < 1e-3
    assert doc["onnx"]["inputs"] == {"sample": [1, 4, 64, 64], "timestep": [1], "encoder_hidden_states": [1, 77, 768]}
    assert onnx_file.stat().st_size > 4 * 370e6  # fp32 weights inside the one file (under 2 GiB: no external data)
    assert _files(tmp_path) == {"md.json", "md.onnx"}


def test_report_png_dir_without_browser_writes_nothing(nas_cli, run, tmp_path, monkeypatch):
    from reports import png

    monkeypatch.setattr(png, "find_browser", lambda: None)  # a machine with no Chrome/Chromium installed
    code, _, err = nas_cli("report", run.path, "--out", tmp_path / "r.html", "--png-dir", tmp_path / "png")
    _one_line_error(code, err, "needs a Chrome/Chromium binary")
    assert _files(tmp_path) == set()
