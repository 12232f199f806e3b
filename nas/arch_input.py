"""Reading the architecture a command works on: `--preset NAME` or `--config FILE`."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from search_spaces.config import ArchConfig
from search_spaces.presets import get_preset


def load_config_file(path: str | Path) -> ArchConfig:
    """An ArchConfig from a JSON file: a bare config, or an export that holds it under "config".

    Raises:
        UserError: unreadable file or invalid JSON. ConfigError: a config that fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read config file {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict) and "config" in data and "levels" not in data:
        data = data["config"]
    return ArchConfig.from_dict(data)


def resolve_arch(preset: str | None, config: Path | None) -> tuple[ArchConfig, str]:
    """The architecture named by exactly one of --preset / --config, and a label for it."""
    if (preset is None) == (config is None):
        raise UserError("give exactly one of --preset NAME or --config FILE")
    if preset is not None:
        return get_preset(preset), f"preset:{preset}"
    return load_config_file(config), str(config)
