"""The imported-measurements CSV: schema and value checks, each with a one-line UserError."""

import math

import pytest

from core.errors import UserError
from evaluators.latency.imported import read_measurements
from evaluators.latency.signature import arch_signatures


@pytest.fixture
def keys(tiny):
    return list(dict.fromkeys(sig.key for _, sig in arch_signatures(tiny)))


def _write(tmp_path, text):
    path = tmp_path / "m.csv"
    path.write_text(text)
    return path


def test_valid_file_with_and_without_std(tmp_path, keys):
    rows = "".join(f"{k},{i + 1}.5,{'' if i % 2 else '0.1'}\n" for i, k in enumerate(keys))
    out = read_measurements(_write(tmp_path, "key,latency_ms,std_ms\n" + rows))
    assert list(out) == keys
    assert out[keys[0]].ms == 1.5 and out[keys[0]].std_ms == 0.1 and math.isnan(out[keys[1]].std_ms)


def test_file_column_maps_through_the_manifest(tmp_path, keys):
    manifest = {f"b{i}.onnx": k for i, k in enumerate(keys)}
    out = read_measurements(_write(tmp_path, "file,latency_ms\nb0.onnx,2\nb1.onnx,3\n"), manifest)
    assert out[keys[0]].ms == 2.0 and out[keys[1]].ms == 3.0


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("block,latency_ms\n{k},1\n", "header"),
    ("key,latency\n{k},1\n", "header"),
    ("key,latency_ms,extra\n{k},1,2\n", "header"),
    ("key,latency_ms\n", "no measurements"),
    ("key,latency_ms\n{k},fast\n", "not a number"),
    ("key,latency_ms\n{k},-3\n", "> 0"),
    ("key,latency_ms\n{k},0\n", "> 0"),
    ("key,latency_ms\n{k},nan\n", "finite"),
    ("key,latency_ms\n{k},inf\n", "finite"),
    ("key,latency_ms,std_ms\n{k},1,-1\n", ">= 0"),
    ("key,latency_ms\n{k},1\n{k},2\n", "duplicate"),
    ("key,latency_ms\nkind=resnet|junk,1\n", "malformed"),
    ("key,latency_ms,std_ms\n{k},1\n", "truncated"),
    ("file,latency_ms\nb0.onnx,1\n", "manifest"),
])
def test_bad_files(tmp_path, keys, text, match):
    with pytest.raises(UserError, match=match):
        read_measurements(_write(tmp_path, text.replace("{k}", keys[0])))


def test_unreadable_file(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_measurements(tmp_path / "absent.csv")


@pytest.mark.parametrize("text,unit", [
    ("key,latency_us\n{k},850\n", "microseconds"),
    ("file,latency_s\nb0.onnx,0.85\n", "seconds"),
    ("key,latency_ms,unit\n{k},850,us\n", "microseconds"),
    ("key,latency_ms\n{k},850us\n", "microseconds"),
    ("key,latency_ms\n{k},0.85 s\n", "seconds"),
])
def test_units_other_than_milliseconds_are_refused(tmp_path, keys, text, unit):
    with pytest.raises(UserError, match=f"must be in milliseconds, this gives {unit}") as err:
        read_measurements(_write(tmp_path, text.replace("{k}", keys[0])), {"b0.onnx": keys[0]})
    assert "\n" not in str(err.value)


def test_milliseconds_spelled_out_are_accepted_or_explained(tmp_path, keys):
    out = read_measurements(_write(tmp_path, f"key,latency_ms,unit\n{keys[0]},2.5,ms\n"))
    assert out[keys[0]].ms == 2.5
    with pytest.raises(UserError, match="without its unit"):
        read_measurements(_write(tmp_path, f"key,latency_ms\n{keys[0]},2.5ms\n"))
