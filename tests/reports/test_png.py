"""PNG export of the report's figures with kaleido (needs a Chrome/Chromium binary)."""

import pytest
from PIL import Image

from core.errors import UserError
from reports import build_report, png

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a headless Chromium (tiers: pyproject.toml)


@pytest.mark.slow
def test_png_export_writes_every_figure(two_objective_run, tmp_path):
    if png.find_browser() is None:
        pytest.skip("no Chrome/Chromium for kaleido (apt-get install -y chromium)")
    _, report, _ = build_report(two_objective_run.path, tmp_path / "r.html")
    written = png.export_pngs(report.figures, tmp_path / "png")
    assert sorted(p.name for p in written) == sorted(f"{fig_id}.png" for fig_id, _ in report.figures)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(p.name for p in written)  # no staging left
    for path in written:
        assert Image.open(path).size[0] >= 600


def test_png_export_without_browser_says_so(two_objective_run, tmp_path, monkeypatch):
    monkeypatch.setattr(png, "find_browser", lambda: None)  # a machine with no Chrome/Chromium installed
    _, report, _ = build_report(two_objective_run.path, tmp_path / "r.html")
    with pytest.raises(UserError, match="needs a Chrome/Chromium binary .* apt-get install -y chromium"):
        png.export_pngs(report.figures, tmp_path / "png")
    assert not (tmp_path / "png").exists()
