"""One pass of the real pipeline over one DB, for tests of every tier (watchdogd/pipeline.py does the work).

Tests give the evidence a test controls: the holders (never /proc), the live servers (none unless given)
and the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from watchdogd.config import Settings
from watchdogd.databases import WatchedDBs
from watchdogd.journal import Journal
from watchdogd.models import DBReport, Holder, PassResult
from watchdogd.opencode.store import OpencodeStore
from watchdogd.pipeline import PassContext, PassOptions, run_pass


def context(
    settings: Settings,
    journal: Journal,
    holders: list[Holder] | None = None,
    live=None,
    now: datetime | None = None,
    **more,
) -> PassContext:
    at = now or datetime.now(UTC)
    return PassContext(
        settings,
        journal,
        holders=lambda paths: {p: list(holders or []) for p in paths},
        live=lambda: live,
        now=lambda: at,
        **more,
    )


def open_dbs(db: Path, settings: Settings) -> WatchedDBs:
    dbs = WatchedDBs()
    dbs.sync([db], settings, announce=False)
    return dbs


def one_pass(
    db: Path,
    journal: Journal,
    settings: Settings,
    holders: list[Holder] | None = None,
    live=None,
    now: datetime | None = None,
    *,
    act: bool = True,
    dry_run: bool = False,
    **more,
) -> PassResult:
    """A `reap` pass (or with act=False a `scan` pass) over one DB, as the CLI runs it."""
    dbs = open_dbs(db, settings)
    try:
        return run_pass(
            context(settings, journal, holders, live, now, **more), dbs, PassOptions(act, dry_run)
        )
    finally:
        dbs.close()


def look(
    db: Path,
    journal: Journal,
    settings: Settings,
    holders: list[Holder] | None = None,
    live=None,
    now: datetime | None = None,
) -> tuple[DBReport, OpencodeStore]:
    """A `scan` pass over one DB; its store stays open (close it) for a test that acts on the report."""
    dbs = open_dbs(db, settings)
    run_pass(context(settings, journal, holders, live, now), dbs, PassOptions(act=False))
    [watched] = dbs.values()
    if watched.store is None:
        watched.store = OpencodeStore(db)
    return watched.report, watched.store
