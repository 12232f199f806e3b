"""The LUT store: round trip, atomic writes, corrupt files, fingerprints."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import UserError
from evaluators.latency import get_predictor
from evaluators.latency.signature import arch_signatures
from evaluators.latency.store import META_KEY, Entry, Lut, LutStore, default_lut_dir


def _lut(tiny, device="cpu", fingerprint=None):
    keys = [sig.key for _, sig in arch_signatures(tiny)]
    entries = {k: Entry(1.0 + i, 0.1, 5) for i, k in enumerate(dict.fromkeys(keys))}
    return Lut(device, "measured", fingerprint or {"backend": device, "cpu": "test"}, {"rounds": 5}, entries,
               {"8": {"scale": 1.0, "offset_ms": 0.5, "points": [["a", 1.0, 1.5]]}})


def test_round_trip(tmp_path, tiny):
    store = LutStore(tmp_path)
    lut = _lut(tiny)
    path = store.save(lut)
    assert path == tmp_path / "cpu.parquet" and store.devices() == ["cpu"]
    back = store.load("cpu")
    assert back.entries == lut.entries and back.meta() == lut.meta()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_nan_std_survives_and_missing_lut_is_none(tmp_path, tiny):
    store = LutStore(tmp_path)
    lut = _lut(tiny, "phone")
    lut.kind = "imported"
    key = next(iter(lut.entries))
    lut.entries[key] = Entry(2.0, math.nan, 0)
    store.save(lut)
    assert math.isnan(store.load("phone").entries[key].std_ms)
    assert store.load("other") is None


def test_lut_dir_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path / "x"))
    assert default_lut_dir() == tmp_path / "x" and LutStore().dir == tmp_path / "x"
    monkeypatch.delenv("NAS_LUT_DIR")  # else in the cache folder, with the domain CLIP and the teachers
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    assert default_lut_dir() == tmp_path / "cache" / "lut"


def _rewrite(path, transform):
    table = pq.read_table(path)
    pq.write_table(transform(table), path)


def _set_ms(table, values):
    return table.set_column(table.schema.get_field_index("ms"), "ms", pa.array(values, pa.float64()))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_meta", "bad_column", "negative", "nan",
                                    "duplicate", "bad_key", "other_device", "edited", "future_schema"])
def test_corrupt_files_raise_user_error_and_stay_untouched(tmp_path, tiny, damage):
    store = LutStore(tmp_path)
    path = store.save(_lut(tiny))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "garbage":
        path.write_bytes(b"key,ms\nnot parquet\n")
    elif damage == "no_meta":
        _rewrite(path, lambda t: t.replace_schema_metadata({}))
    elif damage == "bad_column":
        _rewrite(path, lambda t: t.rename_columns(["key", "latency", "std_ms", "n"]))
    elif damage == "negative":
        _rewrite(path, lambda t: _set_ms(t, [-1.0] + t.column("ms").to_pylist()[1:]))
    elif damage == "nan":
        _rewrite(path, lambda t: _set_ms(t, [math.nan] + t.column("ms").to_pylist()[1:]))
    elif damage == "duplicate":
        _rewrite(path, lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    elif damage == "bad_key":
        _rewrite(path, lambda t: t.set_column(0, "key", pa.array(["x"] + t.column("key").to_pylist()[1:])))
    elif damage == "other_device":
        path.rename(tmp_path / "onnxruntime.parquet")
        path = tmp_path / "onnxruntime.parquet"
    elif damage == "edited":  # still valid Parquet and plausible values: only the checksum can tell
        _rewrite(path, lambda t: _set_ms(t, [v * 1.01 for v in t.column("ms").to_pylist()]))
    elif damage == "future_schema":
        _rewrite(path, lambda t: t.replace_schema_metadata(
            {META_KEY: json.dumps(json.loads(t.schema.metadata[META_KEY]) | {"schema_version": 99})}))
    before = path.read_bytes()
    with pytest.raises(UserError, match="corrupt") as err:
        store.load(path.stem)
    message = str(err.value)
    assert message.startswith(f"LUT file {path} is corrupt: ") and message.endswith("or delete it.")
    assert f"nas lut build --device {path.stem} --replace" in message and "\n" not in message
    assert path.read_bytes() == before


def test_checksum_is_stored_and_a_version_1_file_without_one_still_loads(tmp_path, tiny):
    store = LutStore(tmp_path)
    lut = _lut(tiny)
    path = store.save(lut)
    meta = json.loads(pq.read_table(path).schema.metadata[META_KEY])
    assert meta["schema_version"] == 2 and len(meta["entries_sha256"]) == 64
    old = {k: v for k, v in meta.items() if k != "entries_sha256"} | {"schema_version": 1}
    _rewrite(path, lambda t: t.replace_schema_metadata({META_KEY: json.dumps(old)}))
    assert store.load("cpu").entries == lut.entries


def test_lut_of_another_fingerprint_is_refused_then_replaced_on_request(lut_dir, tiny):
    store = LutStore(lut_dir)
    path = store.save(_lut(tiny, fingerprint={"backend": "cpu", "cpu": "some other CPU", "threads": 64}))
    before = path.read_bytes()
    with pytest.raises(UserError, match="another device fingerprint"):
        get_predictor("cpu", image_size=64)
    assert path.read_bytes() == before
    predictor = get_predictor("cpu", image_size=64, replace=True, rounds=2)
    assert predictor.lut.entries == {}
    assert path.read_bytes() == before  # nothing is replaced before something new is measured
    predictor.ensure([tiny])
    assert store.load("cpu").fingerprint == predictor.backend.fingerprint() | {"speed_probe": "v1"}


def test_metadata_is_json_in_the_parquet_schema(tmp_path, tiny):
    path = LutStore(tmp_path).save(_lut(tiny))
    assert META_KEY in pq.read_schema(path).metadata
