"""Live-server layer: ownership evidence and recovery through the owning opencode server's HTTP API.

`build_live` returns one object that is both a `survey.LiveEvidence` and a `reaper.LiveRecovery`.
One object serves one pass (or one CLI command): server answers are cached for its lifetime, and
every action re-reads what it acts on.

Rules (DESIGN.md, reference §2-§3, §10): a session that a reachable server reports busy is never
written in the DB; it is freed by rejecting its question, else by abort (then the leaked question
is rejected); a free counts only when `/session/status` and the gated no-op probe agree; every call
carries `?directory=<session.directory>`; a parent `task` is never aborted for its subagent.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from watchdogd.config import Settings
from watchdogd.models import (
    ActionResult,
    Assessment,
    Candidate,
    Holder,
    Outcome,
    OwnerKind,
    Ownership,
    Plan,
    Route,
)
from watchdogd.opencode.discovery_net import loopback_listeners
from watchdogd.opencode.endpoints import Endpoint, Endpoints
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


class LiveLayer:
    """Evidence for one pass, and the recovery that acts on it."""

    def __init__(self, settings: Settings, *, listeners: Callable[[list[int]], dict] = loopback_listeners,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.timeout = settings.live.timeout
        self._sleep = sleep
        self._servers = Endpoints(settings, listeners)
        self._db_holders: dict[Path, dict[int, Endpoint]] = {}
        self._answers: dict[tuple[str, str, str], object] = {}  # (url, what, directory) -> value | ServerError
        self._working_children: set[tuple[Path, str]] = set()  # (db, session) with a subagent at work

    def servers_reached(self) -> list[tuple[str, str]]:
        """(url, opencode version) of the servers this pass reached."""
        return [(e.url, e.version) for e in self._servers.reached() if e.version]

    # -- cached answers (one pass) -------------------------------------------------------------
    def _ask(self, endpoint: Endpoint | None, what: str, directory: str):
        """The server's answer (busy map, questions, permissions), or None when it gave none."""
        if not self._servers.ready(endpoint):
            return None
        key = (endpoint.url, what, directory)
        if key not in self._answers:
            client = endpoint.client
            call = {"status": client.busy_sessions, "questions": client.questions, "permissions": client.permissions}[what]
            try:
                self._answers[key] = call(directory)
            except ServerError as exc:
                self._answers[key] = exc
                if exc.kind in ("timeout", "unreachable", "auth"):
                    endpoint.failed(exc)  # a dead server is not asked again this pass
        answer = self._answers[key]
        return None if isinstance(answer, ServerError) else answer

    def _silence(self, endpoint: Endpoint | None, directory: str) -> str:
        if endpoint is None:
            return "no server found"
        answer = self._answers.get((endpoint.url, "status", directory))
        if isinstance(answer, ServerError):
            return describe_error(answer, endpoint.url)
        return endpoint.error or "no answer"

    # -- LiveEvidence --------------------------------------------------------------------------
    def ownership(self, candidate: Candidate, base: Ownership, holders: list[Holder]) -> Ownership:
        cand = candidate
        if cand.db not in self._db_holders:
            owner = _owner_uid(cand.db)
            self._db_holders[cand.db] = {h.pid: self._servers.for_holder(h, owner) for h in holders}
        endpoints = self._db_holders[cand.db]
        directory = cand.directory
        if not directory:
            return replace(base, detail="the session's directory is unknown (no session row): its server cannot be asked")
        for endpoint in [*endpoints.values(), *self._servers.remote()]:
            status = self._ask(endpoint, "status", directory)
            if status is not None and cand.session_id in status:
                return self._busy_owner(cand, base, endpoint, status[cand.session_id])
        answered = [pid for pid, e in endpoints.items() if self._ask(e, "status", directory) is not None]
        if base.kind is OwnerKind.HELD:
            silent = [pid for pid in base.pids if pid not in answered]
            if silent:
                why = "; ".join(_about(pid, self._silence(endpoints.get(pid), directory)) for pid in silent)
                return Ownership(OwnerKind.UNREACHABLE, tuple(silent), detail=why)
        if answered:  # a reachable server that holds the DB says idle: an orphan it can help repair
            endpoint = endpoints[answered[0]]
            return Ownership(OwnerKind.LIVE_IDLE, base.pids, endpoint.url,
                             f"idle on {endpoint.url} (opencode {endpoint.version})")
        return base

    def _busy_owner(self, cand: Candidate, base: Ownership, endpoint: Endpoint, state: str) -> Ownership:
        detail = f"{state} on {endpoint.url} (opencode {endpoint.version})"
        # A server that started after the part cannot be running it: it is busy with a newer prompt.
        newer = endpoint.pid is not None and (base.kind is OwnerKind.RESTARTED or
                                              (base.kind is OwnerKind.HELD and endpoint.pid not in base.pids))
        if newer:
            plan = Plan(Route.REPORT, f"the session is busy with a newer run on {endpoint.url}; this part is older "
                                      "than that server, repaired once the session is idle")
        elif cand.tool == "question" and self._listed_question(endpoint, cand) is not None:
            plan = Plan(REJECT)
        else:
            plan = Plan(ABORT)
        asks = [p for p in self._ask(endpoint, "permissions", cand.directory) or [] if p.get("sessionID") == cand.session_id]
        if asks:
            detail += "; pending permission asks: " + ", ".join(f"{p.get('id')} ({p.get('permission')})" for p in asks)
        return Ownership(OwnerKind.LIVE, (endpoint.pid,) if endpoint.pid else (), endpoint.url, detail, plan)

    def _listed_question(self, endpoint: Endpoint, cand: Candidate, fresh: bool = False) -> dict | None:
        """The pending request of this very call (`tool.callID`, `tool.messageID`), if listed."""
        if fresh:
            try:
                listed = endpoint.client.questions(cand.directory)
            except ServerError as exc:
                if exc.kind != "route-missing":
                    raise
                listed = []
        else:
            listed = self._ask(endpoint, "questions", cand.directory)
        for request in listed or []:
            tool = request.get("tool") if isinstance(request.get("tool"), dict) else {}
            if (request.get("sessionID") == cand.session_id and tool.get("callID") == cand.call_id
                    and tool.get("messageID", cand.message_id) == cand.message_id and isinstance(request.get("id"), str)):
                return request
        return None

    def child_busy(self, candidate: Candidate) -> bool | None:
        """Busy when any server lists the child; idle only when every holder of the DB answered."""
        child, directory = candidate.child_session_id, candidate.directory
        if not child or not directory:
            return None
        endpoints = self._db_holders.get(candidate.db, {})
        answers = [self._ask(e, "status", directory) for e in [*endpoints.values(), *self._servers.remote()]]
        busy = True if any(a is not None and child in a for a in answers) else None
        if busy is None and all(self._ask(e, "status", directory) is not None for e in endpoints.values()):
            busy = False
        if busy is not False:
            self._working_children.add((candidate.db, candidate.session_id))
        return busy

    # -- LiveRecovery --------------------------------------------------------------------------
    def route(self, item: Assessment) -> Plan | None:
        cand, owner = item.candidate, item.ownership
        if owner.kind is OwnerKind.LIVE_IDLE:
            return Plan(PATCH_PART)
        if owner.kind is not OwnerKind.LIVE:
            return None
        plan = owner.live_plan
        if plan is None:
            return Plan(Route.REPORT, f"live owner {owner.label}; not asked in this pass")
        if plan.route is ABORT and (cand.db, cand.session_id) in self._working_children:
            return Plan(Route.REPORT, "an abort would cancel a subagent of this session that is busy or in an "
                                      "unknown state; free the child instead")
        return plan

    def free(self, item: Assessment, store: OpencodeStore, reaper) -> ActionResult:
        plan = self.route(item)
        try:
            if plan is not None and plan.route is PATCH_PART:
                return self._repair_orphan(item, store, reaper)
            if plan is not None and plan.route in (REJECT, ABORT):
                return self._free_busy(item, store, reaper, plan.route)
        except StoreError as exc:
            return ActionResult(item, plan or Plan(Route.REPORT), Outcome.FAILED, str(exc))
        plan = plan or Plan(Route.REPORT, "no live route")
        return ActionResult(item, plan, Outcome.REPORTED, plan.label)

    def _endpoint(self, item: Assessment) -> Endpoint | None:
        return self._servers.by_url(item.ownership.url)

    def _free_busy(self, item: Assessment, store: OpencodeStore, reaper, route: Route) -> ActionResult:
        cand, journal = item.candidate, reaper.journal
        endpoint = self._endpoint(item)
        if endpoint is None or endpoint.client is None or not cand.directory:
            return ActionResult(item, Plan(route), Outcome.FAILED, "its server is no longer known")
        client, directory, sid = endpoint.client, cand.directory, cand.session_id
        log = reaper.log.bind(session=sid, part=cand.part_id, server=endpoint.url, version=endpoint.version)
        # A fresh look first: the pass's answers may be seconds old, and nothing is done yet.
        try:
            if sid not in client.busy_sessions(directory):
                return ActionResult(item, Plan(route), Outcome.SKIPPED, f"no longer busy on {endpoint.url}; re-checked next pass")
            request = self._listed_question(endpoint, cand, fresh=True) if route == REJECT else None
            asks = [p for p in client.permissions(directory) if p.get("sessionID") == sid]
        except ServerError as exc:
            return ActionResult(item, Plan(route), Outcome.FAILED, describe_error(exc, endpoint.url))
        route = REJECT if request is not None else ABORT
        queued = store.queued_user_messages(sid, cand.start_ms or 0)
        action_id = journal.plan(db=str(cand.db), session_id=sid, message_id=cand.message_id, part_id=cand.part_id,
                                 tool=cand.tool, route=route, reason=item.verdict.reason, part_before=cand.data,
                                 server_version=endpoint.version)
        steps: list[str] = []
        if asks:
            steps.append("pending permission asks: " + ", ".join(f"{p.get('id')} ({p.get('permission')})" for p in asks))
            log.warning("pending permission asks on the session", permissions=[p.get("id") for p in asks])
        try:
            if request is not None:
                client.reject_question(request["id"], directory)
                steps.append(f"rejected question {request['id']}")
            else:
                client.abort(sid, directory)
                steps.append("aborted the session")
                steps += self._reject_leaked(client, sid, directory)
            free, how = self._verify(client, sid, directory)
            if not free and self.settings.live.allow_dispose:
                client.dispose(directory)
                steps.append(f"disposed the instance of {directory}")
                steps += self._reject_leaked(client, sid, directory)
                free, how = self._verify(client, sid, directory)
        except ServerError as exc:
            detail = "; ".join(steps + [describe_error(exc, endpoint.url), "no DB write"])
            journal.settle(action_id, Outcome.FAILED, detail, endpoint.version)
            return ActionResult(item, Plan(route), Outcome.FAILED, detail, action_id)
        if not free:
            hint = "" if self.settings.live.allow_dispose else " (POST /instance/dispose is off: live.allow_dispose)"
            detail = "; ".join(steps + [f"still busy: {how}{hint}", "no DB write"])
            journal.settle(action_id, Outcome.FAILED, detail, endpoint.version)
            return ActionResult(item, Plan(route), Outcome.FAILED, detail, action_id)
        steps.append(f"verified: {how}")
        if queued:
            prompts = ", ".join(f"{mid} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ms / 1000))})" for mid, ms in queued)
            steps.append(f"prompts sent while stuck, which opencode drops, re-send them: {prompts}")
            log.warning("prompts queued while stuck; opencode drops them, re-send them", messages=[m for m, _ in queued])
        journal.settle(action_id, Outcome.DONE, "; ".join(steps), endpoint.version)
        steps += self._finish_rows(item, store, reaper, endpoint, f"freed through its opencode server ({route})")
        return ActionResult(item, Plan(route), Outcome.DONE, "; ".join(steps), action_id)

    @staticmethod
    def _reject_leaked(client: ServerClient, sid: str, directory: str) -> list[str]:
        """Abort leaves the session's question listed (upstream #46163); a UI would still show it."""
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

    def _finish_rows(self, item: Assessment, store: OpencodeStore, reaper, endpoint: Endpoint, why: str) -> list[str]:
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
        patched, detail, _ = self._patch(item, store, reaper, endpoint, row, why)
        return [detail] + (self._finish_message(item, store, reaper, why) if patched else [])

    def _patch(self, item: Assessment, store: OpencodeStore, reaper, endpoint: Endpoint, row: str,
               why: str) -> tuple[int | None, str, ServerError | None]:
        """PATCH the part to "abandoned" through the server; journaled with the rows as stored."""
        cand, journal = item.candidate, reaper.journal
        action_id = journal.plan(db=str(cand.db), session_id=cand.session_id, message_id=cand.message_id,
                                 part_id=cand.part_id, tool=cand.tool, route=PATCH_PART, reason=item.verdict.reason,
                                 part_before=row, server_version=endpoint.version)
        text = abandoned_text(cand.tool, cand.status, item.verdict.age_s, why)
        part = json.loads(abandoned_part(row, text, _now_ms(), action_id, item.verdict.reason))
        try:
            endpoint.client.patch_part(cand.session_id, cand.message_id, cand.part_id, part, cand.directory)
        except ServerError as exc:
            detail = f"PATCH of the part failed: {describe_error(exc, endpoint.url)}"
            journal.settle(action_id, Outcome.FAILED, detail, endpoint.version)
            return None, detail, exc
        stored = store.row_data("part", cand.part_id)
        if stored is None or not _ours(stored):
            detail = "PATCH of the part answered, but the row does not hold it"
            journal.settle(action_id, Outcome.FAILED, detail, endpoint.version)
            return None, detail, None
        journal.update_rows(action_id, part_after=stored)
        journal.settle(action_id, Outcome.DONE, "part marked abandoned through the server", endpoint.version)
        return action_id, f"part marked abandoned through the server (#{action_id})", None

    def _finish_message(self, item: Assessment, store: OpencodeStore, reaper, why: str) -> list[str]:
        """No route completes a message: a compare-and-set in the DB, now that the session is idle."""
        cand = item.candidate
        message = store.row_data("message", cand.message_id)
        if message is None or finished_message(message, "", 0) is None:
            return []
        schema = store.schema()
        if not schema.writable:
            return [f"message left unfinished: DB not writable ({schema.reason})"]
        current = store.row_data("part", cand.part_id) or cand.data
        outcome = reaper.repair_in_db(replace(item, candidate=replace(cand, data=current)), store, why, part_change=False)
        tag = f" (#{outcome.action_id})" if outcome.action_id else ""
        return [f"message completed in the DB{tag}" if outcome.outcome is Outcome.DONE else
                f"message not completed: {outcome.outcome}{tag}: {outcome.detail}"]

    def _repair_orphan(self, item: Assessment, store: OpencodeStore, reaper) -> ActionResult:
        """Idle on a reachable server, `running` in the DB: PATCH the part, complete the message."""
        cand = item.candidate
        endpoint = self._endpoint(item)
        if endpoint is None or endpoint.client is None or not cand.directory:
            return ActionResult(item, Plan(PATCH_PART), Outcome.FAILED, "its server is no longer known")
        why = "its server reports the session idle (the run that owned it is gone)"
        try:
            free, how = _check_free(endpoint.client, cand.session_id, cand.directory)
            if not free:
                return ActionResult(item, Plan(PATCH_PART), Outcome.SKIPPED, f"not idle on {endpoint.url} ({how}); re-checked next pass")
        except ServerError as exc:
            return ActionResult(item, Plan(PATCH_PART), Outcome.FAILED, describe_error(exc, endpoint.url))
        current = store.row_data("part", cand.part_id)
        if current != cand.data:
            return ActionResult(item, Plan(PATCH_PART), Outcome.SKIPPED, "the part changed since it was read (opencode moved on)")
        action_id, detail, error = self._patch(item, store, reaper, endpoint, current, why)
        if action_id is None:
            if error is not None and error.kind in ("route-missing", "http"):
                # The server answered (so it is alive and says idle) but will not take the PATCH.
                fallback = reaper.repair_in_db(item, store, why)
                return replace(fallback, detail=f"{detail}; repaired in the DB instead: {fallback.detail}")
            return ActionResult(item, Plan(PATCH_PART), Outcome.FAILED, detail)
        steps = [detail] + self._finish_message(item, store, reaper, why)
        return ActionResult(item, Plan(PATCH_PART), Outcome.DONE, "; ".join(steps), action_id)


def _about(pid: int, message: str) -> str:
    """Name the pid once: discovery's messages already start with it."""
    return message if message.startswith(f"pid {pid} ") else f"pid {pid}: {message}"


def _owner_uid(db: Path) -> int | None:
    try:
        return db.stat().st_uid
    except OSError:
        return None


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

    The status map and the runner can disagree (internals §1.3); the gate reads the runner.
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


def build_live(settings: Settings, dbs: list[Path]) -> LiveLayer | None:
    """None when no server can be used at all (no discovery, nothing configured)."""
    if not settings.servers and not settings.live.discover:
        return None
    return LiveLayer(settings)
