"""Journaled actions and pass outcomes for people: `history`, `status`'s recent actions, `reap` and `undo`."""

from __future__ import annotations

from collections.abc import Sequence

from watchdogd.journal import Action
from watchdogd.models import ActionResult
from watchdogd.present.text import safe, table, when
from watchdogd.stopping import CANNOT_RESTART
from watchdogd.undo import UndoResult

ROW_CONTENT = frozenset({"part_before", "part_after", "message_before", "message_after"})


def recent_action_record(action: Action) -> dict:
    """One of `status --json`'s `recent_actions`: ids and reasons, no row content."""
    return {
        "id": action.id,
        "time": action.when.isoformat(),
        "outcome": action.outcome,
        "route": action.route,
        "session_id": action.session_id,
        "part_id": action.part_id,
        "tool": action.tool,
        "detail": action.detail,
    }


def history_records(actions: Sequence[Action], with_content: bool) -> list[dict]:
    """`history --json`: every journal column (the rows' content only when asked), plus the time."""
    hidden = frozenset() if with_content else ROW_CONTENT
    return [
        {k: v for k, v in a.__dict__.items() if k not in hidden} | {"time": a.when.isoformat()}
        for a in actions
    ]


def history_text(actions: Sequence[Action], with_content: bool) -> str:
    """`history`: a table of actions, newest first, then each action's detail (and rows, when asked)."""
    rows = [
        [str(a.id), when(a.when), a.outcome, a.route[:40], a.session_id, a.part_id, a.tool] for a in actions
    ]
    lines = [table(["ID", "TIME", "OUTCOME", "ROUTE", "SESSION", "PART", "TOOL"], rows)]
    for a in actions:
        lines.append(f"  #{a.id}: {safe(a.detail or a.reason, 300)}")
        if with_content:
            lines += content_lines(a)
    return "\n".join(lines)


def content_lines(action: Action) -> list[str]:
    """The journaled rows, each labelled with its table: the part, and the message when it was written too."""
    lines = []
    for table_name, before, after in (
        ("part", action.part_before, action.part_after),
        ("message", action.message_before, action.message_after),
    ):
        if before is None and after is None:
            continue
        lines.append(f"    {table_name + ' before:':16}{safe(before, 2000)}")
        lines.append(f"    {table_name + ' after:':16}{safe(after, 2000)}")
    return lines


def outcome_record(result: ActionResult) -> dict:
    """One of `reap --json`'s outcomes: the plan taken (its label) and how it ended."""
    cand = result.item.candidate
    return {
        "db": str(cand.db),
        "session_id": cand.session_id,
        "part_id": cand.part_id,
        "tool": cand.tool,
        "route": result.plan.label,
        "outcome": result.outcome,
        "detail": result.detail,
        "action_id": result.action_id,
    }


def outcome_line(result: ActionResult) -> str:
    """`reap`: one line per outcome, with the journal id `history` and `undo` take."""
    cand = result.item.candidate
    tag = f"#{result.action_id} " if result.action_id else ""
    return (
        f"{tag}{result.outcome:9} {safe(cand.session_id)} {safe(cand.part_id)} {safe(cand.tool)}: "
        f"{safe(result.detail, 300)}"
    )


def undo_record(result: UndoResult) -> dict:
    """One of `undo --json`'s results: what was restored, what not (and why), the undo's own journal id."""
    action = result.action
    return {
        "action": action.id,
        "db": action.db,
        "session_id": action.session_id,
        "part_id": action.part_id,
        "restored": result.restored,
        "not_restored": result.not_restored,
        "undo_action": result.undo_id,
    }


def undo_lines(result: UndoResult) -> list[str]:
    """`undo`: each row restored, and each row not restored with why."""
    action_id = result.action.id
    return [f"#{action_id} restored {safe(row)}" for row in result.restored] + [
        f"#{action_id} NOT restored {safe(row, 300)}" for row in result.not_restored
    ]


def stop_undo_line(action: Action) -> str:
    """`undo` of a stopped process: the rows come back, the process does not."""
    return f"#{action.id} {safe(action.detail.split(';')[0], 200)}: {CANNOT_RESTART}"


def request_undo_line(action: Action) -> str:
    """`undo` of a request to opencode's server: it wrote no row; what it ended stays ended."""
    return (
        f"#{action.id} {action.route}: a request to the opencode server, not a DB write: nothing to restore "
        "(what it ended stays ended)"
    )


def undo_summary(results: Sequence[UndoResult]) -> str:
    """Which actions were undone, by the ids `history` shows, and the ids of the undo actions themselves."""
    undone = [f"#{r.action.id} (undo journaled as #{r.undo_id})" for r in results if r.undo_id is not None]
    untouched = [f"#{r.action.id}" for r in results if r.undo_id is None]
    parts = [f"undone: {', '.join(undone)}"] if undone else []
    if untouched:
        parts.append(f"not undone: {', '.join(untouched)}")
    return "; ".join(parts)
