"""Shared helpers for the unit tier: settings, one survey pass, one repair pass."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdogd.config import BackupConfig, PolicyConfig, Settings
from watchdogd.journal import Journal
from watchdogd.models import Holder
from watchdogd.opencode.store import OpencodeStore
from watchdogd.reaper import Outcome, Reaper
from watchdogd.survey import DBReport, survey_db


def make_settings(tmp_path: Path, *, backup: dict[str, Any] | None = None, **policy: Any) -> Settings:
    policy.setdefault("orphan_grace", 0)
    return Settings(state_dir=tmp_path / "state", policy=PolicyConfig(**policy), backup=BackupConfig(**(backup or {})))


def survey(db: Path, journal: Journal, settings: Settings, holders: list[Holder] | None = None,
           now: datetime | None = None) -> tuple[DBReport, OpencodeStore]:
    store = OpencodeStore(db)
    return survey_db(db, store, holders or [], journal, settings, now or datetime.now(UTC)), store


def repair_all(db: Path, journal: Journal, settings: Settings, holders: list[Holder] | None = None) -> list[Outcome]:
    """One `reap` pass over one DB (no live layer)."""
    report, store = survey(db, journal, settings, holders)
    try:
        return Reaper(settings, journal).reap(report, store)
    finally:
        store.close()
