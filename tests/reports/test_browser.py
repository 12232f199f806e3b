"""Every kind of report in a real headless Chromium: loads offline with no console errors, every figure renders.

The ablation table in the first test is made-up input to check that the section draws (no claim about results).
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports import build_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a headless Chromium (tiers: pyproject.toml)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _save(name: str, state: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(state["screenshot"])


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished_run, load_page, devtools, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run.path, run)
    (run / "ablation").mkdir()
    pd.DataFrame({"step": ["sd15", "no_self_attention_64", "relu_attention"], "mode": ["cumulative"] * 3,
                  "params": [859520964, 845000000, 845000000], "latency_ms": [1001.3, 930.0, 921.0],
                  "fid": [14.3, 14.9, 14.7], "fid_ci": [0.4, 0.5, 0.45], "clip_score": [0.318, 0.316, 0.317],
                  "clip_score_ci": [0.002, 0.003, 0.002]}).to_csv(run / "ablation" / "steps.csv", index=False)
    out = tmp_path / "report.html"
    _, report, info = build_report(run, out)
    ids = [fig_id for fig_id, _ in report.figures]
    assert "ablation-0-0" in ids and "ablation-0-1" in ids  # latency and FID waterfalls
    assert "importances" not in ids  # 12 complete trials: below the threshold
    state = load_page(out, len(report.figures))
    _save("report-screenshot.png", state)

    assert devtools.console_errors() == [] and devtools.webgl_contexts_lost() == 0
    assert state["plots"] == len(report.figures)
    assert sorted(state["ids"]) == sorted(fig_id for fig_id, _ in report.figures)
    assert not state["no_webgl"] and state["webgl_canvases"] > 0  # the 3-D front drew with WebGL
    assert state["images"] == len(info.architectures)  # every sample grid decoded
    assert state["knee_rows"] == 1
    assert state["injected"] == 0  # the caption "<b>green</b>" was escaped, not interpreted
    assert "demo <run> & co" in state["title"]
    assert "No importances: they need at least 41 complete trials and this run has 12" in state["text"]
    assert "within seed spread" in state["text"]  # ablation deltas smaller than their intervals are labelled
    assert state["screenshot"][:8] == b"\x89PNG\r\n\x1a\n" and len(state["screenshot"]) > 20_000


@pytest.mark.slow
def test_report_above_the_importance_threshold_renders(large_run, load_page, devtools, tmp_path):
    out = tmp_path / "large.html"
    _, report, info = build_report(large_run.path, out)
    ids = [fig_id for fig_id, _ in report.figures]
    assert "importances" in ids and [i for i in ids if i.startswith("parallel-")] == [
        f"parallel-{k}" for k in range(len(info.parallel.groups))]
    state = load_page(out, len(report.figures))
    _save("report-large-screenshot.png", state)
    assert devtools.console_errors() == [] and devtools.webgl_contexts_lost() == 0
    assert sorted(state["ids"]) == sorted(ids)
    assert "bootstrap resamples" in state["text"] and "What each front member changed" in state["text"]


@pytest.mark.slow
def test_ablation_report_renders(ablation_run, load_page, devtools, tmp_path):
    out = tmp_path / "ablation.html"
    _, report, info = build_report(ablation_run.path, out)
    state = load_page(out, len(report.figures))
    _save("report-ablation-screenshot.png", state)
    assert devtools.console_errors() == []
    assert len(report.figures) >= 3 and sorted(state["ids"]) == sorted(f for f, _ in report.figures)
    assert state["images"] == len(info.samples) > 0
    assert "Ablation report" in state["title"] and "relu_attention" in state["text"]
    assert "better" in state["text"] or "worse" in state["text"]


@pytest.mark.slow
def test_fidelity_report_renders(fidelity_run, load_page, devtools, tmp_path):
    out = tmp_path / "fidelity.html"
    _, report, info = build_report(fidelity_run.path, out)
    state = load_page(out, len(report.figures))
    _save("report-fidelity-screenshot.png", state)
    assert devtools.console_errors() == []
    assert [f for f, _ in report.figures] == ["fidelity-scatter"] and state["ids"] == ["fidelity-scatter"]
    assert "Kendall tau" in state["text"] and info.agreements[0].reading in state["text"]


@pytest.mark.slow
def test_harness_catches_errors_and_missing_figures(load_page, devtools, tmp_path):
    """The checks above can fail: a page that throws and logs errors, with a figure div Plotly never drew."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title></head><body><div class="js-plotly-plot"></div>'
                    '<script>console.error("boom"); null.x;</script></body></html>')
    state = load_page(page, n_figures=1, timeout=3)
    errors = devtools.console_errors()
    assert any("boom" in e for e in errors) and any("TypeError" in e for e in errors)
    assert state["plots"] == 1 and state["rendered"] == 0


@pytest.mark.slow
def test_harness_catches_lost_webgl_contexts(load_page, devtools, tmp_path):
    """More WebGL figures than the browser keeps contexts for: the oldest goes blank without an error."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    divs = "".join(go.Figure(go.Scatter3d(x=[0, 1], y=[0, 1], z=[0, 1])).to_html(full_html=False, include_plotlyjs=False)
                   for _ in range(20))
    page = tmp_path / "many.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{get_plotlyjs()}</script></head><body>{divs}</body></html>")
    load_page(page, n_figures=20)
    assert devtools.webgl_contexts_lost() > 0
