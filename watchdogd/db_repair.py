"""The DB repair action: an abandoned part and its completed message, in one compare-and-set transaction.

Journaled before it writes (`Journal.journaled`), backed up before the first write to each DB file.
Used for orphans (route db-repair) and by the live recovery to complete a message after a free.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog

from watchdogd.backup import take_backup
from watchdogd.config import Settings
from watchdogd.journal import Journal, JournaledAction, JournalError
from watchdogd.models import ActionResult, Assessment, DBReport, Outcome, Plan, Route
from watchdogd.opencode.repair import abandoned_part, abandoned_text, finished_message, unexpected_shape
from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError

REPAIR = Plan(Route.DB_REPAIR)


class DBRepairer:
    """Repairs rows in opencode's DB for one process: journal, backups taken, the log to write to."""

    def __init__(self, settings: Settings, journal: Journal, *, log=None, backed_up: set[Path] | None = None):
        self.settings = settings
        self.journal = journal
        self.log = log or structlog.get_logger()
        # DBs already copied in this process: the daemon passes one set for its whole lifetime.
        self._backed_up: set[Path] = set() if backed_up is None else backed_up

    def ensure_backup(self, store: OpencodeStore) -> None:
        if store.path in self._backed_up:
            return
        path, why = take_backup(self.settings, store.path, store.reader, self.journal)
        self._backed_up.add(store.path)
        self.log.info(
            "backup taken" if path else "backup skipped",
            db=str(store.path),
            backup=str(path) if path else None,
            why=why,
        )

    def repair(
        self,
        item: Assessment,
        report: DBReport,
        store: OpencodeStore,
        why: str | None = None,
        *,
        part_change: bool = True,
        group_of: int | None = None,
    ) -> ActionResult:
        """Part → error "abandoned", its assistant message completed; one transaction, compare-and-set.

        Given an assessment and its DB's report (the pass's write gate; the store still guards each
        write), return what happened. `part_change=False` only completes the message (after a live free).
        """
        cand = item.candidate
        prepared = self._prepare(item, report, store)
        if isinstance(prepared, ActionResult):
            return prepared
        message_before = prepared
        why = why or ("its opencode process is gone" if item.ownership.orphan else "expired by policy")
        text = abandoned_text(cand.tool, cand.status, item.verdict.age_s, why)
        now_ms = int(time.time() * 1000)
        message_after = finished_message(message_before, text, now_ms) if message_before else None
        if not part_change and message_after is None:
            return ActionResult(
                item, REPAIR, Outcome.SKIPPED, "nothing to repair: the message is already completed"
            )
        action_id = None
        try:
            with self.journal.journaled(
                db=str(cand.db),
                session_id=cand.session_id,
                message_id=cand.message_id,
                part_id=cand.part_id,
                tool=cand.tool,
                route=Route.DB_REPAIR,
                reason=item.verdict.reason,
                part_before=cand.data,
                message_before=message_before,
                group_of=group_of,
            ) as action:
                action_id = action.id
                part_after = (
                    abandoned_part(cand.data, text, now_ms, action.id, item.verdict.reason)
                    if part_change
                    else None
                )
                return self._write(item, store, action, text, (message_before, message_after), part_after)
        except StoreError as exc:  # settled `failed` by `journaled`
            return ActionResult(item, REPAIR, Outcome.FAILED, str(exc), action_id)

    def _prepare(self, item: Assessment, report: DBReport, store: OpencodeStore) -> str | None | ActionResult:
        """The message row's before-image once every check before a write passed, else why not (a result)."""
        cand = item.candidate
        if (
            report.refusal
        ):  # before the backup and the journal: nothing is copied or planned for a DB never written
            return ActionResult(item, REPAIR, Outcome.REPORTED, f"no DB write: {report.refusal}")
        try:
            other = self._other_session(cand, store)
            if other:  # never complete another (maybe live) session's message
                return ActionResult(item, REPAIR, Outcome.REPORTED, other)
            self.ensure_backup(store)
            message_before = store.row_data("message", cand.message_id)
        except (StoreError, OSError, sqlite3.Error) as exc:  # sqlite3.Error: the backup copy failed
            return ActionResult(item, REPAIR, Outcome.FAILED, f"cannot prepare repair: {exc}")
        shape = unexpected_shape(cand.data, message_before)
        if shape:  # rows others write: never guess at one we do not understand
            return ActionResult(
                item, REPAIR, Outcome.SKIPPED, f"unexpected row shape ({shape}): nothing written"
            )
        return message_before

    @staticmethod
    def _other_session(cand, store: OpencodeStore) -> str | None:
        """Why the part's message row is not the part's session's (then nothing is written), or None."""
        owner = store.row_session("message", cand.message_id)
        if owner is None or owner == cand.session_id:
            return None
        return (
            f"its message {cand.message_id} belongs to session {owner}, not to the part's session "
            f"{cand.session_id}: not repaired (a DB edit there could complete another session)"
        )

    def _write(
        self,
        item: Assessment,
        store: OpencodeStore,
        action: JournaledAction,
        text: str,
        message: tuple[str | None, str | None],
        part_after: str | None,
    ) -> ActionResult:
        cand = item.candidate
        message_before, message_after = message
        action.rows(part_after=part_after, message_after=message_after)
        changes = []
        if part_after is not None:
            changes.append(RowChange("part", cand.part_id, cand.data, part_after, cand.session_id))
        if message_after is not None:
            changes.append(
                RowChange("message", cand.message_id, message_before, message_after, cand.session_id)
            )
        missed = store.compare_and_set(changes)
        if missed:
            detail = f"{missed} changed since it was read (opencode moved on); nothing written, re-checked next pass"
            action.settle(Outcome.SKIPPED, detail)
            return ActionResult(item, REPAIR, Outcome.SKIPPED, detail, action.id)
        written = (["part error"] if part_after else []) + (["message completed"] if message_after else [])
        try:
            action.settle(Outcome.DONE, "; ".join(written))
        except JournalError as exc:
            # Written, and its `planned` row already holds the before/after rows: the next reconcile settles
            # it.
            return ActionResult(
                item,
                REPAIR,
                Outcome.DONE,
                f"{text} (written, but the journal could not record the "
                f"outcome: {exc}; its planned row is settled at the next pass)",
                action.id,
            )
        return ActionResult(item, REPAIR, Outcome.DONE, text, action.id)
