"""Act on each planned assessment: a dispatch from its route to the action that frees it.

The plan (route and why) was decided once by the pass and stored on the assessment; this
module only logs and delegates: db-repair to the DB repairer (watchdogd/db_repair.py), the live
routes to the live recovery (watchdogd/live_recovery.py), which is given the same repairer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import structlog

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
    ):
        self.settings = settings
        self.dry_run = dry_run
        # Report-only parts already logged (the daemon keeps this across passes): once per part, not per pass.
        self._told: set[tuple[str, str, str]] = set() if told is None else told
        self.live = live
        self.log = log or structlog.get_logger()
        self.stopping = stopping  # checked between actions: a stop never starts a new write
        self.repairer = DBRepairer(settings, journal, log=self.log, backed_up=backed_up)

    def reap(self, report: DBReport, store: OpencodeStore) -> list[ActionResult]:
        outcomes = []
        for item in report.assessments:
            if item.plan is not None and not self.stopping():
                outcomes.append(self.act(item, item.plan, report, store))
        return outcomes

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
        level = "info" if outcome.ok else "warning"
        getattr(log, level)(
            f"action {outcome.outcome}",
            action=outcome.action_id,
            detail=outcome.detail,
            reason=item.verdict.reason,
        )
        return outcome
