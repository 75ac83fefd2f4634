"""One pass over the watched DBs, the same for the daemon, the CLI verbs and the tests.

Fixed stages, each fact computed once and carried forward on the report and its assessments:

    read      the tracker of each DB (the daemon's is incremental; a CLI verb's first refresh is a full scan)
    gate      once per DB: schema verdict and write refusal (the store keeps its own last guard)
    evidence  once: holders of every DB with candidates, one live-server view, sessions, queued prompts
    judge     verdicts and plans (pure: watchdogd/assess.py, watchdogd/policy.py)
    reconcile journal rows an interrupted run left `planned`
    act       the reaper dispatches each planned route to its action (not for `scan`)
    record    this pass's sightings in the journal

`run_pass` returns a `PassResult`: the reports, the outcomes, the next deadline and the servers seen.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from watchdogd.assess import Evidence, LiveEvidence, gather, judge, sightings, with_sessions
from watchdogd.backoff import BackoffBook
from watchdogd.clock_steps import recall, remember
from watchdogd.config import Settings
from watchdogd.databases import WatchedDB, WatchedDBs
from watchdogd.journal import Journal, JournalError
from watchdogd.live_evidence import build_live
from watchdogd.live_recovery import LiveRecovery
from watchdogd.models import ActionResult, Candidate, DBReport, Decision, Holder, PassResult, ServerSeen
from watchdogd.opencode.holders import find_holders
from watchdogd.opencode.process_start import WALL_CLOCK
from watchdogd.opencode.rows import BadRow, SessionInfo
from watchdogd.opencode.store import StoreError
from watchdogd.opencode.writegate import write_refusal
from watchdogd.reaper import Reaper
from watchdogd.reconcile import reconcile

MISSING = "database does not exist (yet)"
DEADLINE_SLACK = timedelta(milliseconds=50)  # a pass a little after a deadline finds the part already expired


@dataclass(frozen=True)
class PassOptions:
    """What kind of pass: `scan` only looks; `reap` and the daemon act (a dry run acts in words only)."""

    act: bool = True
    dry_run: bool = False
    everything: bool = True  # False (the daemon on plain commits): read only `changed` and dirty DBs
    changed: frozenset[Path] = frozenset()


@dataclass
class PassContext:
    """What a pass works with; the defaults are the real ones (tests give holders, live servers, a clock)."""

    settings: Settings
    journal: Journal
    holders: Callable[[list[Path]], dict[Path, list[Holder]]] | None = None
    live: Callable[[], LiveEvidence | None] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    stopping: Callable[[], bool] = lambda: False  # checked between actions: a stop never starts a new write
    told: set[tuple[str, str, str]] | None = None  # report-only parts already logged (the daemon keeps it)
    backoffs: BackoffBook = field(default_factory=BackoffBook)  # parts retried later (the daemon keeps it)
    log: object = field(default_factory=lambda: structlog.get_logger("watchdogd"))

    def find_holders(self, paths: list[Path]) -> dict[Path, list[Holder]]:
        if self.holders is not None:
            return self.holders(paths)
        recall(self.settings.state_dir, WALL_CLOCK)  # steps an earlier process of this boot saw
        found = find_holders(paths, trust_pid_namespace=self.settings.watch.trust_pid_namespace)
        remember(self.settings.state_dir, WALL_CLOCK)
        return found

    def live_evidence(self) -> LiveEvidence | None:
        return self.live() if self.live is not None else build_live(self.settings)


@dataclass
class _Due:
    """A DB whose candidates this pass evaluates."""

    watched: WatchedDB
    candidates: list[Candidate]
    bad: list[BadRow]
    report: DBReport | None = None
    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)


def run_pass(ctx: PassContext, dbs: WatchedDBs, options: PassOptions = PassOptions()) -> PassResult:
    """One pass over `dbs` (already synced with the paths to watch); one broken DB never stops the others."""
    started, clock = ctx.now(), time.monotonic()
    due = [d for d in (_read(w, options, ctx) for w in _looked_at(dbs, options)) if d is not None]
    live = _evidence(ctx, due)
    ok, outcomes = True, []
    if options.act and not options.dry_run and due:
        reconcile(ctx.journal, {d.watched.path: d.watched.store for d in due})
    reaper = Reaper(
        ctx.settings,
        ctx.journal,
        dry_run=options.dry_run,
        stopping=ctx.stopping,
        log=ctx.log,
        live=LiveRecovery(live, ctx.settings.live) if live is not None else None,
        backed_up=dbs.backed_up,
        told=ctx.told,
        backoffs=ctx.backoffs,
        now=ctx.now,
    )
    for item in due:
        try:
            outcomes += _judge_act_record(ctx, item, reaper if options.act else None, started)
        except (JournalError, StoreError) as exc:
            item.watched.dirty, ok = True, False
            ctx.log.error("pass incomplete", db=str(item.watched.path), error=str(exc))
    reports = tuple(w.report for w in dbs.values() if w.report is not None)
    servers = tuple(ServerSeen(url, version) for url, version in live.servers_reached()) if live else ()
    return PassResult(
        started,
        time.monotonic() - clock,
        ok,
        bool(due),
        reports,
        tuple(outcomes),
        _earliest(next_deadline(reports), ctx.backoffs.next_retry(ctx.now())),
        servers,
    )


def _looked_at(dbs: WatchedDBs, options: PassOptions) -> Iterable[WatchedDB]:
    if options.everything:
        return list(dbs.values())
    # A pass for commits reads only the DBs that had them: its cost does not grow with the DBs watched.
    return [w for p, w in dbs.items() if p in options.changed or w.dirty]


def _read(watched: WatchedDB, options: PassOptions, ctx: PassContext) -> _Due | None:
    """Refresh one DB's tracker and gate it; the DB is due when its rows changed (or must be looked at again).

    One DB at a time: a DB with nothing running lets go of its files before the next one is read (see
    WatchedDB.release), so a pass over hundreds of DBs holds only those with candidates open."""
    due = _refresh(watched, options, ctx)
    if due is not None:
        _gate(due)
    if due is None or not due.candidates:  # the rest of the pass does not read this DB
        watched.release()
    return due


def _refresh(watched: WatchedDB, options: PassOptions, ctx: PassContext) -> _Due | None:
    if watched.tracker is None:
        watched.report = DBReport(watched.path, error=MISSING)
        return None
    try:
        cands, bad, _mode = watched.tracker.refresh()
        ctx.backoffs.keep_only(str(watched.path), {c.part_id for c in cands})  # a part no longer running
    except StoreError as exc:
        said = watched.report.error if watched.report is not None else None
        watched.report = DBReport(watched.path, error=_unreadable(watched, exc))
        # Said once per change of reason: a DB that stays unreadable (an open-file limit reached) is
        # retried at every pass and would otherwise fill the log.
        log = ctx.log.debug if _same_reason(watched.report.error, said) else ctx.log.warning
        log("database unreadable", db=str(watched.path), error=watched.report.error)
        return None
    signature = tuple((c.part_id, c.data) for c in cands)
    # A DB with nothing running and nothing new has nothing to evaluate, whatever woke the pass.
    settled = not cands and not bad and watched.report is not None and watched.report.error is None
    if not (watched.dirty or signature != watched.signature or (options.everything and not settled)):
        return None
    watched.signature, watched.dirty = signature, False
    return _Due(watched, cands, bad)


def _same_reason(error: str | None, said: str | None) -> bool:
    """The same reason, counts aside ("34 files open" and "35 files open" are one reason)."""
    return said is not None and error is not None and re.sub(r"\d+", "N", error) == re.sub(r"\d+", "N", said)


def _unreadable(watched: WatchedDB, exc: StoreError) -> str:
    error = str(exc).removeprefix(f"{watched.path}: ")
    try:
        schema = watched.store.schema()
        if not schema.writable:  # an unknown layout fails the candidate query: name the layout
            error = f"{schema.reason} ({error})"
    except StoreError:
        pass
    refusal = write_refusal(watched.path, watched.store.rules)
    return f"{error} ({refusal})" if refusal else error  # e.g. a read-only mount: say why it cannot be opened


def _gate(item: _Due) -> None:
    """The write gate, once per DB per pass: whether this process may write it, and its layout."""
    path, store = item.watched.path, item.watched.store
    report = item.report = DBReport(path, bad_rows=item.bad)
    report.refusal = write_refusal(path, store.rules)
    try:
        report.schema = store.schema()
    except StoreError as exc:
        _store_error(report, exc)


def _store_error(report: DBReport, exc: StoreError) -> None:
    report.error = str(exc).removeprefix(f"{report.path}: ")
    if report.schema is not None and not report.schema.writable:  # e.g. "no such column": say why first
        report.error = f"{report.schema.reason} ({report.error})"
    if report.refusal:  # e.g. "unable to open database file" on a read-only mount: say why
        report.error += f" ({report.refusal})"


def _evidence(ctx: PassContext, due: list[_Due]) -> LiveEvidence | None:
    """Holders and live servers once for all DBs with candidates; sessions and ownership per candidate."""
    busy = [d for d in due if d.candidates and d.report.error is None]
    if not busy:
        return None
    holders = ctx.find_holders([d.watched.path for d in busy])
    live = ctx.live_evidence()
    for item in busy:
        item.report.holders = holders.get(item.watched.path, [])
        try:
            sessions = item.watched.store.sessions(c.session_id for c in item.candidates)
            undone = ctx.journal.undone(str(item.watched.path), [c.part_id for c in item.candidates])
        except StoreError as exc:
            _store_error(item.report, exc)
            continue
        except JournalError as exc:  # which parts the user undid is unknown: judge none of them
            item.report.error = str(exc)
            continue
        item.sessions, item.candidates = sessions, with_sessions(item.candidates, sessions)
        item.evidence = gather(item.candidates, item.report.holders, live, item.watched.store, undone)
    return live


def _judge_act_record(
    ctx: PassContext, item: _Due, reaper: Reaper | None, now: datetime
) -> list[ActionResult]:
    """Judge and plan one DB, act on its plans (unless only looking), then record its sightings."""
    report, store = item.report, item.watched.store
    item.watched.report = report
    if report.error is not None:
        return []
    path = str(item.watched.path)
    known = ctx.journal.sightings(path)
    seen = sightings(known, item.evidence, now)
    report.assessments = judge(
        report, item.candidates, item.evidence, seen, item.sessions, ctx.settings.policy, now
    )
    outcomes = reaper.reap(report, store) if reaper is not None else []
    if seen != known:
        ctx.journal.record_sightings(path, seen)
    return outcomes


def next_deadline(reports: Iterable[DBReport]) -> datetime | None:
    """When the next kept candidate expires (a little after, so the pass then finds it expired)."""
    deadlines = [
        a.verdict.expires_at
        for r in reports
        for a in r.assessments
        if a.verdict.decision is Decision.KEEP and a.verdict.expires_at is not None
    ]
    return min(deadlines) + DEADLINE_SLACK if deadlines else None


def _earliest(deadline: datetime | None, retry: datetime | None) -> datetime | None:
    """The next deadline, or the next back-off retry when that comes first (the daemon passes then)."""
    times = [t for t in (deadline, retry and retry + DEADLINE_SLACK) if t is not None]
    return min(times) if times else None


def one_shot(
    settings: Settings,
    journal: Journal,
    paths: list[Path],
    options: PassOptions,
    ctx: PassContext | None = None,
) -> PassResult:
    """A CLI verb's pass: fresh trackers (a full scan), every DB looked at, stores closed afterwards."""
    dbs = WatchedDBs()
    dbs.sync(paths, settings, announce=False)
    try:
        return run_pass(ctx or PassContext(settings, journal), dbs, options)
    finally:
        dbs.close()
