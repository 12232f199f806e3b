"""The proxy fidelity on record: the user's record over the shipped one, and its one-line summary."""

from __future__ import annotations

import json

from core import fidelity_record
from core.cache import CACHE_ENV


def _entry(**metric):
    return dict(panel="paper", reference="2000 steps, 16 px, width / 16", created="2026-12-02", metrics=dict(
        val_loss_grid=dict(tau=0.5, tau_low=0.0, tau_high=0.92, rho=0.74, n=10, ceiling_short_tau=0.16,
                           seed_sd_short=0.0012, seconds_short=649) | metric))


def test_user_record_wins_and_summary_names_the_target(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert fidelity_record.on_record("nohash", "noeval") is None
    assert "not measured" in fidelity_record.summary(None, "fid")
    path = fidelity_record.record("h", "ev", _entry(target="fid", target_tau=0.57, target_tau_low=0.14,
                                                    target_tau_high=0.9))
    assert path.parent == tmp_path and json.loads(path.read_text())["h:ev"]["panel"] == "paper"
    entry = fidelity_record.on_record("h", "ev")
    assert entry["record"] == str(path)
    line = fidelity_record.summary(entry, "val_loss_grid")
    assert line.startswith("Kendall tau 0.50 [0.00, 0.92] against 2000 steps") and "seed ceiling 0.16" in line
    assert "against the reference's fid: tau 0.57 [0.14, 0.90]" in line
    # an entry recorded before the target columns existed reads as before
    fidelity_record.record("h", "ev", _entry())
    assert "reference's" not in fidelity_record.summary(fidelity_record.on_record("h", "ev"), "val_loss_grid")
    assert "has no value" in fidelity_record.summary(entry, "cmmd")


def test_brief_says_whether_the_interval_settles_the_ranking():
    entry = _entry() | {"metrics": {"fid": dict(tau=-0.38, tau_low=-0.89, tau_high=0.21),
                                    "val_loss_grid": dict(tau=0.6, tau_low=0.13, tau_high=0.9)}}
    assert fidelity_record.brief(entry, "fid") == "tau -0.38 [-0.89, 0.21], interval includes 0"
    assert fidelity_record.brief(entry, "val_loss_grid") == "tau 0.60 [0.13, 0.90]"
    assert fidelity_record.brief(entry, "cmmd") == fidelity_record.brief(None, "fid") == "not measured"
