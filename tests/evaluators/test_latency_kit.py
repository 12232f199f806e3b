"""The phone kit: every block kind on the paper path converts to the phones' formats, failures are listed."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.errors import UserError
from evaluators.latency.kit import read_manifest, resolve_formats, write_kit
from evaluators.latency.phone import FORMATS
from evaluators.latency.signature import _shadow, arch_signatures

HAS_TFLITE = FORMATS["tflite"].unavailable() is None


def _paper_path_variants():
    """One block per distinct kind and option set on the paper path (sd15 -> ... -> mobilediffusion), at toy
    widths: conversion depends on the ops a block uses, not on its width."""
    from nas.ablation.panels import paper_panel

    variants = {}
    for _, config in paper_panel():
        for _, sig in arch_signatures(_shadow(config)):
            s = sig.spec
            variant = (s.kind, s.separable, s.attention, s.attn_activation, s.shared_kv, s.ff_activation,
                       s.in_ch == s.out_ch)
            variants.setdefault(variant, sig)
    return list(variants.values())


@pytest.mark.slow
def test_every_block_kind_on_the_paper_path_converts_to_a_phone_format(tmp_path):
    import coremltools as ct

    sigs = _paper_path_variants()
    kinds = {s.spec.kind for s in sigs}
    assert kinds == {"conv_in", "time_embed", "resnet", "transformer", "downsample", "upsample", "conv_out"}
    assert {s.spec.attn_activation for s in sigs} >= {"softmax", "relu"} and any(s.spec.separable for s in sigs)
    result = write_kit(sigs, tmp_path / "kit", 64)
    manifest = json.loads(result.manifest.read_text())
    assert result.not_converted == () and manifest["not_converted"] == []
    assert manifest["formats"]["coreml"]["written"] == len(sigs)
    for block in manifest["blocks"]:
        coreml = block["formats"]["coreml"]
        assert coreml["status"] == "ok", block["key"]
        spec = ct.models.MLModel(str(tmp_path / "kit" / "blocks" / coreml["file"]), skip_model_load=True).get_spec()
        shapes = [list(i.type.multiArrayType.shape) for i in spec.description.input]
        assert shapes == [i["shape"] for i in block["inputs"]], block["key"]  # fixed deployment shapes
        tflite = block["formats"]["tflite"]
        assert tflite["status"] == ("ok" if HAS_TFLITE else "unavailable")
        if not HAS_TFLITE:
            assert "litert-torch" in tflite["reason"]
    timing = (tmp_path / "kit" / "TIMING.md").read_text()
    assert "Xcode" in timing and "milliseconds" in timing
    assert ("benchmark_model" in timing) == HAS_TFLITE
    template = (tmp_path / "kit" / "measurements_coreml_template.csv").read_text().splitlines()
    assert template[0] == "file,latency_ms,std_ms" and len(template) == len(sigs) + 1
    files = read_manifest(tmp_path / "kit")
    assert {f for f in files if f.endswith(".mlpackage")} == {b["formats"]["coreml"]["file"] for b in manifest["blocks"]}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TFLITE, reason="litert-torch (the `phone` extra) is not installed")
def test_tflite_blocks_compute_what_the_torch_block_computes(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from evaluators.latency.backends import materialize
    from search_spaces.blocks import block_inputs, build_block

    sigs = _paper_path_variants()
    result = write_kit(sigs, tmp_path / "kit", 64, formats=["tflite"])
    manifest = json.loads(result.manifest.read_text())
    for sig, block in zip(sigs, manifest["blocks"]):
        module = materialize(lambda: build_block(sig.spec), "cpu", torch.float32)
        inputs = block_inputs(sig.spec)
        with torch.no_grad():
            expected = module(*inputs).numpy()
        interpreter = Interpreter(model_path=str(tmp_path / "kit" / "blocks" / block["formats"]["tflite"]["file"]))
        interpreter.allocate_tensors()
        for detail, tensor in zip(interpreter.get_input_details(), inputs):
            interpreter.set_tensor(detail["index"], tensor.numpy())
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert np.allclose(out, expected, atol=1e-4), block["key"]


def test_a_block_the_converter_cannot_handle_is_listed_with_its_reason(tmp_path, tiny):
    sig = replace(arch_signatures(tiny)[0][1], dtype="bfloat16")  # coremltools has no bfloat16 tensors
    result = write_kit([sig], tmp_path / "kit", 64, formats=["coreml"])
    assert result.formats["coreml"]["failed"] == 1 and result.formats["coreml"]["written"] == 0
    (miss,) = result.not_converted
    assert miss["format"] == "coreml" and miss["kind"] == "conv_in" and "bfloat16" in miss["reason"]
    manifest = json.loads(result.manifest.read_text())
    assert manifest["blocks"][0]["formats"]["coreml"]["status"] == "failed"
    assert (tmp_path / "kit" / "blocks" / manifest["blocks"][0]["file"]).is_file()  # the ONNX file is there
    assert not (tmp_path / "kit" / "measurements_coreml_template.csv").exists()
    assert not [p for p in (tmp_path / "kit" / "blocks").iterdir() if p.name.startswith(".")]  # no temporaries


def test_unknown_or_missing_formats_are_refused_when_asked_for():
    with pytest.raises(UserError, match="unknown phone format"):
        resolve_formats(["onnx2"])
    names, unavailable = resolve_formats(None)
    assert names == ["coreml", "tflite"] and unavailable["coreml"] is None
    if not HAS_TFLITE:
        assert "litert-torch" in unavailable["tflite"]
        with pytest.raises(UserError, match="litert-torch"):
            resolve_formats(["tflite"])
