"""Live-server evidence: which reachable opencode server holds a session busy, and how it could be freed.

One `LiveEvidence` serves one pass (or one CLI command): server answers are cached for its lifetime.
What the act stage needs comes back on the `Ownership` it returns (the server's URL and, for a busy
session, the live plan: reject the listed question, else abort, or report why not); the recovery
(watchdogd/live_recovery.py) looks the endpoint up by that URL and re-reads what it acts on.
Rules: docs/architecture.md, and docs/opencode.md for the server API (every call carries `?directory=`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from watchdogd.config import Settings
from watchdogd.models import (
    Candidate,
    Holder,
    OwnerKind,
    Ownership,
    Plan,
    ProcessKind,
    Route,
)
from watchdogd.opencode.discovery_net import Listener, loopback_listeners, port_listeners
from watchdogd.opencode.endpoints import ConfiguredServer, Endpoint, Endpoints, ServerRules
from watchdogd.opencode.processes import describe, process_kind
from watchdogd.opencode.server import ServerError, describe_error
from watchdogd.stopping import unreachable_plan


def server_rules(settings: Settings) -> ServerRules:
    """`[[servers]]` and `[live]` as the adapter takes them (nothing under opencode/ reads the config)."""
    servers = tuple(
        ConfiguredServer(
            s.url, s.username, s.password.get_secret_value() if s.password else None, s.password_file
        )
        for s in settings.servers
    )
    live = settings.live
    return ServerRules(servers, live.timeout, live.discover, live.allow_insecure_remote)


class LiveEvidence:
    """What reachable opencode servers say about the candidates of one pass."""

    def __init__(
        self,
        settings: Settings,
        *,
        listeners: Callable[[list[int]], dict] = loopback_listeners,
        on_port: Callable[[int], list[Listener]] = port_listeners,
    ):
        self.settings = settings
        self.timeout = settings.live.timeout
        self._servers = Endpoints(server_rules(settings), listeners, on_port)
        self._db_holders: dict[Path, dict[int, Endpoint]] = {}
        self._db_remote: dict[Path, list[Endpoint]] = {}  # configured servers that may be asked about a DB
        self._answers: dict[
            tuple[str, str, str], object
        ] = {}  # (url, what, directory) -> value | ServerError

    def servers_reached(self) -> list[tuple[str, str]]:
        """(url, opencode version) of the servers this pass reached."""
        return [(e.url, e.version) for e in self._servers.reached() if e.version]

    def endpoint(self, url: str | None) -> Endpoint | None:
        """The server behind an ownership's URL (the one that answered this pass)."""
        return self._servers.by_url(url)

    # -- cached answers (one pass) -------------------------------------------------------------
    def _ask(self, endpoint: Endpoint | None, what: str, directory: str):
        """The server's answer (busy map, questions, permissions), or None when it gave none."""
        if not self._servers.ready(endpoint):
            return None
        key = (endpoint.url, what, directory)
        if key not in self._answers:
            client = endpoint.client
            call = {
                "status": client.busy_sessions,
                "questions": client.questions,
                "permissions": client.permissions,
            }[what]
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

    # -- evidence ------------------------------------------------------------------------------
    def ownership(self, candidate: Candidate, base: Ownership, holders: list[Holder]) -> Ownership:
        cand = candidate
        if cand.db not in self._db_holders:
            owner = _owner_uid(cand.db)
            self._db_holders[cand.db] = {h.pid: self._servers.for_holder(h, owner) for h in holders}
            self._db_remote[cand.db] = self._servers.remote(owner)
        endpoints = self._db_holders[cand.db]
        directory = cand.directory
        if not directory:
            return replace(
                base, detail="the session's directory is unknown (no session row): its server cannot be asked"
            )
        for endpoint in [*endpoints.values(), *self._db_remote[cand.db]]:
            status = self._ask(endpoint, "status", directory)
            if status is not None and cand.session_id in status:
                return self._busy_owner(cand, base, endpoint, status[cand.session_id])
        answered = [pid for pid, e in endpoints.items() if self._ask(e, "status", directory) is not None]
        if base.kind is OwnerKind.HELD:
            silent = [pid for pid in base.pids if pid not in answered]
            if silent:
                return self._unreachable(cand, silent, endpoints, directory)
        if answered:  # a reachable server that holds the DB says idle: an orphan it can help repair
            endpoint = endpoints[answered[0]]
            return Ownership(
                OwnerKind.LIVE_IDLE,
                base.pids,
                endpoint.url,
                f"idle on {endpoint.url} (opencode {endpoint.version})",
            )
        return base

    def _unreachable(
        self, cand: Candidate, silent: list[int], endpoints: dict[int, Endpoint], directory: str
    ) -> Ownership:
        """Holders that may own the part and cannot be asked: what each is ("opencode TUI, pid N, no HTTP API")."""
        kinds: dict[int, ProcessKind | None] = {}
        why = []
        for pid in silent:
            endpoint = endpoints.get(pid)
            kinds[pid] = process_kind(pid) if endpoint is not None and not endpoint.listening else None
            if kinds[pid] is not None:
                why.append(describe(kinds[pid], pid))
            else:
                why.append(_about(pid, self._silence(endpoint, directory)))
        # One process without an API: its kind decides the advice (and whether it may be stopped).
        process = kinds.get(silent[0]) if len(silent) == 1 else None
        owner = Ownership(OwnerKind.UNREACHABLE, tuple(silent), detail="; ".join(why), process=process)
        return replace(owner, live_plan=unreachable_plan(owner, cand.tool, self.settings))

    def _busy_owner(self, cand: Candidate, base: Ownership, endpoint: Endpoint, state: str) -> Ownership:
        detail = f"{state} on {endpoint.url} (opencode {endpoint.version})"
        # A server that started after the part cannot be running it: it is busy with a newer prompt.
        newer = endpoint.pid is not None and (
            base.kind is OwnerKind.RESTARTED
            or (base.kind is OwnerKind.HELD and endpoint.pid not in base.pids)
        )
        if newer:
            plan = Plan(
                Route.REPORT,
                f"the session is busy with a newer run on {endpoint.url}; this part is older "
                "than that server, repaired once the session is idle",
            )
        elif cand.tool == "question" and self.listed_question(endpoint, cand) is not None:
            plan = Plan(Route.REJECT_QUESTION)
        else:
            plan = Plan(Route.ABORT)
        asks = [
            p
            for p in self._ask(endpoint, "permissions", cand.directory) or []
            if p.get("sessionID") == cand.session_id
        ]
        if asks:
            detail += "; pending permission asks: " + ", ".join(
                f"{p.get('id')} ({p.get('permission')})" for p in asks
            )
        return Ownership(OwnerKind.LIVE, (endpoint.pid,) if endpoint.pid else (), endpoint.url, detail, plan)

    def listed_question(self, endpoint: Endpoint, cand: Candidate, fresh: bool = False) -> dict | None:
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
            if (
                request.get("sessionID") == cand.session_id
                and tool.get("callID") == cand.call_id
                and tool.get("messageID", cand.message_id) == cand.message_id
                and isinstance(request.get("id"), str)
            ):
                return request
        return None

    def child_busy(self, candidate: Candidate) -> bool | None:
        """Busy when any server lists the child; idle only when every holder of the DB answered."""
        child, directory = candidate.child_session_id, candidate.directory
        if not child or not directory:
            return None
        endpoints = self._db_holders.get(candidate.db, {})
        remote = self._db_remote.get(candidate.db, [])
        answers = [self._ask(e, "status", directory) for e in [*endpoints.values(), *remote]]
        busy = True if any(a is not None and child in a for a in answers) else None
        if busy is None and all(self._ask(e, "status", directory) is not None for e in endpoints.values()):
            busy = False
        return busy


def _about(pid: int, message: str) -> str:
    """Name the pid once: discovery's messages already start with it."""
    return message if message.startswith(f"pid {pid} ") else f"pid {pid}: {message}"


def _owner_uid(db: Path) -> int | None:
    try:
        return db.stat().st_uid
    except OSError:
        return None


def build_live(settings: Settings, dbs: list[Path] | None = None) -> LiveEvidence | None:
    """None when no server can be used at all (no discovery, nothing configured)."""
    if not settings.servers and not settings.live.discover:
        return None
    return LiveEvidence(settings)
