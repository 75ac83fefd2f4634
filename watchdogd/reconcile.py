"""Crash reconcile: settle the journal rows an interrupted run left `planned`, from the rows themselves."""

from __future__ import annotations

from pathlib import Path

from watchdogd.journal import Action, Journal
from watchdogd.models import Route
from watchdogd.opencode.store import OpencodeStore, StoreError

LIVE_REQUESTS = (Route.ABORT, Route.REJECT_QUESTION)  # a request to a server: its effect is not in our rows


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
        outcome, detail = _settled(action, current, message)
        journal.settle(action.id, outcome, detail)
        settled.append((action, outcome))
    return settled


def _settled(action: Action, current: str | None, message: str | None) -> tuple[str, str]:
    """(outcome, detail) of an action an interruption left `planned`, from the rows as they are now."""
    wrote_part = action.part_after is not None and current == action.part_after
    wrote_message = action.message_after is not None and message == action.message_after
    if wrote_part or wrote_message:
        return "done", "written before an interruption; confirmed from the row"
    if action.route in LIVE_REQUESTS:
        return "failed", _cut_request(action, current)
    if current == action.part_before:
        return "failed", "interrupted before the write; nothing was written"
    return "skipped", "interrupted; the row has changed since, nothing of ours is in it"


def _cut_request(action: Action, current: str | None) -> str:
    """A reject/abort cut by a stop or a kill: its row says whether the request went out (marked just before
    it was sent); what the server did with it is unknown, so it is never called "nothing was written"."""
    if not action.detail:
        return "interrupted before the request was sent: no request went out, no DB write"
    part = "the part is as it was" if current == action.part_before else "the part has changed since"
    return f"{action.detail} (the daemon stopped before the answer); {part}"
