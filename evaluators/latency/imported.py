"""Latencies measured elsewhere (a phone, an accelerator board): the CSV schema and its checks.

CSV schema (header row required, UTF-8, comma separated):

    key,latency_ms,std_ms
    kind=resnet|in_ch=320|...|batch=1|dtype=float32,12.5,0.4

- `key`: a block signature key, exactly as `nas lut kit` writes it in `manifest.json` (or, instead of a
  `key` column, `file`: the ONNX file name from the kit's manifest; then `--kit DIR` is required).
- `latency_ms`: the block's latency in milliseconds, a finite number > 0 (the median of your runs).
- `std_ms`: optional, >= 0; empty when unknown.
- `unit`: optional; if present, `ms` on every row.
No other columns, no duplicate blocks, no other units: a column such as `latency_us`, a `unit` of `us`, or
a value such as `850us` is refused with the conversion to make (TFLite's benchmark_model prints
microseconds). Every problem is reported with its line number.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from core.errors import UserError
from evaluators.latency.signature import BlockSignature, SignatureError
from evaluators.latency.store import Entry

REQUIRED = ("latency_ms",)
OPTIONAL = ("std_ms", "unit")
ID_COLUMNS = ("key", "file")
_UNITS = {"ns": "nanoseconds", "us": "microseconds", "µs": "microseconds", "s": "seconds", "sec": "seconds",
          "ms": "milliseconds"}
_UNIT_COLUMN = re.compile(r"^(?:latency|time|median|mean|avg|std)_?(ns|us|µs|s|sec)$", re.IGNORECASE)
_WITH_UNIT = re.compile(r"^\s*[-+0-9.eE]+\s*([a-zA-Zµ]+)\s*$")


def _not_ms(where: str, unit: str) -> UserError:
    name = _UNITS.get(unit.lower(), unit)
    return UserError(f"{where}: latencies must be in milliseconds, this gives {name} ({unit}); convert them "
                     "(us / 1000, s * 1000) into a latency_ms column of plain numbers")


def _number(raw: str, where: str, name: str, allow_zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        unit = _WITH_UNIT.match(raw)
        if unit and unit.group(1).lower() != "ms":
            raise _not_ms(where, unit.group(1)) from None
        raise UserError(f"{where}: {name} {raw!r} is not a number" + (" (give the number without its unit)"
                                                                     if unit else "")) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{where}: {name} must be a finite number {'>=' if allow_zero else '>'} 0, got {raw!r}")
    return value


def read_measurements(path: str | Path, files_to_keys: dict[str, str] | None = None) -> dict[str, Entry]:
    """Parse and check an imported CSV; returns block key -> Entry.

    Args:
        path: the CSV file.
        files_to_keys: the kit manifest's ONNX file name -> block key (needed for a `file` column).

    Raises:
        UserError: unreadable file, wrong header, bad key, non-numeric or non-positive latency, duplicates.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise UserError(f"{path}: empty file (expected a header: key,latency_ms[,std_ms])")
    header = [h.strip() for h in header]
    for column in header:
        unit = _UNIT_COLUMN.match(column)
        if unit:
            raise _not_ms(f"{path}: column {column!r}", unit.group(1))
    ids = [c for c in header if c in ID_COLUMNS]
    unknown = [c for c in header if c not in ID_COLUMNS + REQUIRED + OPTIONAL]
    if len(ids) != 1 or unknown or "latency_ms" not in header or len(set(header)) != len(header):
        raise UserError(f"{path}: header {','.join(header)!r} does not match the schema "
                        "key|file,latency_ms[,std_ms]")
    if ids[0] == "file" and files_to_keys is None:
        raise UserError(f"{path}: a 'file' column needs the kit's manifest (--kit DIR)")
    col = {name: i for i, name in enumerate(header)}
    out: dict[str, Entry] = {}
    for line_no, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{line_no}"
        if len(row) != len(header):
            raise UserError(f"{where}: {len(row)} fields, expected {len(header)} (truncated line?)")
        ident = row[col[ids[0]]].strip()
        if ids[0] == "file":
            if ident not in files_to_keys:
                raise UserError(f"{where}: file {ident!r} is not in the kit's manifest")
            key = files_to_keys[ident]
        else:
            key = ident
        try:
            BlockSignature.from_key(key)
        except SignatureError as err:
            raise UserError(f"{where}: {err}") from None
        if "unit" in col and row[col["unit"]].strip().lower() not in ("ms", "milliseconds"):
            raise _not_ms(where, row[col["unit"]].strip() or "no unit")
        ms = _number(row[col["latency_ms"]].strip(), where, "latency_ms", allow_zero=False)
        raw_std = row[col["std_ms"]].strip() if "std_ms" in col else ""
        std = _number(raw_std, where, "std_ms", allow_zero=True) if raw_std else math.nan
        if key in out:
            raise UserError(f"{where}: duplicate block ({ident[:60]}) already given above")
        out[key] = Entry(ms, std, 0)
    if not out:
        raise UserError(f"{path}: no measurements after the header")
    return out


def csv_files(path: str | Path) -> list[str]:
    """The `file` column of an imported CSV (empty when it identifies blocks by `key`); call after
    `read_measurements` accepted the file."""
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    header = [h.strip() for h in rows[0]]
    if "file" not in header:
        return []
    i = header.index("file")
    return [row[i].strip() for row in rows[1:] if any(cell.strip() for cell in row)]
