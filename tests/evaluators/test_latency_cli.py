"""`nas lut` bad input of the phone-kit and GPU paths: one line on stderr, exit 2, no table changed."""

import math
from dataclasses import replace

import pytest
import torch

from evaluators.latency.kit import write_kit
from evaluators.latency.signature import arch_signatures
from evaluators.latency.store import Entry, Lut, LutStore


def _one_line_exit_2(result, match):
    code, _, err = result
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
@pytest.mark.parametrize("command", [["build", "--preset", "sd15"], ["validate", "--n", "3"],
                                     ["predict", "--preset", "sd15"]])
def test_a_gpu_requested_where_there_is_none(nas_cli, lut_dir, command):
    _one_line_exit_2(nas_cli("lut", command[0], "--device", "cuda", *command[1:]), "no CUDA GPU")
    assert not lut_dir.exists() or LutStore(lut_dir).devices() == []


def test_bad_device_capture_and_format(nas_cli, lut_dir, tmp_path):
    _one_line_exit_2(nas_cli("lut", "build", "--device", "nokia3310", "--preset", "sd15"), "unknown latency device")
    _one_line_exit_2(nas_cli("lut", "build", "--device", "cpu", "--preset", "sd15", "--capture", "graph"),
                     "CUDA graphs need --device cuda")
    _one_line_exit_2(nas_cli("lut", "kit", "--preset", "sd15", "--out", str(tmp_path / "k"), "--formats", "apk"),
                     "unknown phone format")
    assert not lut_dir.exists()


@pytest.fixture
def kit_dir(tmp_path, tiny):
    """A two-block kit: conv_out converts to Core ML, a bfloat16 conv_in does not (coremltools has no bfloat16)."""
    sigs = dict(arch_signatures(tiny))
    blocks = [replace(sigs["conv_in"], dtype="bfloat16"), sigs["out"]]
    result = write_kit(blocks, tmp_path / "kit", 64, formats=["coreml"])
    assert result.formats["coreml"]["written"] == 1 and result.formats["coreml"]["failed"] == 1
    return tmp_path / "kit"


def _files(kit_dir, suffix):
    return sorted(p.name for p in (kit_dir / "blocks").iterdir() if p.name.endswith(suffix))


@pytest.mark.slow
def test_import_of_a_phone_format_needs_only_the_blocks_that_format_has(nas_cli, lut_dir, kit_dir, tmp_path):
    (package,) = _files(kit_dir, ".mlpackage")
    csv = tmp_path / "coreml.csv"
    csv.write_text(f"file,latency_ms,std_ms\n{package},1.25,0.05\n")
    code, _, err = nas_cli("lut", "import", str(csv), "--device", "iphone-test", "--kit", str(kit_dir),
                       "--fingerprint", "iPhone, iOS 18, Core ML ANE")
    assert code == 0, err
    (entry,) = LutStore(lut_dir).load("iphone-test").entries.values()
    assert entry.ms == 1.25
    onnx = _files(kit_dir, ".onnx")
    partial = tmp_path / "onnx.csv"
    partial.write_text(f"file,latency_ms\n{onnx[0]},1.0\n")  # the ONNX files are two: one is missing
    _one_line_exit_2(nas_cli("lut", "import", str(partial), "--device", "onnx-test", "--kit", str(kit_dir)),
                     "misses 1 of the kit's 2 blocks")
    assert not (lut_dir / "onnx-test.parquet").exists()


def test_import_refuses_other_units_duplicates_and_clashing_fingerprints(nas_cli, lut_dir, tiny, tmp_path):
    key = arch_signatures(tiny)[0][1].key
    path = LutStore(lut_dir).save(Lut("phone", "imported", {"device": "phone", "description": "phone"}, {},
                                      {key: Entry(1.0, math.nan, 0)}))
    before = path.read_bytes()
    for text, match in [(f"key,latency_us\n{key},850\n", "must be in milliseconds"),
                        (f"key,latency_ms\n{key},850us\n", "must be in milliseconds"),
                        (f"key,latency_ms\n{key},1\n{key},2\n", "duplicate")]:
        csv = tmp_path / "bad.csv"
        csv.write_text(text)
        _one_line_exit_2(nas_cli("lut", "import", str(csv), "--device", "phone"), match)
    csv.write_text(f"key,latency_ms\n{key},2\n")
    _one_line_exit_2(nas_cli("lut", "import", str(csv), "--device", "phone", "--fingerprint", "another phone"),
                     "--replace")
    assert path.read_bytes() == before
