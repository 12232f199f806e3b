"""The run folder: what a search (or ablation) leaves on disk, and its contract.

Layout of `runs/<name>/`:

    manifest.json        what ran: command, space, objectives, sampler, seed, constraints, storage and
                         study name, latency device + LUT fingerprint, evaluator info, budget, provenance
    study.db             the Optuna study (SQLite) unless --storage named another database
    .driver.lock/.json   the lock a live `nas search` driver holds on the folder, and who holds it
    trials.jsonl         append-only log: one JSON row per trial as it ends (a later line for the same
                         number, e.g. a stale trial settled on resume, replaces the earlier one)
    trials.parquet/.csv  one row per trial (columns: TRIAL_COLUMNS, then one `p_<dimension>` column per
                         design dimension the trial used); written atomically from the study when a run
                         ends or is interrupted; while it runs, `read_trials` reads the log
    trials/<NNNN>/       per-trial artifacts: metrics.json (the row plus the per-block latency breakdown),
                         samples.png (labelled sample grid)
    cache/<key>.json     measured metrics by (arch id, seed, budget hash): a repeated suggestion reuses them
    report.html          the HTML report (`nas report`)
    logs/ray.log         Ray's and Tune's log records of the search's trials (tracebacks of dead workers)
    ablation/            ablation study tables (`nas ablate`)

Contract: the manifest is written once at creation and updated atomically; trials are identified by their
Optuna trial number; a trial row is never duplicated (the table is rebuilt from the study, keyed by number);
opening a folder without a manifest raises UserError. A run folder is portable: everything in it refers to
its own files by relative path (the manifest's `storage` is null for the folder's own `study.db`; an
external database URL is kept as given), so a copied or moved folder resumes into itself.

Manifest formats: 2 (current; relative study file); 1 (absolute SQLite URL of the folder's own study.db,
read as the folder's own study when that file is there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UserError
from core.io import atomic_path, write_json
from core.metrics import names
from core.records import TRIAL_FIELDS, run_manifest, trial_record

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
STUDY_FILE = "study.db"
TRIAL_COLUMNS = (
    "number", "state", "arch_id", "preset", "cached", "params", "macs", "macs_no_attention", "latency_ms",
    *names("quality"), "seconds_train", "seconds_sample", "seconds_score", "seconds_latency", "seconds_total",
    "failure_reason", "sample_grid", "config_json",
)
TRIAL_COLUMNS += tuple(f for f in TRIAL_FIELDS if f not in TRIAL_COLUMNS and f not in ("latency_blocks",
                                                                                      "record_version"))


class RunFolder:
    """A run folder on disk (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------------ paths
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def trials_parquet(self) -> Path:
        return self.path / "trials.parquet"

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def trials_log(self) -> Path:
        return self.path / "trials.jsonl"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    @property
    def ablation_dir(self) -> Path:
        return self.path / "ablation"

    def default_storage(self) -> str:
        """The SQLite URL of the folder's own study file, wherever the folder now is."""
        return f"sqlite:///{(self.path / STUDY_FILE).resolve()}"

    def storage_url(self, manifest: dict[str, Any] | None = None) -> str | None:
        """The study's storage URL: the folder's own study.db (null `storage`; also a format-1 manifest's
        absolute URL of a `study.db` when this folder has one, i.e. a copy made by the previous version),
        else the external URL as given."""
        manifest = self.manifest() if manifest is None else manifest
        url = manifest.get("storage")
        if url is None:
            return self.default_storage() if manifest.get("study_file") else None
        if manifest.get("format") == 1 and url.startswith("sqlite:///") and url.endswith(f"/{STUDY_FILE}") \
                and (self.path / STUDY_FILE).is_file():
            return self.default_storage()
        return url

    def trial_dir(self, number: int) -> Path:
        return self.path / "trials" / f"{number:04d}"

    # ------------------------------------------------------------------ life cycle
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @classmethod
    def open(cls, path: str | Path) -> "RunFolder":
        """An existing run folder; UserError if `path` is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: no such run folder")
        if not run.exists():
            raise UserError(f"{run.path}: not a run folder (no {MANIFEST})")
        run.manifest()  # validates
        return run

    @classmethod
    def create(cls, path: str | Path, manifest: dict[str, Any]) -> "RunFolder":
        run = cls(path)
        if run.exists():
            raise UserError(f"{run.path}: a run folder already exists there (use --resume to continue it)")
        run.write_manifest({"format": FORMAT_VERSION, **manifest})
        return run

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{self.manifest_path}: unreadable run manifest ({err})") from None
        if not isinstance(data, dict):
            raise UserError(f"{self.manifest_path}: not a run manifest (a JSON object is expected)")
        if data.get("format") not in READABLE_FORMATS:
            raise UserError(f"{self.manifest_path}: run manifest format {data.get('format')!r}; this version "
                            f"reads formats {', '.join(map(str, READABLE_FORMATS))}")
        run_manifest(data, str(self.manifest_path))
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        run_manifest(manifest, str(self.manifest_path))
        write_json(self.manifest_path, manifest)

    # ------------------------------------------------------------------ trial records
    def record_path(self, number: int) -> Path:
        return self.trial_dir(number) / "metrics.json"

    def write_trial_record(self, data: dict[str, Any]):
        """Validate `data` as a TrialRecord and write it (atomically) as the trial's metrics.json; returns the
        record. The one writer of trial records: trials, imports and test fixtures all use it."""
        record = trial_record(data, f"trial {data.get('number')}")
        write_json(self.record_path(record.number), record.model_dump(mode="json"))
        return record

    def read_trial_record(self, number: int):
        """The trial's record (None when it wrote none); UserError when metrics.json is unreadable or of
        another record version."""
        path = self.record_path(number)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: unreadable trial record ({err})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a trial record (a JSON object is expected)")
        return trial_record(data, str(path))

    # ------------------------------------------------------------------ trials table
    def read_trials(self) -> pd.DataFrame:
        """The trials table (empty with the standard columns if no trial finished yet); while a run is going
        (its log newer than the table), the finished trials of the log."""
        log, table = self.trials_log, self.trials_parquet
        if log.is_file() and (not table.is_file() or log.stat().st_mtime > table.stat().st_mtime):
            return self._frame(list(self._log_rows().values()))
        if not table.is_file():
            return pd.DataFrame(columns=list(TRIAL_COLUMNS))
        try:
            return pd.read_parquet(table)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise UserError(f"{table}: unreadable trials table ({err})") from None

    def _log_rows(self) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        with self.trials_log.open() as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a crash mid-write: that trial is rebuilt from the study
                    continue
                rows[row["number"]] = row
        return rows

    def append_trial(self, row: dict[str, Any]) -> None:
        """Append one ended trial's row (validated as a TrialRecord) to the log: constant time, whatever the
        run's length."""
        row = trial_record(row, f"trial {row.get('number')}").row()
        line = (json.dumps(row, default=str, sort_keys=True) + "\n").encode()
        with self.trials_log.open("ab+") as f:
            if f.tell() and (f.seek(-1, 2), f.read(1))[1] != b"\n":  # a line a crash cut: end it first
                line = b"\n" + line
            f.write(line)
            f.flush()

    def write_trials(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Write the whole table atomically (Parquet and CSV), standard columns first, sorted by number; every
        row is validated as a TrialRecord first."""
        frame = self._frame([trial_record(r, f"trial {r.get('number')}").row() for r in rows])
        with atomic_path(self.trials_parquet) as tmp:
            frame.to_parquet(tmp, index=False)
        with atomic_path(self.trials_csv) as tmp:
            frame.to_csv(tmp, index=False)
        return frame

    @staticmethod
    def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows)
        for col in TRIAL_COLUMNS:
            if col not in frame.columns:
                frame[col] = None
        extra = sorted(c for c in frame.columns if c not in TRIAL_COLUMNS)
        return frame[list(TRIAL_COLUMNS) + extra].sort_values("number").reset_index(drop=True)

