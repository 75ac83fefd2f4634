"""Crash reconcile: settle the journal rows an interrupted run left `planned`, from the rows themselves."""

from __future__ import annotations

from pathlib import Path

from watchdogd.journal import Action, Journal
from watchdogd.opencode.store import OpencodeStore, StoreError


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
            message = (
                store.row_data("message", action.message_id) if action.message_after is not None else None
            )
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
