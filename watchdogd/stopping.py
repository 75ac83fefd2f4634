"""A part held by an opencode process that serves no API: what the user is told, and the opt-in stop.

By default nothing is written while such a process lives; the plan is a report that says what the
process is and what its user can do (watchdogd/opencode/processes.py). With `live.stop_unreachable`
listing its kind, the process is ended the way its user would end it (SIGINT, then SIGTERM; never
SIGKILL), journaled as a `stop-process` action; its leftovers are then an orphan, repaired at once by
the DB repairer in the same group. Undo restores the rows; it cannot start the process again, and says so.
"""

from __future__ import annotations

from dataclasses import replace

from watchdogd.config import Settings
from watchdogd.models import (
    ActionResult,
    Assessment,
    DBReport,
    Outcome,
    OwnerKind,
    Ownership,
    Plan,
    Route,
)
from watchdogd.opencode.processes import LABELS, advice, stop_process
from watchdogd.opencode.store import OpencodeStore

STOP_PROCESS = Route.STOP_PROCESS
CANNOT_RESTART = "undo cannot start it again: start it yourself if you still need it"


def may_stop(owner: Ownership, settings: Settings) -> bool:
    """Only one process could own the part, it has no API, and its kind is listed (never by default)."""
    return (
        owner.kind is OwnerKind.UNREACHABLE
        and len(owner.pids) == 1
        and owner.process is not None
        and owner.process.value in settings.live.stop_unreachable
    )


def unreachable_plan(owner: Ownership, tool: str, settings: Settings) -> Plan:
    """The opt-in stop, else a report: what the process is, that it is never written, what the user can do."""
    if may_stop(owner, settings):
        return Plan(STOP_PROCESS)
    what = f"live owner has no reachable API (pid {','.join(map(str, owner.pids))})"
    what += f": {owner.detail}" if owner.detail else ""
    pid = owner.pids[0] if owner.pids else 0
    return Plan(Route.REPORT, f"{what}; no DB write while it lives; {advice(owner.process, tool, pid)}")


def stop_and_repair(
    item: Assessment, report: DBReport, store: OpencodeStore, repairer, settings: Settings
) -> ActionResult:
    cand, owner, plan = item.candidate, item.ownership, Plan(STOP_PROCESS)
    pid, kind = owner.pids[0], owner.process
    assert kind is not None
    what = f"{LABELS[kind]} pid {pid}"
    with repairer.journal.journaled(
        **item.journal_fields(),
        route=STOP_PROCESS,
        part_before=cand.data,
    ) as action:
        gone, how = stop_process(pid, kind, settings.live.stop_grace)
        if not gone:
            action.settle(Outcome.FAILED, f"{what}: {how}; no DB write")
            return ActionResult(item, plan, Outcome.FAILED, f"{what}: {how}; no DB write", action.id)
        action.settle(Outcome.DONE, f"ended {what} ({how}); {CANNOT_RESTART}")
    if store.row_data("part", cand.part_id) != cand.data:
        detail = f"ended {what} ({how}); the part changed as it exited, left as opencode wrote it"
        return ActionResult(item, plan, Outcome.DONE, detail, action.id)
    why = f"its {LABELS[kind]} (pid {pid}) was ended by opencode-watchdogd (live.stop_unreachable)"
    orphan = replace(item, ownership=Ownership(OwnerKind.NONE))
    repair = repairer.repair(orphan, report, store, why, group_of=action.id)
    tag = f" (#{repair.action_id})" if repair.action_id else ""
    detail = f"ended {what} ({how}); leftovers: {repair.outcome}{tag}: {repair.detail}"
    return ActionResult(item, plan, repair.outcome, detail, action.id)
