"""Integration-tier fixtures. `hermetic_env`: private XDG dirs and no OPENCODE_WATCHDOGD_* env from outside
(opt in with `pytest.mark.usefixtures("hermetic_env")` or by requesting it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.daemonproc import DaemonProcess
from tests.isolation import private_env


@pytest.fixture
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return private_env(tmp_path, monkeypatch)


@pytest.fixture
def daemons():
    """`daemons(...)` starts a DaemonProcess; every one started is stopped at teardown."""
    started: list[DaemonProcess] = []

    def start(*args, **kwargs) -> DaemonProcess:
        proc = DaemonProcess(*args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
