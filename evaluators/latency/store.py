"""The LUT store: one Parquet file per device, with its JSON metadata embedded in the file.

Contract:
- Location: `$NAS_LUT_DIR` if set, else `$XDG_CACHE_HOME/mobile-diffusion-nas/lut` (default
  `~/.cache/...`); every API and command also takes an explicit directory (`--lut-dir`).
- File `<device>.parquet`: columns `key` (block signature key), `ms` (robust median latency, > 0),
  `std_ms` (spread, NaN when unknown) and `n` (samples); the schema metadata `nas_lut` holds JSON with
  the device name, kind (measured | imported), fingerprint, measurement conditions and calibration.
  Table and metadata live in one file so one atomic rename writes both.
- Writes go to a temporary file and are renamed over the old one: a reader sees the old or the new LUT,
  never a half-written one, and an interrupted build keeps every chunk saved before the interruption.
- Loading checks everything (readable Parquet, schema, metadata, keys, finite positive latencies, unique
  keys, device name, and the SHA-256 of the entries that `save` stores in the metadata); any problem
  raises UserError naming the file, what is wrong and how to rebuild it, and leaves the file as it is
  (measurements may be hours of work or come from a phone: they are never silently replaced).
  Fingerprint checks are the caller's (`MeasuredPredictor` refuses a LUT measured on another fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.cache import cache_dir
from core.errors import UserError
from core.io import atomic_path
from evaluators.latency.signature import BlockSignature, SignatureError

LUT_DIR_ENV = "NAS_LUT_DIR"
SCHEMA_VERSION = 2  # 2: the metadata holds `entries_sha256`, checked on load
READABLE_SCHEMAS = (1, 2)  # version 1 files (no checksum) still load
META_KEY = b"nas_lut"
KINDS = ("measured", "imported")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_lut_dir() -> Path:
    """`$NAS_LUT_DIR`, else `lut/` in the cache folder (`core.cache.cache_dir`: `$NAS_CACHE_DIR`, else the user
    cache directory), beside the domain CLIP and the teachers."""
    if os.environ.get(LUT_DIR_ENV):
        return Path(os.environ[LUT_DIR_ENV])
    return cache_dir() / "lut"


def check_device_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UserError(f"bad device name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


@dataclass(frozen=True)
class Entry:
    """One measured block."""

    ms: float  # robust median latency, milliseconds
    std_ms: float  # spread of the samples (NaN when the source gave none)
    n: int  # samples behind `ms` (0 when unknown)


@dataclass
class Lut:
    """A device's latency table and its metadata."""

    device: str  # device name
    kind: str  # "measured" (built here) or "imported" (measured elsewhere, e.g. on a phone)
    fingerprint: dict  # what identifies the device; must match the device a measured LUT is used on
    conditions: dict = field(default_factory=dict)  # how it was measured (threads, versions, rounds, ...)
    entries: dict[str, Entry] = field(default_factory=dict)  # block key -> latency
    calibration: dict[str, dict] = field(default_factory=dict)  # latent size -> end-to-end overhead fit

    def meta(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "device": self.device, "kind": self.kind,
                "fingerprint": self.fingerprint, "conditions": self.conditions, "calibration": self.calibration}


class LutStore:
    """Reads and atomically writes LUT files in one directory."""

    def __init__(self, lut_dir: str | Path | None = None):
        self.dir = Path(lut_dir) if lut_dir else default_lut_dir()

    def path(self, device: str) -> Path:
        return self.dir / f"{check_device_name(device)}.parquet"

    def devices(self) -> list[str]:
        """Names of the devices with a stored LUT."""
        return sorted(p.stem for p in self.dir.glob("*.parquet")) if self.dir.is_dir() else []

    def load(self, device: str) -> Lut | None:
        """The stored LUT of `device`, or None if there is none.

        Raises:
            UserError: the file is unreadable, truncated, breaks the schema or fails its checksum; one
                sentence names the file and what is wrong, one says how to rebuild it.
        """
        path = self.path(device)
        if not path.exists():
            return None

        def corrupt(reason: str) -> UserError:
            return UserError(f"LUT file {path} is corrupt: {reason}. Rebuild it with `nas lut build --device "
                             f"{device} --replace` (or `nas lut import FILE --device {device} --replace` for an "
                             "imported one), or delete it.")

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise corrupt(f"it is not a readable Parquet file ({_first_sentence(err)})") from None
        raw = (table.schema.metadata or {}).get(META_KEY)
        try:
            meta = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict) or not {"device", "kind", "fingerprint"} <= set(meta):
            raise corrupt("its LUT metadata is missing or invalid")
        if meta.get("schema_version") not in READABLE_SCHEMAS:
            raise corrupt(f"its schema version is {meta.get('schema_version')!r}, this version reads "
                          f"{' and '.join(map(str, READABLE_SCHEMAS))}")
        if meta["device"] != device or meta["kind"] not in KINDS:
            raise corrupt(f"it holds device {meta['device']!r} of kind {meta['kind']!r}")
        expected = {"key": pa.string(), "ms": pa.float64(), "std_ms": pa.float64(), "n": pa.int64()}
        actual = {f.name: f.type for f in table.schema}
        if actual != expected:
            raise corrupt(f"its columns are {', '.join(f'{k} ({v})' for k, v in actual.items())}, expected "
                          f"{', '.join(f'{k} ({v})' for k, v in expected.items())}")
        cols = table.to_pydict()
        entries = {}
        for key, ms, std, n in zip(cols["key"], cols["ms"], cols["std_ms"], cols["n"]):
            try:
                BlockSignature.from_key(key)
            except SignatureError as err:
                raise corrupt(str(err).rstrip(".")) from None
            if ms is None or not math.isfinite(ms) or ms <= 0:
                raise corrupt(f"the latency {ms!r} of a block is not a positive number")
            if key in entries:
                raise corrupt(f"the block key {key[:60]}... occurs twice")
            entries[key] = Entry(ms, math.nan if std is None else std, n or 0)
        if meta["schema_version"] >= 2 and meta.get("entries_sha256") != _checksum(entries):
            raise corrupt("its entries do not match the checksum stored with them (the file was damaged or edited)")
        return Lut(meta["device"], meta["kind"], meta["fingerprint"], meta.get("conditions", {}), entries,
                   meta.get("calibration", {}))

    def save(self, lut: Lut) -> Path:
        """Write `lut` atomically (temporary file, then rename)."""
        path = self.path(lut.device)
        keys = sorted(lut.entries)
        table = pa.table({
            "key": pa.array(keys, pa.string()),
            "ms": pa.array([lut.entries[k].ms for k in keys], pa.float64()),
            "std_ms": pa.array([lut.entries[k].std_ms for k in keys], pa.float64()),
            "n": pa.array([lut.entries[k].n for k in keys], pa.int64()),
        }).replace_schema_metadata({META_KEY: json.dumps(lut.meta() | {"entries_sha256": _checksum(lut.entries)},
                                                         sort_keys=True, default=str)})
        with atomic_path(path, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        return path


def _checksum(entries: dict[str, Entry]) -> str:
    """SHA-256 of the entries in a canonical form (sorted keys; floats by repr, so NaN spreads compare)."""
    rows = [[k, repr(e.ms), repr(e.std_ms), e.n] for k, e in sorted(entries.items())]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _first_sentence(err: Exception) -> str:
    """The first sentence of an Arrow error, without the path Arrow repeats ("... source '<path>': ")."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.split("': ", 1)[-1].split(". ", 1)[0].rstrip(".")
