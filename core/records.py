"""Typed, versioned records of a run folder: what one trial produced, and the run's manifest.

One writer and one reader each (`core.run_folder.RunFolder.write_trial_record` / `read_trial_record`, and
`write_manifest` / `manifest`); the trials table, reports, export, ablation, fidelity and the test fixtures all
go through them. Validation is pydantic's: a field of the wrong type, or a record of another schema version,
is one clear error instead of a KeyError deep in a report.

The metric fields of `TrialRecord` are generated from the metric registry (`core.metrics.METRICS`), so adding a
metric adds its field here without touching this file.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from core.errors import UserError
from core.metrics import METRICS

RUN_KINDS = ("search", "ablation", "fidelity")  # what made a run folder: nas search, nas ablate, nas fidelity
TRIAL_SCHEMA = 1  # version of TrialRecord (metrics.json and the rows of the trials table)

# Every state a trial row can be in. COMPLETE / FAIL / INFEASIBLE are final results of an evaluation; STOPPED
# is a trial a scheduler stopped at a rung (its values are the rung's, never complete); RUNNING is a trial in
# progress (its metrics.json between rungs); INTERRUPTED / STALE are trials the driver settled (Ctrl-C, a dead
# driver); PRUNED / WAITING come from the study; MISSING is a planned job with no result yet (fidelity).
State = Literal["COMPLETE", "FAIL", "INFEASIBLE", "STOPPED", "RUNNING", "INTERRUPTED", "STALE", "PRUNED",
                "WAITING", "MISSING"]


class RungReport(BaseModel):
    """One intermediate report of a trial: the training step it was measured at, the recent training loss,
    and the held-out signals (registry metric names) of the weights at that step."""

    model_config = ConfigDict(extra="allow")

    step: int = Field(ge=0)
    train_loss: float | None = None


class _TrialBase(BaseModel):
    """The fields every trial record has; the registry's metrics are added by `create_model` below. Extra
    fields are kept: the design parameters (`p_<dimension>`), where the trial ran, evaluator details."""

    model_config = ConfigDict(extra="allow")

    record_version: int = TRIAL_SCHEMA
    number: int = Field(ge=0)
    state: State
    arch_id: str | None = None
    preset: str = ""
    seed: int | None = None
    cache_key: str | None = None
    cached: bool = False
    config_json: str | None = None
    failure_reason: str | None = None
    macs_no_attention: float | None = None
    steps: int | None = None  # training steps the proxy ran
    proxy_params: int | None = None
    proxy_scale: str | None = None  # the named proxy regime of the budget (`--proxy-scale`), or "custom"
    seconds_total: float | None = None
    sample_grid: str | None = None  # path of the sample grid PNG, relative to the run folder
    sample_captions: list[str] = Field(default_factory=list)  # captions of the grid's samples, in order
    rungs: list[RungReport] = Field(default_factory=list)  # intermediate reports, in step order
    stopped_at_step: int | None = None  # the rung a scheduler stopped the trial at
    stop_reason: str | None = None  # why the scheduler stopped it (e.g. its non-dominated rank at the rung)
    resumed_from: int | None = None  # the interrupted trial whose rung state this one continued
    resumed_at_step: int | None = None  # the training step it continued from
    latency_blocks: list[dict[str, Any]] = Field(default_factory=list)  # per-block latency (metrics.json only)
    # the parts of image_latency_ms (when trials predict it): the text encoder's and the decoder's milliseconds
    # per image, and the UNet calls per image (steps x 2 with classifier-free guidance)
    text_encoder_ms: float | None = None
    unet_calls: int | None = None
    decoder_ms: float | None = None

    @field_validator("record_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != TRIAL_SCHEMA:
            raise ValueError(f"trial record version {v}; this version reads version {TRIAL_SCHEMA}")
        return v

    @field_validator("preset", "cached", mode="before")
    @classmethod
    def _default_for_none(cls, v: Any, info) -> Any:  # a missing table cell (None / NaN) is the default
        if v is None or (isinstance(v, float) and v != v):
            return "" if info.field_name == "preset" else False
        return v

    @field_validator("rungs", "sample_captions", mode="before")
    @classmethod
    def _list_from_text(cls, v: Any) -> Any:  # a table cell holds the list as one JSON text (NaN: empty)
        if v is None or (isinstance(v, float) and v != v):
            return []
        return json.loads(v) if isinstance(v, str) else v

    def row(self) -> dict[str, Any]:
        """The trials-table row: every field but the per-block latency, the history as one JSON text."""
        out = self.model_dump(exclude={"latency_blocks", "record_version"})
        out["rungs"] = json.dumps(out["rungs"]) if out["rungs"] else None
        out["sample_captions"] = json.dumps(out["sample_captions"]) if out["sample_captions"] else None
        return out


TrialRecord = create_model(
    "TrialRecord", __base__=_TrialBase, __doc__="What one evaluation of one architecture produced.",
    **{name: (int | float | None, None) for name in METRICS},  # counts stay integers (params), values floats
)
TRIAL_FIELDS = tuple(TrialRecord.model_fields)


def trial_record(data: dict[str, Any], source: str = "trial record") -> _TrialBase:
    """`data` validated as a TrialRecord; UserError naming `source` and the first bad field otherwise."""
    try:
        return TrialRecord.model_validate(_no_nan(data))
    except ValidationError as err:
        raise _user_error(err, source) from None


def run_manifest(data: dict[str, Any], source: str = "manifest") -> "RunManifest":
    """`data` validated as a RunManifest; UserError naming `source` and the first bad field otherwise."""
    try:
        return RunManifest.model_validate(data)
    except ValidationError as err:
        raise _user_error(err, source) from None


def _user_error(err: ValidationError, source: str) -> UserError:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return UserError(f"{source}: {where + ': ' if where else ''}{first['msg']}")


def _no_nan(data: dict[str, Any]) -> dict[str, Any]:
    """Table cells read back from Parquet hold NaN for a missing value; a record holds None."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in data.items()}


class ObjectiveSpec(BaseModel):
    name: str
    direction: Literal["minimize", "maximize"]

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}")
        return v


class RunManifest(BaseModel):
    """manifest.json: what ran. Typed where every run kind agrees; the rest (evaluator, latency, budget,
    provenance, kind-specific plans) is kept as written. `format` is the run folder's schema version."""

    model_config = ConfigDict(extra="allow")

    format: int
    kind: str = "search"
    command: str | list[str] | None = None
    objectives: list[ObjectiveSpec] = Field(default_factory=list)
    storage: str | None = None
    study_file: str | None = None
    study_name: str | None = None
    seed: int | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in RUN_KINDS:
            raise ValueError(f"unknown run folder kind {v!r} (known: {', '.join(RUN_KINDS)})")
        return v
