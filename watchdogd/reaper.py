"""Act on each planned assessment: a dispatch from its route to the action that frees it.

The plan (route and why) was decided once by the pass and stored on the assessment; this
module only logs and delegates: db-repair to the DB repairer (watchdogd/db_repair.py), the live
routes to the live recovery (watchdogd/live_recovery.py), which is given the same repairer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from watchdogd.backoff import BackoffBook, after_attempt, limits, reason_changed
from watchdogd.config import Settings
from watchdogd.db_repair import DBRepairer
from watchdogd.journal import Journal, JournalError
from watchdogd.models import ActionResult, Assessment, DBReport, Outcome, Plan, Route
from watchdogd.opencode.store import OpencodeStore
from watchdogd.stopping import stop_and_repair

DB_REPAIR = Route.DB_REPAIR


class LiveRecovery(Protocol):
    """Frees sessions through their owning server (the live layer)."""

    def free(
        self, item: Assessment, plan: Plan, report: DBReport, store: OpencodeStore, repairer: DBRepairer
    ) -> ActionResult: ...


class Reaper:
    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        *,
        dry_run: bool = False,
        live: LiveRecovery | None = None,
        log=None,
        stopping=lambda: False,
        backed_up: set[Path] | None = None,
        told: set[tuple[str, str, str]] | None = None,
        backoffs: BackoffBook | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings = settings
        self.dry_run = dry_run
        # Report-only parts already logged (the daemon keeps this across passes): once per part, not per pass.
        self._told: set[tuple[str, str, str]] = set() if told is None else told
        self.live = live
        self.log = log or structlog.get_logger()
        self.stopping = stopping  # checked between actions: a stop never starts a new write
        self.repairer = DBRepairer(settings, journal, log=self.log, backed_up=backed_up)
        # Parts whose last attempts did not free them (the daemon keeps this across passes): retried later.
        self.backoffs = BackoffBook() if backoffs is None else backoffs
        self.now = now
        self.first_s, self.cap_s = limits(settings.watch.debounce, settings.watch.poll_interval)

    def reap(self, report: DBReport, store: OpencodeStore) -> list[ActionResult]:
        """Act on each planned assessment not waiting out a back-off; the report's assessments then carry
        the back-off that applies to them (what `scan` and `status` show)."""
        outcomes = []
        for index, item in enumerate(report.assessments):
            if item.plan is None or self.stopping():
                continue
            item = report.assessments[index] = self._with_backoff(item)
            if item.backoff is not None and item.backoff.waiting(self.now()):
                continue  # nothing changed since the last attempt: no request, no journal row, no log line
            outcome = self.act(item, item.plan, report, store)
            report.assessments[index] = self._after(item, outcome, self.now())  # from the end of the attempt
            outcomes.append(outcome)
        return outcomes

    def _with_backoff(self, item: Assessment) -> Assessment:
        cand, plan = item.candidate, item.plan
        if self.dry_run or plan.route is Route.REPORT:
            return item
        found = self.backoffs.current(
            str(cand.db), cand.part_id, cand.data, plan.label, (cand.session_id, cand.message_id)
        )
        return replace(item, backoff=found)

    def _after(self, item: Assessment, outcome: ActionResult, now: datetime) -> Assessment:
        """Record how the attempt ended: a part not freed is retried after a back-off, a freed one forgotten."""
        cand, plan = item.candidate, item.plan
        if self.dry_run or plan.route is Route.REPORT:
            return item
        state = None
        if not outcome.ok:
            sent = outcome.sent and outcome.action_id is not None
            state = after_attempt(
                item.backoff,
                row=cand.data,
                plan=plan.label,
                run=(cand.session_id, cand.message_id),
                reason=outcome.detail,
                action_id=outcome.action_id if sent else None,
                sent=sent,
                now=now,
                first_s=self.first_s,
                cap_s=self.cap_s,
            )
        self.backoffs.record(str(cand.db), cand.part_id, state)
        return replace(item, backoff=state)

    def act(self, item: Assessment, plan: Plan, report: DBReport, store: OpencodeStore) -> ActionResult:
        cand = item.candidate
        log = self.log.bind(
            db=str(cand.db), session=cand.session_id, part=cand.part_id, tool=cand.tool, route=plan.label
        )
        if self.dry_run:
            log.info("would act", reason=item.verdict.reason)
            return ActionResult(item, plan, Outcome.DRY_RUN, item.verdict.reason)
        if plan.route is Route.REPORT:
            key = (str(cand.db), cand.part_id, plan.label)
            if key not in self._told:
                self._told.add(key)
                log.warning("expired, not written", reason=item.verdict.reason, why=plan.label)
            return ActionResult(item, plan, Outcome.REPORTED, plan.label)
        try:
            if plan.route is Route.DB_REPAIR:
                outcome = self.repairer.repair(item, report, store)
            elif plan.route is Route.STOP_PROCESS:
                outcome = stop_and_repair(item, report, store, self.repairer, self.settings)
            elif self.live is not None:
                outcome = self.live.free(item, plan, report, store, self.repairer)
            else:
                outcome = ActionResult(item, plan, Outcome.REPORTED, "no live layer in this pass")
        except JournalError as exc:
            # No journal row, no write: the DB is left exactly as it was.
            log.error("journal unavailable, nothing written", error=str(exc))
            return ActionResult(item, plan, Outcome.FAILED, f"journal unavailable: {exc}")
        # A retry that ends as the last attempt did is not news: said once per change of reason.
        level = (
            "info" if outcome.ok else "warning" if reason_changed(item.backoff, outcome.detail) else "debug"
        )
        getattr(log, level)(
            f"action {outcome.outcome}",
            action=outcome.action_id,
            detail=outcome.detail,
            reason=item.verdict.reason,
        )
        return outcome
