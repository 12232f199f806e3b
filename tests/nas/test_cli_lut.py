"""`nas lut ...` end to end through the CLI entry point (tiny architectures at 64px)."""

import json
import math
import time

import numpy as np
import onnxruntime as ort
import pytest

from evaluators.latency.store import Entry, Lut, LutStore
from nas.cli import main
from search_spaces.config import ArchConfig, LevelConfig, MidConfig

TINY = ArchConfig(levels=(LevelConfig(32, 1, 2, 1, "self_cross"), LevelConfig(64, 1, 2, 1, "cross")),
                  mid=MidConfig(2, 1, "self_cross"), context_len=8, context_dim=32, latent_size=8, norm_groups=8,
                  num_heads=2)


def run(capsys, *args):
    """(exit code, stdout, stderr) of `nas ARGS`."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def lut_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path / "lut"))
    return tmp_path / "lut"


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(TINY.to_json())
    return path


@pytest.mark.parametrize("command", ["build", "show", "predict", "validate", "kit", "import", "devices"])
def test_help(capsys, command):
    code, out, _ = run(capsys, "lut", command, "--help")
    assert code == 0 and "Usage" in out


def test_predict_roofline_json_is_an_estimate(capsys, lut_dir):
    code, out, _ = run(capsys, "lut", "predict", "--device", "iphone15pro", "--preset", "mobilediffusion", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["estimate"] is True and data["latency_ms"] > 0
    assert data["latency_ms"] == pytest.approx(sum(b["ms"] for b in data["blocks"]))
    assert {"path", "key", "ms"} <= set(data["blocks"][0])
    code, out, _ = run(capsys, "lut", "show", "--device", "pixel8", "--json")
    assert code == 0 and json.loads(out)["estimate"] is True


@pytest.mark.slow
@pytest.mark.slow
def test_predict_per_image_on_a_phone_and_on_this_cpu(capsys, lut_dir, tmp_path):
    code, out, _ = run(capsys, "lut", "predict", "--device", "iphone15pro", "--preset", "mobilediffusion",
                       "--steps", "8", "--guidance", "distilled", "--json")
    data = json.loads(out)
    parts = {p["part"]: p for p in data["image"]["parts"]}
    assert code == 0 and parts["unet"]["calls"] == 8
    assert parts["unet"]["ms_per_call"] == pytest.approx(data["latency_ms"])
    assert data["image"]["latency_ms"] == pytest.approx(sum(p["ms"] for p in parts.values()))
    clip_tiny = tmp_path / "clip_tiny.json"  # the tiny UNet cross-attending to CLIP-L's 77 x 768 states
    clip_tiny.write_text(TINY.replace(context_len=77, context_dim=768).to_json())
    code, out, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(clip_tiny), "--image-size",
                         "64", "--steps", "4", "--decoder", "half_shallow")
    assert code == 0 and "one 64px image: 4 steps, cfg" in out
    assert "text_encoder" in out and "vae_decoder" in out and "no end-to-end calibration" in err
    assert sum("kind=text_encoder" in k or "kind=vae_decoder" in k for k in LutStore(lut_dir).load("cpu").entries) == 2
    code, _, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(clip_tiny), "--image-size", "64",
                       "--steps", "0")
    assert code == 2 and "steps: must be an integer from 1 to 1000" in err and len(err.strip().splitlines()) == 1


def test_build_resumes_and_predict_show(capsys, lut_dir, tiny_json):
    args = ["lut", "build", "--device", "cpu", "--config", str(tiny_json), "--image-size", "64", "--rounds", "2",
            "--no-calibrate", "--json"]
    code, out, _ = run(capsys, *args)
    first = json.loads(out)
    assert code == 0 and first["measured_now"] == first["blocks"] > 0
    assert (lut_dir / "cpu.parquet").exists()
    code, out, _ = run(capsys, *args)
    assert json.loads(out)["measured_now"] == 0 and json.loads(out)["already_present"] == first["blocks"]
    code, out, _ = run(capsys, "lut", "show", "--device", "cpu", "--image-size", "64", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["entries"] == first["blocks"] and shown["fingerprint_matches"] is True
    assert shown["coverage"] == 0.0  # the tiny architecture is not in unet_mobile
    code, out, _ = run(capsys, "lut", "build", "--device", "cpu", "--config", str(tiny_json), "--image-size", "64",
                       "--no-calibrate")
    assert code == 0 and "wrote" in out and str(lut_dir / "cpu.parquet") in out.replace("\n", "")


def _measure_kit(kit_dir) -> dict[str, float]:
    """Time every ONNX file of a kit with onnxruntime (what a phone benchmark tool would do)."""
    manifest = json.loads((kit_dir / "manifest.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    out = {}
    for block in manifest["blocks"]:
        session = ort.InferenceSession(str(kit_dir / "blocks" / block["file"]), opts,
                                       providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        feeds = {i["name"]: np.random.rand(*i["shape"]).astype(i["dtype"]) for i in block["inputs"]
                 if i["name"] in wanted}
        session.run(None, feeds)
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            session.run(None, feeds)
            samples.append((time.perf_counter() - start) * 1e3)
        out[block["file"]] = sorted(samples)[1]
    return out


@pytest.mark.slow
def test_kit_then_import_round_trip(capsys, lut_dir, tiny_json, tmp_path):
    kit_dir = tmp_path / "kit"
    code, out, _ = run(capsys, "lut", "kit", "--config", str(tiny_json), "--image-size", "64", "--formats", "", "--no-pipeline", "--out", str(kit_dir),
                       "--json")
    summary = json.loads(out)
    assert code == 0 and summary["written"] == summary["blocks"] > 0
    assert (kit_dir / "measurements_template.csv").read_text().startswith("file,latency_ms,std_ms\n")
    timings = _measure_kit(kit_dir)
    csv = tmp_path / "phone.csv"
    csv.write_text("file,latency_ms\n" + "".join(f"{f},{ms:.6f}\n" for f, ms in timings.items()))
    code, out, err = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--kit", str(kit_dir),
                         "--image-size", "64", "--json")
    assert code == 0, err
    assert json.loads(out)["imported"] == len(timings)
    code, out, _ = run(capsys, "lut", "predict", "--device", "testphone", "--config", str(tiny_json),
                       "--image-size", "64", "--json")
    assert code == 0
    data = json.loads(out)
    manifest = json.loads((kit_dir / "manifest.json").read_text())
    by_key = {b["key"]: timings[b["file"]] for b in manifest["blocks"]}
    assert data["latency_ms"] == pytest.approx(sum(by_key[b["key"]] for b in data["blocks"]), rel=1e-6)
    assert data["estimate"] is False
    code, out, _ = run(capsys, "lut", "kit", "--config", str(tiny_json), "--image-size", "64", "--formats", "", "--no-pipeline", "--out", str(kit_dir),
                       "--json")
    assert json.loads(out)["kept"] == summary["blocks"]  # a rerun resumes: nothing is exported twice


@pytest.mark.slow
def test_kit_with_the_pipeline_blocks_gives_a_phone_per_image_latency(capsys, lut_dir, tmp_path):
    clip_tiny = tmp_path / "clip_tiny.json"  # the tiny UNet cross-attending to CLIP-L's 77 x 768 states
    config = TINY.replace(context_len=77, context_dim=768)
    clip_tiny.write_text(config.to_json())
    kit_dir = tmp_path / "kit"
    code, _, err = run(capsys, "lut", "kit", "--config", str(clip_tiny), "--image-size", "64", "--formats", "",
                       "--out", str(kit_dir))
    assert code == 0, err
    blocks = json.loads((kit_dir / "manifest.json").read_text())["blocks"]
    pipeline = [b for b in blocks if b["kind"] in ("text_encoder", "vae_decoder")]
    assert [b["kind"] for b in pipeline] == ["text_encoder"] + ["vae_decoder"] * 3
    assert pipeline[0]["inputs"] == [{"name": "input_ids", "shape": [1, 77], "dtype": "int64"}]
    assert {tuple(b["inputs"][0]["shape"]) for b in pipeline[1:]} == {(1, 4, 8, 8)}
    session = ort.InferenceSession(str(kit_dir / "blocks" / pipeline[1]["file"]), providers=["CPUExecutionProvider"])
    assert session.run(None, {"latents": np.zeros((1, 4, 8, 8), np.float32)})[0].shape == (1, 3, 64, 64)
    ms = {b["file"]: 1.0 for b in blocks} | {pipeline[0]["file"]: 7.0} | {b["file"]: 40.0 for b in pipeline[1:]}
    csv = tmp_path / "phone.csv"
    csv.write_text("file,latency_ms\n" + "".join(f"{f},{v}\n" for f, v in ms.items()))
    code, out, err = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--kit", str(kit_dir),
                         "--image-size", "64", "--json")
    assert code == 0 and json.loads(out)["per_image_blocks"] == "4 of 4", err
    code, out, _ = run(capsys, "lut", "predict", "--device", "testphone", "--config", str(clip_tiny), "--image-size",
                       "64", "--steps", "3", "--json")
    data = json.loads(out)
    n_unet = len(data["blocks"])
    assert code == 0 and data["image"]["latency_ms"] == pytest.approx(7.0 + 6 * n_unet * 1.0 + 40.0)


def test_kit_refuses_what_does_not_fit_on_disk(capsys, tmp_path):
    code, _, err = run(capsys, "lut", "kit", "--space", "unet_mobile", "--out", str(tmp_path / "k"))
    assert code == 2 and "GB" in err and len(err.strip().splitlines()) == 1


def _stored(lut_dir, name="testphone"):
    path = LutStore(lut_dir).save(Lut(name, "imported", {"device": name, "description": name}, {},
                                      {TINY_KEY: Entry(1.0, math.nan, 0)}))
    return path, path.read_bytes()


TINY_KEY = ("kind=conv_in|in_ch=4|out_ch=32|res=8|temb_ch=0|groups=0|separable=0|depth=0|attention=none|heads=0|"
            "attn_activation=none|shared_kv=0|ff_mult=0|ff_activation=none|context_len=0|context_dim=0|batch=1|"
            "dtype=float32|layout=nchw")


@pytest.mark.parametrize("csv_text,match", [
    ("key,latency\n{k},1\n", "header"),
    ("key,latency_ms\n{k},-1\n", "> 0"),
    ("key,latency_ms\n{k},abc\n", "not a number"),
    ("key,latency_ms\n{k},1\n{k},2\n", "duplicate"),
    ("key,latency_ms\nnot-a-key,1\n", "malformed"),
])
def test_bad_imports_exit_2_and_leave_the_stored_lut(capsys, lut_dir, tmp_path, csv_text, match):
    path, before = _stored(lut_dir)
    csv = tmp_path / "bad.csv"
    csv.write_text(csv_text.replace("{k}", TINY_KEY))
    code, out, err = run(capsys, "lut", "import", str(csv), "--device", "testphone")
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_import_missing_kit_blocks_and_builtin_names(capsys, lut_dir, tiny_json, tmp_path):
    kit_dir = tmp_path / "kit"
    assert run(capsys, "lut", "kit", "--config", str(tiny_json), "--image-size", "64", "--formats", "",
               "--no-pipeline", "--out", str(kit_dir))[0] == 0
    files = [b["file"] for b in json.loads((kit_dir / "manifest.json").read_text())["blocks"]]
    csv = tmp_path / "partial.csv"
    csv.write_text("file,latency_ms\n" + "".join(f"{f},1.0\n" for f in files[1:]))
    code, _, err = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--kit", str(kit_dir))
    assert code == 2 and "misses 1 of the kit's" in err and files[0] in err
    assert not (lut_dir / "testphone.parquet").exists()
    code, _, err = run(capsys, "lut", "import", str(csv), "--device", "cpu")
    assert code == 2 and "built-in" in err
    (kit_dir / "manifest.json").write_text("{not json")
    code, _, err = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--kit", str(kit_dir))
    assert code == 2 and "corrupt" in err


def test_imported_lut_of_another_fingerprint_needs_replace(capsys, lut_dir, tmp_path):
    path, before = _stored(lut_dir)
    csv = tmp_path / "m.csv"
    csv.write_text(f"key,latency_ms\n{TINY_KEY},3\n")
    code, _, err = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--fingerprint", "other phone")
    assert code == 2 and "--replace" in err and path.read_bytes() == before
    code, _, _ = run(capsys, "lut", "import", str(csv), "--device", "testphone", "--fingerprint", "other phone",
                     "--replace")
    assert code == 0 and LutStore(lut_dir).load("testphone").entries[TINY_KEY].ms == 3.0


def test_user_errors_exit_2_with_one_line(capsys, lut_dir, tiny_json):
    lut_dir.mkdir(parents=True)
    corrupt = lut_dir / "cpu.parquet"
    corrupt.write_bytes(b"PAR1 truncated")
    cases = [
        (["lut", "predict", "--device", "nokia3310", "--preset", "sd15"], "unknown latency device"),
        (["lut", "show", "--device", "nokia3310"], "unknown latency device"),
        (["lut", "predict", "--device", "cpu", "--preset", "sd15"], "corrupt"),
        (["lut", "show", "--device", "cpu"], "corrupt"),
        (["lut", "validate", "--device", "cpu", "--n", "1"], "--n"),
        (["lut", "validate", "--device", "iphone15pro", "--n", "3"], "not measured"),
        (["lut", "build", "--device", "pixel8"], "not measured"),
        (["lut", "predict", "--device", "iphone15pro", "--preset", "sd15", "--image-size", "100"], "image-size"),
        (["lut", "predict", "--device", "iphone15pro"], "exactly one"),
        (["lut", "build", "--device", "onnxruntime", "--sample", "2", "--preset", "sd15"], "not both"),
    ]
    before = corrupt.read_bytes()
    for args, match in cases:
        code, _, err = run(capsys, *args)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (args, err)
    assert corrupt.read_bytes() == before


def test_fingerprint_mismatch_is_refused(capsys, lut_dir, tiny_json):
    path = LutStore(lut_dir).save(Lut("cpu", "measured", {"backend": "cpu", "cpu": "a different CPU"}, {},
                                      {TINY_KEY: Entry(1.0, 0.1, 3)}))
    before = path.read_bytes()
    code, _, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(tiny_json), "--image-size", "64")
    assert code == 2 and "another device fingerprint" in err
    code, out, _ = run(capsys, "lut", "show", "--device", "cpu", "--json")
    assert code == 0 and json.loads(out)["fingerprint_matches"] is False
    assert path.read_bytes() == before


def test_predict_on_a_fresh_table_says_it_is_uncalibrated_instead_of_calibrating(capsys, lut_dir, tiny_json):
    code, out, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(tiny_json), "--image-size",
                         "64", "--json")
    assert code == 0 and json.loads(out)["calibrated"] is False
    assert err.splitlines() == [f"nas: warning: {lut_dir / 'cpu.parquet'} has no end-to-end calibration at 64px: "
                                "this prediction is the sum of blocks (pass --calibrate to fit one)"]
    assert LutStore(lut_dir).load("cpu").calibration == {}  # no end-to-end timing happened
    code, out, _ = run(capsys, "lut", "predict", "--help")
    assert code == 0 and "--calibrate" in out and "9 architectures" in " ".join(out.split())


def test_max_memory_refuses_blocks_before_measuring(capsys, lut_dir, tiny_json):
    code, _, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(tiny_json), "--image-size", "64",
                       "--max-memory", "1KiB")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs about" in err and "more than --max-memory 1.0 KiB; the largest block is a " in err
    assert not (lut_dir / "cpu.parquet").exists()
    for command in ("build", "validate"):
        code, _, err = run(capsys, "lut", command, "--device", "cpu", "--max-memory", "lots")
        assert code == 2 and "--max-memory must be a positive size" in err and len(err.strip().splitlines()) == 1


def test_calibration_too_large_for_the_memory_is_refused_before_it_is_announced(capsys, lut_dir, tiny_json):
    code, _, err = run(capsys, "lut", "predict", "--device", "cpu", "--config", str(tiny_json), "--image-size", "64",
                       "--calibrate", "--max-memory", "1GiB")
    assert code == 2 and len(err.strip().splitlines()) == 1  # no announcement before the refusal
    assert "end to end on cpu at 64px needs about" in err and "more than --max-memory 1.0 GiB" in err
    assert LutStore(lut_dir).load("cpu").calibration == {}
