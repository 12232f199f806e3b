"""Panels of architectures for a fidelity study: `paper`, `random`, `published` (the architectures of the
published outcomes, `nas/ablation/published.json`), or a file of ArchConfigs."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset

NAMED = ("paper", "random", "published")


def paper_panel() -> list[tuple[str, ArchConfig]]:
    """`sd15`, each cumulative step of the registered paper path (the last is `mobilediffusion`), then
    `bk_sdm_tiny`. The first rows are in path order, so consecutive rows are one design change apart."""
    from nas.ablation.paper_steps import PAPER_PATH
    from nas.ablation.step import get_step

    panel = [("sd15", get_preset("sd15"))]
    config = panel[0][1]
    for name in PAPER_PATH:
        config = get_step(name)(config)
        panel.append((name, config))
    panel.append(("bk_sdm_tiny", get_preset("bk_sdm_tiny")))
    return panel


def random_panel(space_name: str, n: int, seed: int) -> list[tuple[str, ArchConfig]]:
    """`n` distinct random samples of the space."""
    from search_spaces.space import get_space

    return [(f"sample_{c.arch_id[:6]}", c) for c in get_space(space_name).sample_random(n, seed)]


def file_panel(path: Path) -> list[tuple[str, ArchConfig]]:
    """ArchConfigs from a file: a JSON list, a JSON object {label: config}, or JSON lines (`nas space sample
    --json`); an entry may be an export holding its config under "config"."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read panel file {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = json.loads(text)
        items = list(data.items()) if isinstance(data, dict) and "levels" not in data else (
            [(None, d) for d in data] if isinstance(data, list) else [(None, data)])
    except json.JSONDecodeError:
        try:
            items = [(None, json.loads(line)) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: neither JSON nor JSON lines ({err})") from None
    panel = []
    for label, data in items:
        if isinstance(data, dict) and "config" in data and "levels" not in data:
            data = data["config"]
        config = ArchConfig.from_dict(data)
        panel.append((label or f"arch_{config.arch_id[:6]}", config))
    return panel


def load_panel(panel: str, space: str = "unet_mobile", n: int = 10, seed: int = 0) -> list[tuple[str, ArchConfig]]:
    """The panel `panel` ("paper", "random", "published" or a file path), with repeated architectures removed.

    Raises:
        UserError: an unknown name that is not a file, or fewer than 3 distinct architectures (a rank
            correlation needs at least 3).
    """
    if panel == "paper":
        chosen = paper_panel()
    elif panel == "random":
        chosen = random_panel(space, n, seed)
    elif panel == "published":
        from nas.ablation.published import load_published

        chosen = load_published().architectures()
    elif Path(panel).is_file():
        chosen = file_panel(Path(panel))
    else:
        raise UserError(f"--panel must be one of {', '.join(NAMED)} or a file of ArchConfigs; {panel!r} is neither")
    distinct: dict[str, tuple[str, ArchConfig]] = {}
    for label, config in chosen:
        distinct.setdefault(config.arch_id, (label, config))
    if len(distinct) < 3:
        raise UserError(f"the panel {panel!r} has {len(distinct)} distinct architecture(s); a rank correlation "
                        "needs at least 3")
    return list(distinct.values())
