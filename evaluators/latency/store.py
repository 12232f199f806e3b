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
  keys, device name); any problem raises UserError and leaves the file as it is. Fingerprint checks are
  the caller's (`MeasuredPredictor` refuses a LUT measured on another fingerprint).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluators.latency.signature import BlockSignature, SignatureError
from nas.errors import UserError
from nas.io import atomic_path

LUT_DIR_ENV = "NAS_LUT_DIR"
SCHEMA_VERSION = 1
META_KEY = b"nas_lut"
KINDS = ("measured", "imported")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_lut_dir() -> Path:
    """`$NAS_LUT_DIR`, else the user cache directory."""
    if os.environ.get(LUT_DIR_ENV):
        return Path(os.environ[LUT_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mobile-diffusion-nas" / "lut"


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
            UserError: the file is unreadable, truncated, or breaks the schema (the message names it).
        """
        path = self.path(device)
        if not path.exists():
            return None
        bad = f"LUT file {path} is corrupt or not a LUT"
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise UserError(f"{bad} ({str(err).splitlines()[0][:120]}); delete it to rebuild") from None
        raw = (table.schema.metadata or {}).get(META_KEY)
        try:
            meta = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None
        if not isinstance(meta, dict) or not {"device", "kind", "fingerprint"} <= set(meta):
            raise UserError(f"{bad} (missing or invalid metadata); delete it to rebuild")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{bad} (schema version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION})")
        if meta["device"] != device or meta["kind"] not in KINDS:
            raise UserError(f"{bad} (it holds device {meta['device']!r} of kind {meta['kind']!r})")
        expected = {"key": pa.string(), "ms": pa.float64(), "std_ms": pa.float64(), "n": pa.int64()}
        actual = {f.name: f.type for f in table.schema}
        if actual != expected:
            raise UserError(f"{bad} (columns {actual}, expected {expected})")
        cols = table.to_pydict()
        entries = {}
        for key, ms, std, n in zip(cols["key"], cols["ms"], cols["std_ms"], cols["n"]):
            try:
                BlockSignature.from_key(key)
            except SignatureError as err:
                raise UserError(f"{bad} ({err})") from None
            if ms is None or not math.isfinite(ms) or ms <= 0:
                raise UserError(f"{bad} (latency {ms!r} of a block is not a positive number)")
            if key in entries:
                raise UserError(f"{bad} (duplicate block key {key[:60]}...)")
            entries[key] = Entry(ms, math.nan if std is None else std, n or 0)
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
        }).replace_schema_metadata({META_KEY: json.dumps(lut.meta(), sort_keys=True, default=str)})
        with atomic_path(path, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        return path
