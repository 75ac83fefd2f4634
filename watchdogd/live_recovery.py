"""Live recovery: free a session through the opencode server that holds it, then mark its rows.

Given an assessment whose plan is a live route (reject-question, abort, patch-part), its DB report
and a DB repairer (watchdogd/db_repair.py) for the message the server leaves open. The evidence
(watchdogd/live_evidence.py) found the server; every step here re-reads what it acts on first.

Rules: a session a reachable server reports busy is never written in the DB; it is freed by
rejecting its question, else by abort (then the leaked question is rejected); a free counts only
when `/session/status` and the busy-gated no-op probe agree; every call carries
`?directory=<session.directory>`; a parent `task` is never aborted for its subagent (the plan).
One free is one event in the journal: the rows written after it carry `group_of` = its row.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Callable

from watchdogd.config import LiveConfig
from watchdogd.db_repair import DBRepairer
from watchdogd.journal import JournaledAction
from watchdogd.live_evidence import LiveEvidence
from watchdogd.models import ActionResult, Assessment, DBReport, Outcome, Plan, Route
from watchdogd.opencode.endpoints import Endpoint
from watchdogd.opencode.repair import abandoned_part, abandoned_text, finished_message
from watchdogd.opencode.rows import parse_tool_part
from watchdogd.opencode.server import ServerClient, ServerError, describe_error
from watchdogd.opencode.store import OpencodeStore, StoreError

REJECT = Route.REJECT_QUESTION
ABORT = Route.ABORT
PATCH_PART = Route.PATCH_PART
SETTLE_S = 2.0  # how long the server may take to write the part after the session went idle


def _now_ms() -> int:
    return int(time.time() * 1000)


class LiveRecovery:
    """Acts on live plans for one pass, with the servers its evidence found."""

    def __init__(
        self, evidence: LiveEvidence, config: LiveConfig, *, sleep: Callable[[float], None] = time.sleep
    ):
        self.evidence = evidence
        self.allow_dispose = config.allow_dispose
        self.timeout = config.timeout
        self._sleep = sleep

    def free(
        self, item: Assessment, plan: Plan, report: DBReport, store: OpencodeStore, repairer: DBRepairer
    ) -> ActionResult:
        try:
            if plan.route is PATCH_PART:
                return self._repair_orphan(item, report, store, repairer)
            if plan.route in (REJECT, ABORT) and item.backoff is not None and item.backoff.sent:
                return self._recheck(item, plan.route, report, store, repairer)
            if plan.route in (REJECT, ABORT):
                return self._free_busy(item, plan.route, report, store, repairer)
        except StoreError as exc:
            return ActionResult(item, plan, Outcome.FAILED, str(exc))
        return ActionResult(item, plan, Outcome.REPORTED, plan.label)

    def _known_endpoint(self, item: Assessment) -> Endpoint | None:
        endpoint = self.evidence.endpoint(item.ownership.url)
        if endpoint is None or endpoint.client is None or not item.candidate.directory:
            return None
        return endpoint

    # -- reject / abort ------------------------------------------------------------------------
    def _free_busy(
        self, item: Assessment, route: Route, report: DBReport, store: OpencodeStore, repairer: DBRepairer
    ) -> ActionResult:
        cand = item.candidate
        endpoint = self._known_endpoint(item)
        if endpoint is None:
            return ActionResult(item, Plan(route), Outcome.FAILED, "its server is no longer known")
        client, directory, sid = endpoint.client, cand.directory, cand.session_id
        # A fresh look first: the pass's answers may be seconds old, and nothing is done yet.
        try:
            if sid not in client.busy_sessions(directory):
                return ActionResult(
                    item,
                    Plan(route),
                    Outcome.SKIPPED,
                    f"no longer busy on {endpoint.url}; re-checked next pass",
                )
            request = self.evidence.listed_question(endpoint, cand, fresh=True) if route is REJECT else None
            asks = [p for p in client.permissions(directory) if p.get("sessionID") == sid]
        except ServerError as exc:
            return ActionResult(item, Plan(route), Outcome.FAILED, describe_error(exc, endpoint.url))
        route = REJECT if request is not None else ABORT
        queued = store.queued_user_messages(sid, cand.start_ms or 0)
        log = repairer.log.bind(session=sid, part=cand.part_id, server=endpoint.url, version=endpoint.version)
        with repairer.journal.journaled(
            **item.journal_fields(),
            route=route,
            part_before=cand.data,
            server_version=endpoint.version,
        ) as action:
            steps = _permission_steps(asks, log)
            free, answered = self._free_and_verify(
                action, endpoint, cand.session_id, directory, request, steps
            )
            if not free:  # answered: the run had its request; a retry inside the back-off only re-checks
                return ActionResult(item, Plan(route), Outcome.FAILED, "; ".join(steps), action.id, answered)
            steps += _queued_steps(queued, log)
            action.settle(Outcome.DONE, "; ".join(steps), endpoint.version)
        why = f"freed through its opencode server ({route})"
        steps += self._finish_rows(item, report, store, repairer, endpoint, why, action.id)
        return ActionResult(item, Plan(route), Outcome.DONE, "; ".join(steps), action.id)

    def _recheck(
        self, item: Assessment, route: Route, report: DBReport, store: OpencodeStore, repairer: DBRepairer
    ) -> ActionResult:
        """This run was already sent a reject/abort (#N) that did not free it: inside the back-off it is never
        sent again, only looked at; once free, its rows are finished as after any free (grouped with #N)."""
        cand, sent = item.candidate, item.backoff.action_id

        def failed(detail: str) -> ActionResult:
            return ActionResult(item, Plan(route), Outcome.FAILED, detail, sent, True)

        endpoint = self._known_endpoint(item)
        if endpoint is None:
            return failed("its server is no longer known")
        try:
            free, how = _check_free(endpoint.client, cand.session_id, cand.directory)
        except ServerError as exc:
            return failed(describe_error(exc, endpoint.url))
        if not free:
            return failed(f"still busy after #{sent} ({how}); not sent again, re-checked after a back-off")
        first = repairer.journal.action(sent)
        if first is not None:
            repairer.journal.settle(
                sent, Outcome.DONE, f"{first.detail}; free later: {how}", endpoint.version
            )
        why = f"freed through its opencode server ({route})"
        steps = [f"free after #{sent}: {how}"]
        steps += self._finish_rows(item, report, store, repairer, endpoint, why, sent)
        return ActionResult(item, Plan(route), Outcome.DONE, "; ".join(steps), sent, True)

    def _free_and_verify(
        self,
        action: JournaledAction,
        endpoint: Endpoint,
        sid: str,
        directory: str,
        request: dict | None,
        steps: list[str],
    ) -> tuple[bool, bool]:
        """Reject (or abort), verify, dispose when allowed; on failure settle `failed` with the steps.
        Returns (freed, whether the server answered the request)."""
        client, answered = endpoint.client, False
        try:
            if request is not None:
                _mark_sent(action, f"reject of question {request['id']} sent")
                client.reject_question(request["id"], directory)
                answered = True
                steps.append(f"rejected question {request['id']}")
            else:
                _mark_sent(action, "abort sent")
                client.abort(sid, directory)
                answered = True
                steps.append("aborted the session")
                steps += self._reject_leaked(client, sid, directory)
            free, how = self._verify(client, sid, directory)
            if not free and self.allow_dispose:
                client.dispose(directory)
                steps.append(f"disposed the instance of {directory}")
                steps += self._reject_leaked(client, sid, directory)
                free, how = self._verify(client, sid, directory)
        except ServerError as exc:
            steps += [describe_error(exc, endpoint.url), "no DB write"]
            action.settle(Outcome.FAILED, "; ".join(steps), endpoint.version)
            return False, answered
        if not free:
            hint = "" if self.allow_dispose else " (POST /instance/dispose is off: live.allow_dispose)"
            steps += [f"still busy: {how}{hint}", "no DB write"]
            action.settle(Outcome.FAILED, "; ".join(steps), endpoint.version)
            return False, answered
        steps.append(f"verified: {how}")
        return True, answered

    @staticmethod
    def _reject_leaked(client: ServerClient, sid: str, directory: str) -> list[str]:
        """Abort leaves the session's question listed (docs/opencode.md); a UI would still show it."""
        out = []
        for request in client.questions(directory):
            if request.get("sessionID") == sid and isinstance(request.get("id"), str):
                client.reject_question(request["id"], directory)
                out.append(f"rejected leaked question {request['id']}")
        return out

    def _verify(self, client: ServerClient, sid: str, directory: str) -> tuple[bool, str]:
        """Poll until free (reject takes ~0.2 s to settle), at most the request timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            free, how = _check_free(client, sid, directory)
            if free or time.monotonic() >= deadline:
                return free, how
            self._sleep(0.1)

    # -- the rows after a free -----------------------------------------------------------------
    def _finish_rows(
        self,
        item: Assessment,
        report: DBReport,
        store: OpencodeStore,
        repairer: DBRepairer,
        endpoint: Endpoint,
        why: str,
        group_of: int,
    ) -> list[str]:
        """After a free: say in the part that the watchdog abandoned it; complete the message if left open."""
        cand = item.candidate
        row = store.row_data("part", cand.part_id)
        deadline = time.monotonic() + SETTLE_S
        # Abort's cleanup may still be writing "Tool execution aborted": let it land first.
        while row is not None and _still_live(row) and time.monotonic() < deadline:
            self._sleep(0.1)
            row = store.row_data("part", cand.part_id)
        if row is None:
            return ["the part was deleted meanwhile"]
        if not _left_by_the_free(row):
            return ["part left as opencode wrote it (it finished on its own meanwhile)"]
        patched, detail, _ = self._patch(item, store, repairer, endpoint, row, why, group_of)
        if not patched:
            return [detail]
        return [detail] + self._finish_message(item, report, store, repairer, why, group_of)

    def _patch(
        self,
        item: Assessment,
        store: OpencodeStore,
        repairer: DBRepairer,
        endpoint: Endpoint,
        row: str,
        why: str,
        group_of: int | None = None,
    ) -> tuple[int | None, str, ServerError | None]:
        """PATCH the part to "abandoned" through the server; journaled with the rows as stored (time_updated
        too, before and after: an undo then puts the row back byte for byte)."""
        cand = item.candidate
        before = store.row_image("part", cand.part_id)
        with repairer.journal.journaled(
            **item.journal_fields(),
            route=PATCH_PART,
            part_before=row,
            part_before_updated=before.updated if before is not None and before.data == row else None,
            server_version=endpoint.version,
            group_of=group_of,
        ) as action:
            text = abandoned_text(cand.tool, cand.status, item.verdict.age_s, why)
            part = json.loads(abandoned_part(row, text, _now_ms(), action.id, item.verdict.reason))
            try:
                endpoint.client.patch_part(
                    cand.session_id, cand.message_id, cand.part_id, part, cand.directory
                )
            except ServerError as exc:
                detail = f"PATCH of the part failed: {describe_error(exc, endpoint.url)}"
                action.settle(Outcome.FAILED, detail, endpoint.version)
                return None, detail, exc
            stored = store.row_image("part", cand.part_id)
            if stored is None or not _ours(stored.data):
                detail = "PATCH of the part answered, but the row does not hold it"
                action.settle(Outcome.FAILED, detail, endpoint.version)
                return None, detail, None
            action.rows(part_after=stored.data, part_after_updated=stored.updated)
            action.settle(Outcome.DONE, "part marked abandoned through the server", endpoint.version)
        return action.id, f"part marked abandoned through the server (#{action.id})", None

    def _finish_message(
        self,
        item: Assessment,
        report: DBReport,
        store: OpencodeStore,
        repairer: DBRepairer,
        why: str,
        group_of: int,
    ) -> list[str]:
        """No route completes a message: a compare-and-set in the DB, now that the session is idle."""
        cand = item.candidate
        message = store.row_data("message", cand.message_id)
        if message is None or finished_message(message, "", 0) is None:
            return []
        if report.schema is None or not report.schema.writable:
            return [f"message left unfinished: DB not writable ({report.not_writable})"]
        current = store.row_data("part", cand.part_id) or cand.data
        fresh = replace(item, candidate=replace(cand, data=current))
        outcome = repairer.repair(fresh, report, store, why, part_change=False, group_of=group_of)
        tag = f" (#{outcome.action_id})" if outcome.action_id else ""
        return [
            f"message completed in the DB{tag}"
            if outcome.outcome is Outcome.DONE
            else f"message not completed: {outcome.outcome}{tag}: {outcome.detail}"
        ]

    # -- idle on its server, running in the DB -------------------------------------------------
    def _repair_orphan(
        self, item: Assessment, report: DBReport, store: OpencodeStore, repairer: DBRepairer
    ) -> ActionResult:
        """Idle on a reachable server, `running` in the DB: PATCH the part, complete the message."""
        cand, plan = item.candidate, Plan(PATCH_PART)
        endpoint = self._known_endpoint(item)
        if endpoint is None:
            return ActionResult(item, plan, Outcome.FAILED, "its server is no longer known")
        why = "its server reports the session idle (the run that owned it is gone)"
        try:
            free, how = _check_free(endpoint.client, cand.session_id, cand.directory)
            if not free:
                return ActionResult(
                    item, plan, Outcome.SKIPPED, f"not idle on {endpoint.url} ({how}); re-checked next pass"
                )
        except ServerError as exc:
            return ActionResult(item, plan, Outcome.FAILED, describe_error(exc, endpoint.url))
        current = store.row_data("part", cand.part_id)
        if current != cand.data:
            return ActionResult(
                item, plan, Outcome.SKIPPED, "the part changed since it was read (opencode moved on)"
            )
        action_id, detail, error = self._patch(item, store, repairer, endpoint, current, why)
        if action_id is None:
            if error is not None and error.kind in ("route-missing", "http"):
                # The server answered (so it is alive and says idle) but will not take the PATCH.
                fallback = repairer.repair(item, report, store, why)
                return replace(fallback, detail=f"{detail}; repaired in the DB instead: {fallback.detail}")
            return ActionResult(item, plan, Outcome.FAILED, detail)
        steps = [detail] + self._finish_message(item, report, store, repairer, why, action_id)
        return ActionResult(item, plan, Outcome.DONE, "; ".join(steps), action_id)


def _mark_sent(action: JournaledAction, what: str) -> None:
    """Before the request: a daemon killed while it waits for the answer leaves a row that says what is known."""
    action.journal.settle(action.id, Outcome.PLANNED, f"{what}, outcome unknown")


def _permission_steps(asks: list[dict], log) -> list[str]:
    if not asks:
        return []
    log.warning("pending permission asks on the session", permissions=[p.get("id") for p in asks])
    return ["pending permission asks: " + ", ".join(f"{p.get('id')} ({p.get('permission')})" for p in asks)]


def _queued_steps(queued: list[tuple[str, int]], log) -> list[str]:
    if not queued:
        return []
    log.warning(
        "prompts queued while stuck; opencode drops them, re-send them", messages=[m for m, _ in queued]
    )
    prompts = ", ".join(
        f"{mid} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ms / 1000))})" for mid, ms in queued
    )
    return [f"prompts sent while stuck, which opencode drops, re-send them: {prompts}"]


def _still_live(row: str) -> bool:
    part = parse_tool_part(row)
    return not isinstance(part, str) and part.live


def _ours(row: str) -> bool:
    part = parse_tool_part(row)
    return not isinstance(part, str) and part.ours


def _left_by_the_free(row: str) -> bool:
    """Still live, or ended by the reject/abort itself: ours to mark. Never a result someone gave meanwhile."""
    part = parse_tool_part(row)
    return not isinstance(part, str) and (part.live or part.ended_by_a_free)


def _check_free(client: ServerClient, sid: str, directory: str) -> tuple[bool, str]:
    """Free only when absent from /session/status AND the busy-gated no-op is not refused.

    The status map and the runner can disagree (docs/opencode.md); the gate reads the runner.
    """
    status = client.busy_sessions(directory)
    if sid in status:
        return False, f"still {status[sid]} in /session/status"
    info = client.session(sid, directory)
    if info is None:
        return True, "absent from /session/status; the session no longer exists"
    if info.get("revert"):
        return True, "absent from /session/status (revert is set: no unrevert probe)"
    try:
        if client.probe_idle(sid, directory):
            return True, "absent from /session/status; the unrevert probe was not refused"
    except ServerError as exc:
        if exc.kind != "route-missing":
            raise
        return True, "absent from /session/status (no unrevert route to probe)"
    return False, "absent from /session/status, but the unrevert probe was refused as busy"
