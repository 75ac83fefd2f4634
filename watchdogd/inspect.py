"""Open every configured DB and survey it: shared by `scan`, `reap` and `status`."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.live_evidence import build_live
from watchdogd.opencode.holders import find_holders
from watchdogd.opencode.store import OpencodeStore
from watchdogd.opencode.writegate import WriteRules
from watchdogd.models import DBReport
from watchdogd.survey import survey_db


@dataclass
class Surveyed:
    reports: list[tuple[DBReport, OpencodeStore]]
    live: object | None  # survey.LiveEvidence + reaper.LiveRecovery, or None


@contextmanager
def surveyed(settings: Settings, dbs: list[Path], journal: Journal) -> Iterator[Surveyed]:
    """Reports for all DBs with their stores open; one broken DB never stops the others."""
    stores = [OpencodeStore(path, rules=WriteRules.from_settings(settings)) for path in dbs]
    try:
        holders = find_holders([s.path for s in stores], trust_pid_namespace=settings.watch.trust_pid_namespace)
        live = build_live(settings, dbs)
        now = datetime.now(UTC)
        yield Surveyed([(survey_db(s.path, s, holders[s.path], journal, settings, now, live), s) for s in stores], live)
    finally:
        for store in stores:
            store.close()
