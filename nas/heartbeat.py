"""Trial heartbeats in the Optuna storage, so a trial is settled as stale only when its driver is provably gone.

Optuna records heartbeats itself only inside `study.optimize`; a search driven by Ray Tune's `OptunaSearch`
asks and tells instead, so the driver records them here with the storage's own `record_heartbeat`, and
Optuna's `_get_stale_trial_ids` (what `optuna.storages.fail_stale_trials` uses) finds the trials whose
driver stopped beating. Each trial carries its driver's id as the user attribute `driver`.
"""

from __future__ import annotations

import threading
import warnings

import optuna

HEARTBEAT_INTERVAL = 10  # seconds between a live driver's heartbeats
GRACE_PERIOD = 60  # a RUNNING trial whose heartbeat is older than this belongs to a gone driver
DRIVER_ATTR = "driver"


def heartbeat_storage(url: str, **kwargs) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats enabled (interval and grace period above)."""
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 (and stable since 2.9)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                                          **kwargs)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """Storage ids of RUNNING trials whose heartbeat is older than the grace period (Optuna's own rule)."""
    storage = study._storage
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return []
    return storage._get_stale_trial_ids(study._study_id)


class Heartbeat(threading.Thread):
    """Beats for every RUNNING trial of `driver` in `study` every HEARTBEAT_INTERVAL seconds until stopped."""

    def __init__(self, study: optuna.Study, driver: str) -> None:
        super().__init__(name="nas-heartbeat", daemon=True)
        self.study, self.driver = study, driver
        self._stop_event = threading.Event()

    def beat(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get(DRIVER_ATTR) == self.driver:
                self.study._storage.record_heartbeat(t._trial_id)

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_INTERVAL):
            try:
                self.beat()
            except Exception:  # a busy or briefly unreachable database: the next beat retries
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=HEARTBEAT_INTERVAL)
