"""Integration-tier fixtures. `hermetic_env`: private XDG dirs and no OPENCODE_WATCHDOGD_* env from outside
(opt in with `pytest.mark.usefixtures("hermetic_env")` or by requesting it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for name in list(os.environ):
        if name.startswith("OPENCODE_WATCHDOGD_") or name in ("OPENCODE_DB", "NOTIFY_SOCKET"):
            monkeypatch.delenv(name)
    dirs = {}
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        path = tmp_path / "xdg" / name.split("_")[1].lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(name, str(path))
        dirs[name] = path
    return dirs
