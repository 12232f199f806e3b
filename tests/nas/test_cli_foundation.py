import json
import subprocess
import sys

import pytest


def test_cost_sd15_json(nas_cli):
    code, out, _ = nas_cli("cost", "--preset", "sd15", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["params"] == 859_520_964
    assert abs(data["macs"] / 402.0e9 - 1) < 0.01
    assert abs(data["macs_no_attention"] / 338.6e9 - 1) < 0.01
    assert len(data["arch_id"]) == 12 and data["per_level"][0]["part"] == "stem"
    assert data["provenance"]["versions"]["torch"]


def test_cost_bk_sdm_tiny_json(nas_cli):
    code, out, _ = nas_cli("cost", "--preset", "bk_sdm_tiny", "--json")
    assert code == 0 and json.loads(out)["params"] == 323_384_964


def test_space_sample_json_lines_load_back_into_cost(nas_cli, tmp_path):
    code, out, _ = nas_cli("space", "sample", "unet_mobile", "--n", "4", "--seed", "7", "--json")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 4 and len(set(lines)) == 4
    path = tmp_path / "arch.json"
    path.write_text(lines[0])
    code, out, _ = nas_cli("cost", "--config", path, "--json")
    assert code == 0 and json.loads(out)["params"] > 0


def test_tables_and_listings(nas_cli):
    code, out, _ = nas_cli("spaces")
    assert code == 0 and "unet_mobile" in out
    code, out, _ = nas_cli("space", "show", "unet_mobile", "--json")
    dims = {d["name"]: d for d in json.loads(out)}
    assert dims["attn_activation"]["choices"] == ["softmax", "relu"] and "separable_2" in dims
    code, out, _ = nas_cli("presets", "--json")
    assert {p["name"] for p in json.loads(out)} == {"sd15", "bk_sdm_tiny", "mobilediffusion"}
    code, out, _ = nas_cli("cost", "--preset", "mobilediffusion")
    assert code == 0 and "level2" in out and "total" in out


def test_cost_prints_the_per_image_breakdown(nas_cli):
    code, out, _ = nas_cli("cost", "--preset", "mobilediffusion", "--steps", "8", "--guidance", "distilled",
                           "--device", "iphone15pro", "--json")
    data = json.loads(out)
    image, latency = data["image"], data["image_latency"]
    parts = {p["part"]: p for p in image["parts"]}
    assert code == 0 and image["unet_calls"] == 8 and parts["unet"]["macs"] == data["macs"]
    assert image["macs"] == sum(p["image_macs"] for p in image["parts"])
    assert latency["estimate"] is True and [p["part"] for p in latency["parts"]] == list(parts)
    assert latency["latency_ms"] == pytest.approx(sum(p["ms"] for p in latency["parts"]))
    code, out, _ = nas_cli("cost", "--preset", "sd15")
    assert code == 0 and "50 steps, cfg, sd decoder" in out and "text_encoder" in out and "vae_decoder" in out


@pytest.mark.parametrize("args, message", [
    (("cost", "--preset", "sd15", "--steps", "0"), "steps: must be an integer from 1 to 1000"),
    (("cost", "--preset", "sd15", "--steps", "1001"), "steps: must be an integer from 1 to 1000"),
    (("cost", "--preset", "sd15", "--guidance", "half"), "unknown guidance mode 'half'; known: cfg, distilled"),
    (("cost", "--preset", "sd15", "--decoder", "tiny"), "unknown decoder 'tiny'; known: sd, half, half_shallow"),
    (("cost", "--preset", "sd15", "--device", "nokia3310"), "unknown latency device"),
    (("cost", "--preset", "nope"), "unknown preset 'nope'"),
    (("cost",), "exactly one of --preset"),
    (("cost", "--preset", "sd15", "--config", "x.json"), "exactly one of --preset"),
    (("cost", "--config", "/nonexistent/a.json"), "cannot read config file"),
    (("space", "show", "nope"), "unknown search space"),
    (("space", "sample", "unet_mobile", "--n", "0"), "--n must be between"),
])
def test_bad_input_exits_2_with_one_line(nas_cli, args, message):
    code, out, err = nas_cli(*args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"levels": [{"channels": 64}]}', "levels[0].down_res: missing required field"),
    ('{"levels": [{"channels": "64", "down_res": 1, "up_res": 1, "transformer_depth": 0, "attention": "none"}]}',
     "levels[0].channels: expected an integer"),
    ('[1, 2]', "expected an object"),
])
def test_bad_config_files_exit_2(nas_cli, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = nas_cli("cost", "--config", path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_console_script_and_usage_errors():
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "cost", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "No such option" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "cost" in proc.stdout
