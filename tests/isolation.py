"""Private XDG dirs and no daemon settings inherited from the machine: one implementation for every tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

XDG = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")


def private_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drop_prefix: str = "OPENCODE_WATCHDOGD_",
    drop: tuple[str, ...] = ("OPENCODE_DB", "NOTIFY_SOCKET", "JOURNAL_STREAM", "DBUS_SESSION_BUS_ADDRESS"),
) -> dict[str, Path]:
    for name in list(os.environ):
        if name.startswith(drop_prefix) or name in drop:
            monkeypatch.delenv(name)
    dirs = {}
    for name in XDG:
        path = tmp_path / "xdg" / name.split("_")[1].lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(name, str(path))
        dirs[name] = path
    return dirs
