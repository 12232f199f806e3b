"""`nas evaluators check`: JSON keys, cache summary, exit statuses, one-line errors."""

import json
import time

import pytest

from evaluators.quality import factory
from nas.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.mark.slow
def test_check_json_on_a_short_domain_clip(tmp_path, capsys):
    argv = ["evaluators", "check", "--json", "--cache-dir", str(tmp_path), "--train-steps", "30"]
    code, out, err = run(argv, capsys)
    report = json.loads(out)
    assert code == (0 if report["passed"] else 1)
    for key in ("retrieval_top1", "fid_monotone_noise", "fid_monotone_blur", "fid_noise", "fid_blur",
                "kid_noise", "kid_blur", "fid_floor", "fid_mild_blur", "clip_score_real", "clip_score_shuffled"):
        assert key in report
    assert len(report["fid_noise"]) == len(report["noise_levels"]) == 4 and len(report["fid_blur"]) == 4
    assert 0 <= report["retrieval_top1"] <= 1 and isinstance(report["fid_monotone_noise"], bool)
    assert report["evaluator"]["source"] == "domain" and report["evaluator"]["recipe"]["steps"] == 30
    assert "trained in" in err and str(tmp_path) in err
    factory._MEMO.clear()  # as in a new process
    code2, out2, err2 = run(argv, capsys)
    assert "loaded from the cache" in err2
    again = json.loads(out2)
    assert again["retrieval_top1"] == report["retrieval_top1"] and again["fid_blur"] == report["fid_blur"]


@pytest.mark.slow
def test_check_table_output(tmp_path, capsys):
    code, out, err = run(["evaluators", "check", "--cache-dir", str(tmp_path), "--train-steps", "2"],
                         capsys)
    assert code in (0, 1)
    assert "retrieval top-1" in out and "noise" in out and "blur" in out and "feature source: domain" in out
    assert ("passed" in out) == (code == 0)


@pytest.mark.parametrize("argv, message", [
    (["--source", "inception"], "unknown --source 'inception'"),
    (["--image-size", "4"], "--image-size must be at least 8"),
    (["--train-steps", "0"], "must be positive"),
])
def test_check_bad_flags_exit_2_in_one_line(argv, message, capsys, tmp_path):
    code, out, err = run(["evaluators", "check", "--cache-dir", str(tmp_path), *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_standard_source_offline_without_weights_fails_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NAS_INCEPTION_WEIGHTS", raising=False)
    start = time.perf_counter()
    code, out, err = run(["evaluators", "check", "--json", "--source", "standard", "--cache-dir", str(tmp_path)],
                         capsys)
    assert code == 2 and err.count("\n") == 1 and "inception-2015-12-05.pt" in err and out == ""
    assert time.perf_counter() - start < 5
