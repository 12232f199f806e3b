"""PNG export of the report's figures through kaleido, which drives a Chrome/Chromium binary."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from core.errors import UserError

NO_BROWSER = ("PNG export needs a Chrome/Chromium binary for kaleido and none was found: install one "
              "(Debian: apt-get install -y chromium) or point BROWSER_PATH at it")


def find_browser() -> str | None:
    """The browser kaleido would use: $BROWSER_PATH, one on PATH, or one kaleido downloaded."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return None
    return Chromium.find_browser(skip_local=False)


def check_available() -> None:
    """Raise UserError (saying what to install) unless kaleido and a browser for it are present."""
    try:
        import kaleido  # noqa: F401  (plotly's image engine)
    except ImportError:
        raise UserError("PNG export needs the kaleido package (pip install kaleido)") from None
    if find_browser() is None:
        raise UserError(NO_BROWSER)


def export_pngs(figures: list[tuple[str, go.Figure]], folder: str | Path) -> list[Path]:
    """Write `<figure id>.png` for every figure into `folder`; all of them or none.

    Raises:
        UserError: kaleido or a browser is missing, or the folder cannot be written.
    """
    check_available()
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".png-", dir=folder))
    except OSError as err:
        raise UserError(f"cannot write PNGs into {folder}: {err.strerror or err}") from None
    try:
        names = [f"{fig_id}.png" for fig_id, _ in figures]
        try:
            pio.write_images([fig for _, fig in figures], [staging / n for n in names], scale=1)
        except Exception as err:  # kaleido reports browser failures with its own exception types
            raise UserError(f"PNG export failed: {type(err).__name__}: {err}") from None
        out = []
        for name in names:
            os.replace(staging / name, folder / name)
            out.append(folder / name)
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)
