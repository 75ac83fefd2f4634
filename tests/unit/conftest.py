"""Unit-tier fixtures: every test runs with private XDG dirs and no OPENCODE_WATCHDOGD_* env from outside."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import structlog

from tests import dbfactory
from tests.isolation import private_env
from watchdogd.journal import Journal


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    dirs = private_env(tmp_path, monkeypatch)
    yield dirs
    # `cli.main` points structlog at the stream of the moment (capsys's, closed after the test)
    structlog.reset_defaults()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """An empty opencode DB (1.15.3 layout, WAL); modules that want rows add them or override this."""
    return dbfactory.make_db(tmp_path / "opencode.db")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "state")
    yield journal
    journal.close()
