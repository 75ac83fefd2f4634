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


def _rows(action: Action) -> list[tuple[str, str, str | None, str | None]]:
    return [
        ("part", action.part_id, action.part_before, action.part_after),
        ("message", action.message_id, action.message_before, action.message_after),
    ]


def undo_action(journal: Journal, action: Action, store: OpencodeStore, force: bool = False) -> UndoResult:
    """Restore the part and the message together, or neither: one compare-and-set transaction on both rows
    (each must still hold exactly what the daemon wrote, in the action's session), planned in the journal
    first. A half-undone pair (part `running` again, message still completed) is never left behind."""
    rows = [
        (table, row_id, before, after)
        for table, row_id, before, after in _rows(action)
        if before is not None and after is not None
    ]
    names = [f"{table} {row_id}" for table, row_id, _before, _after in rows]
    if not rows:
        return UndoResult(action, [], [f"action {action.id}: no rows recorded to restore"])
    changes = [
        RowChange(table, row_id, after, before, action.session_id) for table, row_id, before, after in rows
    ]
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
            undo_of=action.id,
        ) as undo:
            undo.rows(part_after=action.part_before, message_after=action.message_before)
            missed = store.compare_and_set(changes)
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
