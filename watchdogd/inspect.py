"""Open every configured DB and survey it: shared by `scan`, `reap` and `status`."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.opencode.holders import find_holders
from watchdogd.opencode.store import OpencodeStore
from watchdogd.survey import DBReport, LiveEvidence, survey_db


@contextmanager
def surveyed(settings: Settings, dbs: list[Path], journal: Journal,
             live: LiveEvidence | None = None) -> Iterator[list[tuple[DBReport, OpencodeStore]]]:
    """Reports for all DBs with their stores open; one broken DB never stops the others."""
    stores = [OpencodeStore(path) for path in dbs]
    try:
        holders = find_holders([s.path for s in stores])
        now = datetime.now(UTC)
        yield [(survey_db(s.path, s, holders[s.path], journal, settings, now, live), s) for s in stores]
    finally:
        for store in stores:
            store.close()
