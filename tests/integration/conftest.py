"""Integration-tier fixtures. `hermetic_env`: private XDG dirs and no OPENCODE_WATCHDOGD_* env from outside
(opt in with `pytest.mark.usefixtures("hermetic_env")` or by requesting it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.isolation import private_env


@pytest.fixture
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return private_env(tmp_path, monkeypatch)
