"""Turn expired verdicts into the least invasive action that works, journaled before it happens."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Protocol

import structlog

from watchdogd.backup import take_backup
from watchdogd.config import Settings
from watchdogd.journal import Journal, JournalError
from watchdogd.models import ActionResult, Assessment, DBReport, Outcome, OwnerKind, Plan, Route
from watchdogd.opencode.repair import (
    abandoned_part,
    abandoned_text,
    finished_message,
    unexpected_shape,
)
from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError
from watchdogd.opencode.writegate import write_refusal

DB_REPAIR = Route.DB_REPAIR
REPAIR = Plan(Route.DB_REPAIR)


class LiveRecovery(Protocol):
    """Frees sessions through their owning server (the live layer)."""

    def route(self, item: Assessment) -> Plan | None: ...

    def free(self, item: Assessment, store: OpencodeStore, reaper: "Reaper") -> ActionResult: ...


def plan_route(item: Assessment, report: DBReport, live: LiveRecovery | None = None) -> Plan | None:
    """The route `reap` would take for this candidate now (None when it is not due)."""
    if not item.verdict.expired:
        return None
    if live is not None:
        route = live.route(item)
        if route:
            return route
    kind, pids = item.ownership.kind, ",".join(map(str, item.ownership.pids))
    if kind in (OwnerKind.NONE, OwnerKind.RESTARTED, OwnerKind.LIVE_IDLE):
        return Plan(Route.DB_REPAIR) if report.ok else Plan(Route.REPORT, f"DB not writable ({report.not_writable})")
    if kind is OwnerKind.HELD:
        return Plan(Route.REPORT, f"live owner may hold it (pid {pids}); needs live recovery, no DB write")
    if kind is OwnerKind.UNREACHABLE:
        return Plan(Route.REPORT, f"live owner has no reachable API (pid {pids}); no DB write")
    return Plan(Route.REPORT, f"live owner {item.ownership.label}")


class Reaper:
    def __init__(self, settings: Settings, journal: Journal, *, dry_run: bool = False, live: LiveRecovery | None = None,
                 log=None, stopping=lambda: False, backed_up: set[Path] | None = None):
        self.settings = settings
        self.journal = journal
        self.dry_run = dry_run
        self.live = live
        self.log = log or structlog.get_logger()
        self.stopping = stopping  # checked between actions: a stop never starts a new write
        # DBs already copied in this process: the daemon passes one set for its whole lifetime.
        self._backed_up: set[Path] = set() if backed_up is None else backed_up

    def reap(self, report: DBReport, store: OpencodeStore) -> list[ActionResult]:
        outcomes = []
        for item in report.assessments:
            plan = plan_route(item, report, self.live)
            if plan and not self.stopping():
                outcomes.append(self.act(item, plan, report, store))
        return outcomes

    def act(self, item: Assessment, plan: Plan, report: DBReport, store: OpencodeStore) -> ActionResult:
        cand = item.candidate
        log = self.log.bind(db=str(cand.db), session=cand.session_id, part=cand.part_id, tool=cand.tool,
                            route=plan.label)
        if self.dry_run:
            log.info("would act", reason=item.verdict.reason)
            return ActionResult(item, plan, Outcome.DRY_RUN, item.verdict.reason)
        if plan.route is Route.REPORT:
            log.warning("expired, not written", reason=item.verdict.reason, why=plan.label)
            return ActionResult(item, plan, Outcome.REPORTED, plan.label)
        try:
            if plan.route is Route.DB_REPAIR:
                outcome = self.repair_in_db(item, store)
            else:
                assert self.live is not None
                outcome = self.live.free(item, store, self)
        except JournalError as exc:
            # No journal row, no write: the DB is left exactly as it was.
            log.error("journal unavailable, nothing written", error=str(exc))
            return ActionResult(item, plan, Outcome.FAILED, f"journal unavailable: {exc}")
        level = "info" if outcome.ok else "warning"
        getattr(log, level)(f"action {outcome.outcome}", action=outcome.action_id, detail=outcome.detail,
                             reason=item.verdict.reason)
        return outcome

    def ensure_backup(self, store: OpencodeStore) -> None:
        if store.path in self._backed_up:
            return
        path, why = take_backup(self.settings, store.path, store.reader, self.journal)
        self._backed_up.add(store.path)
        self.log.info("backup taken" if path else "backup skipped", db=str(store.path), backup=str(path) if path else None,
                      why=why)

    def repair_in_db(self, item: Assessment, store: OpencodeStore, why: str | None = None,
                     part_change: bool = True) -> ActionResult:
        """Part → error "abandoned", its assistant message completed; one transaction, compare-and-set."""
        cand = item.candidate
        why = why or ("its opencode process is gone" if item.ownership.orphan else "expired by policy")
        text = abandoned_text(cand.tool, cand.status, item.verdict.age_s, why)
        refusal = write_refusal(store.path, store.rules)
        if refusal:  # before the backup and the journal: nothing is copied or planned for a DB never written
            return ActionResult(item, REPAIR, Outcome.REPORTED, f"no DB write: {refusal}")
        try:
            self.ensure_backup(store)
            message_before = store.row_data("message", cand.message_id)
        except (StoreError, OSError, sqlite3.Error) as exc:  # sqlite3.Error: the backup copy failed
            return ActionResult(item, REPAIR, Outcome.FAILED, f"cannot prepare repair: {exc}")
        now_ms = int(time.time() * 1000)
        shape = unexpected_shape(cand.data, message_before)
        if shape:  # rows others write: never guess at one we do not understand
            return ActionResult(item, REPAIR, Outcome.SKIPPED, f"unexpected row shape ({shape}): nothing written")
        message_after = finished_message(message_before, text, now_ms) if message_before else None
        if not part_change and message_after is None:
            return ActionResult(item, REPAIR, Outcome.SKIPPED, "nothing to repair: the message is already completed")
        action_id = self.journal.plan(db=str(cand.db), session_id=cand.session_id, message_id=cand.message_id,
                                      part_id=cand.part_id, tool=cand.tool, route=DB_REPAIR, reason=item.verdict.reason,
                                      part_before=cand.data, message_before=message_before)
        part_after = abandoned_part(cand.data, text, now_ms, action_id, item.verdict.reason) if part_change else None
        self.journal.update_rows(action_id, part_after=part_after, message_after=message_after)
        changes = []
        if part_after is not None:
            changes.append(RowChange("part", cand.part_id, cand.data, part_after))
        if message_after is not None:
            changes.append(RowChange("message", cand.message_id, message_before, message_after))
        try:
            missed = store.compare_and_set(changes)
        except StoreError as exc:
            self.journal.settle(action_id, Outcome.FAILED, str(exc))
            return ActionResult(item, REPAIR, Outcome.FAILED, str(exc), action_id)
        if missed:
            detail = f"{missed} changed since it was read (opencode moved on); nothing written, re-checked next pass"
            self.journal.settle(action_id, Outcome.SKIPPED, detail)
            return ActionResult(item, REPAIR, Outcome.SKIPPED, detail, action_id)
        written = (["part error"] if part_after else []) + (["message completed"] if message_after else [])
        try:
            self.journal.settle(action_id, Outcome.DONE, "; ".join(written))
        except JournalError as exc:
            # Written, and its `planned` row already holds the before/after rows: the next reconcile settles it.
            return ActionResult(item, REPAIR, Outcome.DONE, f"{text} (written, but the journal could not record the outcome: "
                           f"{exc}; its planned row is settled at the next pass)", action_id)
        return ActionResult(item, REPAIR, Outcome.DONE, text, action_id)
