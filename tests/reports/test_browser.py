"""The report in a real headless Chromium: loads offline with no console errors, every figure renders.

The ablation table in the test is made-up input to check that the section draws (no claim about results).
"""

import base64
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from reports import build_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
COUNT_JS = """(() => {
  const plots = [...document.querySelectorAll('div.js-plotly-plot')];
  return JSON.stringify({
    plots: plots.length,
    rendered: plots.filter(p => p._fullLayout && p.querySelector('.plot-container svg.main-svg')).length,
    ids: plots.filter(p => p._fullLayout && p.querySelector('.plot-container svg.main-svg')).map(p => p.id),
    webgl_canvases: document.querySelectorAll('canvas').length,
    no_webgl: document.body.innerText.includes('WebGL is not supported'),
    images: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
    knee_rows: document.querySelectorAll('#pareto-table tr.knee').length,
    injected: document.querySelectorAll('b').length,
    title: document.title,
  });
})()"""


def _load(devtools, page: Path, n_figures: int, timeout: float = 90.0) -> dict:
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        devtools.call(f"{domain}.enable", session=session)
    devtools.call("Page.navigate", session=session, url=page.resolve().as_uri())
    devtools.wait_event("Page.loadEventFired", timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(devtools.call("Runtime.evaluate", session=session, expression=COUNT_JS,
                                         returnByValue=True)["result"]["value"])
        if state["rendered"] >= n_figures or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    metrics = devtools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = devtools.call("Page.captureScreenshot", session=session, format="png", captureBeyondViewport=True,
                         clip=dict(x=0, y=0, width=metrics["width"], height=metrics["height"], scale=1))
    state["screenshot"] = base64.b64decode(shot["data"])
    return state


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished_run, devtools, tmp_path):
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
    state = _load(devtools, out, len(report.figures))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-screenshot.png").write_bytes(state["screenshot"])

    assert devtools.console_errors() == []
    assert state["plots"] == len(report.figures)
    assert sorted(state["ids"]) == sorted(fig_id for fig_id, _ in report.figures)
    assert not state["no_webgl"] and state["webgl_canvases"] > 0  # the 3-D front and parcoords drew with WebGL
    assert state["images"] == len(info.architectures)  # every sample grid decoded
    assert state["knee_rows"] == 1
    assert state["injected"] == 0  # the caption "<b>green</b>" was escaped, not interpreted
    assert "demo <run> & co" in state["title"]
    assert state["screenshot"][:8] == b"\x89PNG\r\n\x1a\n" and len(state["screenshot"]) > 20_000


@pytest.mark.slow
def test_harness_catches_errors_and_missing_figures(devtools, tmp_path):
    """The checks above can fail: a page that throws and logs errors, with a figure div Plotly never drew."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title></head><body><div class="js-plotly-plot"></div>'
                    '<script>console.error("boom"); null.x;</script></body></html>')
    state = _load(devtools, page, n_figures=1, timeout=3)
    errors = devtools.console_errors()
    assert any("boom" in e for e in errors) and any("TypeError" in e for e in errors)
    assert state["plots"] == 1 and state["rendered"] == 0
