"""Shared helpers for the unit tier: settings, one scan pass, one reap pass (both the real pipeline)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.passes import look, one_pass
from watchdogd.config import BackupConfig, PolicyConfig, Settings
from watchdogd.journal import Journal
from watchdogd.models import ActionResult, DBReport, Holder
from watchdogd.opencode.store import OpencodeStore


def make_settings(tmp_path: Path, *, backup: dict[str, Any] | None = None, **policy: Any) -> Settings:
    policy.setdefault("orphan_grace", 0)
    return Settings(
        state_dir=tmp_path / "state", policy=PolicyConfig(**policy), backup=BackupConfig(**(backup or {}))
    )


def survey(
    db: Path,
    journal: Journal,
    settings: Settings,
    holders: list[Holder] | None = None,
    now: datetime | None = None,
) -> tuple[DBReport, OpencodeStore]:
    """One `scan` pass (the pipeline's) over one DB; the caller closes the store."""
    return look(db, journal, settings, holders, now=now)


def repair_all(
    db: Path, journal: Journal, settings: Settings, holders: list[Holder] | None = None
) -> list[ActionResult]:
    """One `reap` pass (the pipeline's) over one DB (no live layer)."""
    return list(one_pass(db, journal, settings, holders).outcomes)
