"""The rendered page: self-contained, plotly.js once, user strings escaped, one figure per drawn section."""

import re

from plotly.offline import get_plotlyjs

from reports import build_report


def test_page_is_self_contained_and_escaped(finished_run, tmp_path):
    out = tmp_path / "r.html"
    path, report, info = build_report(finished_run.path, out)
    text = out.read_text()
    assert path == out and text == report.html
    assert text.count(get_plotlyjs()[:200]) == 1  # plotly.js embedded exactly once
    assert not re.search(r"<script[^>]+src=", text) and "http://" not in text.split("<script>", 1)[0]
    assert "demo &lt;run&gt; &amp; co" in text and "demo <run>" not in text
    assert "a small &lt;b&gt;green&lt;/b&gt; triangle &amp; friends" in text and "<b>green</b>" not in text
    assert text.count('<img alt="samples of trial') == len(info.architectures)
    ids = [fig_id for fig_id, _ in report.figures]
    assert ids[:3] == ["front-0", "front-1", "front-3d"] and "hypervolume" in ids
    assert [i for i in ids if i.startswith("parallel-")] == [f"parallel-{k}" for k in range(len(info.parallel.groups))]
    assert "importances" not in ids and "No importances: they need at least 41" in text  # 12 complete trials
    assert 'id="design-table"' in text and text.count("<li><strong>trial ") == len(info.pareto.rows)
    assert "not qualified by seed spread (single seed)" in text
    assert sum(i.startswith("latency-") for i in ids) == len(info.architectures)
    assert all(f'id="{i}"' in text for i in ids)
    assert "ESTIMATE" in text and 'class="knee"' in text


def test_default_output_is_the_run_report(two_objective_run):
    path, report, _ = build_report(two_objective_run.path)
    assert path == two_objective_run.report_path and path.read_text() == report.html
    assert "front-3d" not in [fig_id for fig_id, _ in report.figures]


def test_measured_latency_says_whether_it_is_calibrated(finished_run, tmp_path):
    import shutil

    from core.run_folder import RunFolder

    for calibrated, label in ((False, "sums of block latencies, uncalibrated"), (True, "end-to-end calibration")):
        copy = RunFolder(shutil.copytree(finished_run.path, tmp_path / str(calibrated)))
        manifest = copy.manifest()
        manifest["latency"] = {"device": "cpu", "image_size": 512, "estimate": False, "calibrated": calibrated,
                               "fingerprint": {"backend": "cpu", "threads": 1}}
        copy.write_manifest(manifest)
        text = build_report(copy.path, tmp_path / f"{calibrated}.html")[1].html
        assert label in text and "ESTIMATE (roofline" not in text
