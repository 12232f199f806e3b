"""The published-panel agreement on record: the shipped entry a default search finds, the user's own first."""

from core import agreement_record
from evaluators.training import Budget
from evaluators.training.proxy_mode import SEARCH_STEPS, budget_hash


def test_a_default_search_budget_finds_the_shipped_agreement(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))  # no user record
    entry = agreement_record.on_record(budget_hash(Budget(steps=SEARCH_STEPS)))
    assert entry is not None and entry["record"] == str(agreement_record.SHIPPED) and entry["regime"] == "fast"
    grid = entry["signals"]["val_loss_grid"]
    assert grid["measured"] + grid["missing"] == 16 and len(grid["misses"]) == grid["measured"] - grid["agree"]
    line = agreement_record.summary(entry, "val_loss_grid")
    assert f"on {grid['agree']} of {grid['measured']} measured outcomes" in line and "125 steps" in line
    assert agreement_record.on_record("0000000000") is None
    assert agreement_record.summary(None, "fid").startswith("not measured for this budget")


def test_the_users_record_comes_first_and_a_damaged_one_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    key = budget_hash(Budget(steps=SEARCH_STEPS))
    mine = dict(signals=dict(fid=dict(signal="fid", agree=1, measured=2, harm_agree=1, missing=0, misses=["x"])))
    path = agreement_record.record(key, mine)
    assert path.parent == tmp_path and agreement_record.on_record(key)["record"] == str(path)
    assert "not the paper's call: x" in agreement_record.summary(agreement_record.on_record(key), "fid")
    path.write_text("{damaged")
    assert agreement_record.on_record(key)["record"] == str(agreement_record.SHIPPED)
