"""The DB repair action: an abandoned part and its completed message, in one compare-and-set transaction.

Journaled before it writes (`Journal.journaled`), backed up before the first write to each DB file.
Used for orphans (route db-repair) and by the live recovery to complete a message after a free.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from watchdogd.backup import take_backup
from watchdogd.config import Settings
from watchdogd.journal import Journal, JournaledAction, JournalError
from watchdogd.models import ActionResult, Assessment, Candidate, DBReport, Outcome, Plan, Route
from watchdogd.opencode.repair import abandoned_part, abandoned_text, finished_message, unexpected_shape
from watchdogd.opencode.store import OpencodeStore, RowChange, RowImage, StoreError

REPAIR = Plan(Route.DB_REPAIR)


@dataclass(frozen=True)
class _Before:
    """The rows as read just before the repair (None: no such row)."""

    part: RowImage | None
    message: RowImage | None


@dataclass(frozen=True)
class _After:
    """What the repair writes: the rows' data (None: that row is not written) and their time_updated."""

    part: str | None
    message: str | None
    updated: int


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
        before = prepared
        message_before = before.message.data if before.message else None
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
                **item.journal_fields(),
                route=Route.DB_REPAIR,
                part_before=cand.data,
                message_before=message_before,
                part_before_updated=before.part.updated if before.part else None,
                message_before_updated=before.message.updated if before.message else None,
                group_of=group_of,
            ) as action:
                action_id = action.id
                part_after = (
                    abandoned_part(cand.data, text, now_ms, action.id, item.verdict.reason)
                    if part_change
                    else None
                )
                after = _After(part_after, message_after, now_ms)
                return self._write(item, store, action, text, before, after)
        except StoreError as exc:  # settled `failed` by `journaled`
            return ActionResult(item, REPAIR, Outcome.FAILED, str(exc), action_id)

    def _prepare(self, item: Assessment, report: DBReport, store: OpencodeStore) -> _Before | ActionResult:
        """Both rows' before-images once every check before a write passed, else why not (a result)."""
        cand = item.candidate
        # Before the backup and the journal: nothing is copied or planned for a DB never written.
        if report.refusal:
            return ActionResult(item, REPAIR, Outcome.REPORTED, f"no DB write: {report.refusal}")
        try:
            other = self._other_session(cand, store)
            if other:  # never complete another (maybe live) session's message
                return ActionResult(item, REPAIR, Outcome.REPORTED, other)
            self.ensure_backup(store)
            # time_updated included: an undo puts both rows back byte for byte.
            before = _Before(
                store.row_image("part", cand.part_id), store.row_image("message", cand.message_id)
            )
        except (StoreError, OSError, sqlite3.Error) as exc:  # sqlite3.Error: the backup copy failed
            return ActionResult(item, REPAIR, Outcome.FAILED, f"cannot prepare repair: {exc}")
        shape = unexpected_shape(cand.data, before.message.data if before.message else None)
        if shape:  # rows others write: never guess at one we do not understand
            return ActionResult(
                item, REPAIR, Outcome.SKIPPED, f"unexpected row shape ({shape}): nothing written"
            )
        return before

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
        before: _Before,
        after: _After,
    ) -> ActionResult:
        cand = item.candidate
        part_after, message_after = after.part, after.message
        action.rows(
            part_after=part_after,
            message_after=message_after,
            part_after_updated=after.updated if part_after is not None else None,
            message_after_updated=after.updated if message_after is not None else None,
        )
        changes = _changes(cand, before, after)
        missed = store.compare_and_set(changes)
        if missed:
            detail = (
                f"{missed} changed since it was read (opencode moved on, or another watchdogd command got there "
                "first); nothing written, re-checked next pass"
            )
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


def _changes(cand: Candidate, before: _Before, after: _After) -> list[RowChange]:
    """The compare-and-set of a repair: each row written only if it still holds its before-image (both
    columns a repair changes: `data` and `time_updated`)."""
    changes = []
    if after.part is not None:
        part_updated = before.part.updated if before.part else None
        changes.append(
            RowChange(
                "part", cand.part_id, cand.data, after.part, cand.session_id, part_updated, after.updated
            )
        )
    if after.message is not None and before.message is not None:
        message = before.message
        changes.append(
            RowChange(
                "message",
                cand.message_id,
                message.data,
                after.message,
                cand.session_id,
                message.updated,
                after.updated,
            )
        )
    return changes
