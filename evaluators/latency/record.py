"""The validation record beside a LUT, and what a latency budget may take from it.

`nas lut validate` stores its result as `<lut dir>/<device>.validation-<image size>px.json`, with the LUT's
fingerprint and the calibration it validated. A record counts only while both still match the LUT: a LUT
rebuilt on another fingerprint, or recalibrated, has no validation on record until it is validated again.
A latency budget (`--latency-budget-ms`) compares absolute milliseconds, so it should rely only on a LUT
whose validation is on record; `latency_budget_warning` says, in one line, why a LUT's numbers are not, and
names the repeatability it did measure.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from core.io import write_json
from core.provenance import provenance
from evaluators.latency.predictor import (
    ImportedPredictor,
    MeasuredPredictor,
    Predictor,
    RooflinePredictor,
)
from evaluators.latency.validate import ValidationInfo

SCHEMA = "nas-lut-validation/1"


def record_path(predictor: MeasuredPredictor) -> Path:
    """Where the validation record of this device and image size lives."""
    return predictor.store.dir / f"{predictor.device}.validation-{predictor.image_size}px.json"


def save_record(predictor: MeasuredPredictor, info: ValidationInfo, **extra) -> Path:
    """Store `info` beside the LUT (atomically), with the LUT's fingerprint and validated calibration."""
    record = {"schema": SCHEMA, "fingerprint": predictor.lut.fingerprint, "lut": str(predictor.path),
              "provenance": provenance()} | info.to_dict() | extra
    return write_json(record_path(predictor), record)


def _load(predictor: MeasuredPredictor) -> dict | None:
    try:
        record = json.loads(record_path(predictor).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == SCHEMA else None


def validation_on_record(predictor: Predictor) -> dict | None:
    """The stored validation of this predictor's LUT at its image size, if it still applies.

    Returns:
        The record (`nas lut validate --json`'s fields: `repeatability`, `sources`, `better_source`,
        `at_repeatability_limit`, `summary`, `points`, ... plus `fingerprint`), or None when there is none,
        it is unreadable, or the LUT's fingerprint or calibration changed since. Roofline and imported
        predictors have none (they are not measured end to end here).
    """
    if not isinstance(predictor, MeasuredPredictor):
        return None
    record = _load(predictor)
    calibration = predictor.calibration()
    if record is None or calibration is None:
        return None
    validated = json.loads(json.dumps(asdict(calibration)))  # as the record holds it (lists, not tuples)
    if record.get("fingerprint") != predictor.lut.fingerprint or record.get("calibration") != validated:
        return None
    return record


def block_spread(predictor: MeasuredPredictor) -> float | None:
    """Median relative spread (std / median) of the LUT's block samples within their build, or None."""
    spreads = [e.std_ms / e.ms for e in predictor.lut.entries.values() if e.std_ms == e.std_ms and e.ms > 0]
    return statistics.median(spreads) if spreads else None


def latency_budget_warning(predictor: Predictor) -> str | None:
    """One line to warn with when a latency budget uses this predictor's absolute numbers, or None when its
    validation is on record (then the budget can trust them as far as `validation_on_record` says)."""
    if isinstance(predictor, RooflinePredictor):
        return (f"latency budget on {predictor.device}: roofline ESTIMATES from public peak figures, not "
                "measurements; import the phone's own measurements (nas lut kit / nas lut import) for absolute numbers")
    if isinstance(predictor, ImportedPredictor):
        return (f"latency budget on imported LUT {predictor.device!r}: block sums measured on the device, never "
                "validated end to end there (no calibration); absolute numbers may be off by the overhead between blocks")
    if validation_on_record(predictor) is not None:
        return None
    stale = _load(predictor) is not None
    spread = block_spread(predictor)
    measured = ("" if spread is None else
                f"; the only repeatability measured is its blocks' spread within one build, a median {spread:.1%}")
    reason = "the validation on record was made before the LUT's fingerprint or calibration changed" if stale \
        else "it has no validation on record, so how far its absolute milliseconds repeat was never measured"
    return (f"latency budget on the {predictor.device} LUT at {predictor.image_size}px: {reason}{measured}; run "
            f"`nas lut validate --device {predictor.device} --image-size {predictor.image_size}` to put it on record")
