"""Where opencode keeps its files: XDG base directories, resolved the way opencode resolves them."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(name: str, fallback: str) -> Path:
    value = os.environ.get(name)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def opencode_data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "opencode"


def opencode_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "opencode"
