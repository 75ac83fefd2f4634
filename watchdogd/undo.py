"""Undo of the daemon's own writes: the before-images back, only where the rows still hold what it wrote."""

from __future__ import annotations

from dataclasses import dataclass

from watchdogd.journal import Action, Journal
from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError


@dataclass(frozen=True)
class UndoResult:
    action: Action
    restored: list[str]
    not_restored: list[str]  # "part prt_…: changed since the daemon wrote it"
    undo_id: int | None = None  # the journal's own action for this undo, when anything was restored


@dataclass(frozen=True)
class _Written:
    """One row an action wrote: its images before and after the write (time_updated None: not recorded)."""

    table: str
    row_id: str
    before: str
    after: str
    before_updated: object
    after_updated: object

    @property
    def name(self) -> str:
        return f"{self.table} {self.row_id}"

    def restore(self, session_id: str) -> RowChange:
        """Back to the before-image, time_updated included, if the row still holds exactly what was written."""
        return RowChange(
            self.table,
            self.row_id,
            self.after,
            self.before,
            session_id,
            self.after_updated,
            self.before_updated,
        )


def _written(action: Action) -> list[_Written]:
    rows = [
        _Written(
            "part",
            action.part_id,
            action.part_before,
            action.part_after,
            action.part_before_updated,
            action.part_after_updated,
        ),
        _Written(
            "message",
            action.message_id,
            action.message_before,
            action.message_after,
            action.message_before_updated,
            action.message_after_updated,
        ),
    ]
    return [row for row in rows if row.before is not None and row.after is not None]


def wrote_rows(action: Action) -> bool:
    """False for a request to opencode's server (reject, abort): it wrote no DB row, so there is none to put back."""
    return bool(_written(action))


def undo_action(journal: Journal, action: Action, store: OpencodeStore, force: bool = False) -> UndoResult:
    """Restore the part and the message together, or neither: one compare-and-set transaction on both rows
    (each must still hold exactly what the daemon wrote, in the action's session), planned in the journal
    first. A half-undone pair (part `running` again, message still completed) is never left behind. Every
    column the write changed comes back (`data` and `time_updated`): the rows are byte-identical to before."""
    rows = _written(action)
    names = [row.name for row in rows]
    if not rows:
        return UndoResult(action, [], [f"action {action.id}: no rows recorded to restore"])
    moved_on = "" if force else _moved_on(action, store)
    if moved_on:
        return UndoResult(action, [], [f"{name}: {moved_on}" for name in names])
    try:
        with journal.journaled(
            db=action.db,
            session_id=action.session_id,
            message_id=action.message_id,
            part_id=action.part_id,
            tool=action.tool,
            route="undo",
            reason=f"undo of action {action.id}",
            part_before=action.part_after,
            message_before=action.message_after,
            part_before_updated=action.part_after_updated,
            message_before_updated=action.message_after_updated,
            undo_of=action.id,
        ) as undo:
            undo.rows(
                part_after=action.part_before,
                message_after=action.message_before,
                part_after_updated=action.part_before_updated,
                message_after_updated=action.message_before_updated,
            )
            missed = store.compare_and_set([row.restore(action.session_id) for row in rows])
            if missed:
                why = (
                    f"the {missed} row changed since the daemon wrote it (or was deleted, or moved to another "
                    "session): nothing restored, neither row"
                )
                undo.settle("skipped", why)
                return UndoResult(action, [], [f"{name}: {why}" for name in names])
            undo.settle("done", "restored " + ", ".join(names))
    except StoreError as exc:  # settled `failed` by `journaled`
        return UndoResult(action, [], [f"{name}: {exc}" for name in names])
    journal.settle(action.id, "undone", "restored " + ", ".join(names))
    return UndoResult(action, names, [], undo.id)


def _moved_on(action: Action, store: OpencodeStore) -> str:
    """Why restoring would put a `running` part into the middle of a conversation that went on, or ""."""
    try:
        newer = store.newer_messages(action.session_id, action.message_id)
    except StoreError as exc:
        return str(exc)
    if not newer:
        return ""
    return (
        f"the session moved on ({newer} newer message(s) since): a running part in the middle of it is almost "
        "never wanted; not restored (use --force to restore anyway)"
    )
