"""Undo of the daemon's own writes, and settling actions a crash left `planned`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from watchdogd.journal import Action, Journal
from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError


@dataclass(frozen=True)
class UndoResult:
    action: Action
    restored: list[str]
    not_restored: list[str]  # "part prt_…: changed since the daemon wrote it"
    undo_id: int | None = None  # the journal's own action for this undo, when anything was restored


def _rows(action: Action) -> list[tuple[str, str, str | None, str | None]]:
    return [("part", action.part_id, action.part_before, action.part_after),
            ("message", action.message_id, action.message_before, action.message_after)]


def undo_action(journal: Journal, action: Action, store: OpencodeStore) -> UndoResult:
    """Restore each before-image only where the row still holds exactly what the daemon wrote."""
    restored, missed = [], []
    for table, row_id, before, after in _rows(action):
        if before is None or after is None:
            continue
        try:
            miss = store.compare_and_set([RowChange(table, row_id, after, before)])
        except StoreError as exc:
            missed.append(f"{table} {row_id}: {exc}")
            continue
        if miss:
            missed.append(f"{table} {row_id}: changed since the daemon wrote it (or deleted); left as it is")
        else:
            restored.append(f"{table} {row_id}")
    undo_id = None
    if restored:
        undo_id = journal.record(db=action.db, session_id=action.session_id, message_id=action.message_id, part_id=action.part_id,
                     tool=action.tool, route="undo", reason=f"undo of action {action.id}", outcome="done",
                     detail="restored " + ", ".join(restored), part_before=action.part_after, part_after=action.part_before,
                     message_before=action.message_after, message_after=action.message_before, undo_of=action.id)
        journal.settle(action.id, "undone", "; ".join(restored + missed))
    return UndoResult(action, restored, missed, undo_id)


def reconcile(journal: Journal, stores: dict[Path, OpencodeStore]) -> list[tuple[Action, str]]:
    """Settle `planned` actions left by an interrupted run by looking at the rows themselves."""
    settled = []
    for action in journal.planned():
        store = stores.get(Path(action.db))
        if store is None:
            continue
        try:
            current = store.row_data("part", action.part_id)
            # A message-only action (the live layer completes the message after a PATCH) has no part_after.
            message = store.row_data("message", action.message_id) if action.message_after is not None else None
        except StoreError:
            continue
        wrote_part = action.part_after is not None and current == action.part_after
        wrote_message = action.message_after is not None and message == action.message_after
        if wrote_part or wrote_message:
            outcome, detail = "done", "written before an interruption; confirmed from the row"
        elif current == action.part_before:
            outcome, detail = "failed", "interrupted before the write; nothing was written"
        else:
            outcome, detail = "skipped", "interrupted; the row has changed since, nothing of ours is in it"
        journal.settle(action.id, outcome, detail)
        settled.append((action, outcome))
    return settled
