"""The application's vocabulary: evidence, verdicts, plans, outcomes and the reports that carry them.

One object flows one way through a pass (watchdogd/pipeline.py): a `Candidate` (made by the store,
watchdogd/opencode/rows.py) gains its `Ownership` evidence, its `Verdict` and its `Plan` on one
`Assessment`; acting on the plan gives an `ActionResult`. Decisions are enums; prose lives in
`why`/`detail` fields and is never parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from watchdogd.backoff import Backoff
from watchdogd.opencode.rows import BadRow, Candidate, Holder, ProcessKind, SessionInfo
from watchdogd.opencode.schema import SchemaVerdict


class OwnerKind(StrEnum):
    NONE = "none"  # no process holds the DB
    RESTARTED = "restarted"  # every holder started after the part: opencode never adopts old runs
    HELD = "held"  # a process that may own it holds the DB; no API evidence either way
    LIVE = "live"  # a reachable server reports the session busy
    LIVE_IDLE = "live-idle"  # the reachable server that holds the DB reports the session idle
    UNREACHABLE = "live-unreachable"  # a holder that may own it has no reachable API


ORPHAN_KINDS = frozenset({OwnerKind.NONE, OwnerKind.RESTARTED, OwnerKind.LIVE_IDLE})


@dataclass(frozen=True)
class Ownership:
    kind: OwnerKind
    pids: tuple[int, ...] = ()
    url: str | None = None
    detail: str = ""
    live_plan: Plan | None = None  # LIVE: how its server can free it (reject, abort, or report why not)
    process: ProcessKind | None = None  # UNREACHABLE: what the process without an API is, when known

    @property
    def orphan(self) -> bool:
        return self.kind in ORPHAN_KINDS

    @property
    def label(self) -> str:
        if self.kind in (OwnerKind.LIVE, OwnerKind.LIVE_IDLE) and self.url:
            return f"{self.kind.value}:{self.url}"
        if self.kind in (OwnerKind.HELD, OwnerKind.UNREACHABLE) and self.pids:
            return f"{self.kind.value}:{','.join(map(str, self.pids))}"
        return self.kind.value


class ChildState(StrEnum):
    NONE = "none"  # not a task, or no child activity known
    ACTIVE = "active"  # the subagent is busy or has a candidate that has not expired
    STUCK = "stuck"  # the subagent itself has expired candidates: free the child, not the parent


@dataclass(frozen=True)
class Sighting:
    """When any command first saw a candidate, and last saw an owner for it (persisted in the journal)."""

    first_seen: datetime
    owner_seen: datetime | None = None


@dataclass(frozen=True)
class Undone:
    """The last `undo` of a part (from the journal): the part is left alone while its row still holds
    exactly the image that undo restored."""

    action_id: int  # the undo's own journal row
    at: datetime
    part_data: str
    part_updated: object = None  # the time_updated undo restored (None: not recorded, `data` alone decides)


class Decision(StrEnum):
    KEEP = "keep"
    EXPIRED = "expired"
    NEVER = "never"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    expires_at: datetime | None = None
    age_s: float = 0.0

    @property
    def expired(self) -> bool:
        return self.decision is Decision.EXPIRED


class Route(StrEnum):
    """How an expired candidate is freed (the journal's `route` column holds the value)."""

    DB_REPAIR = "db-repair"  # compare-and-set in the DB: an orphan
    REJECT_QUESTION = "reject-question"  # through its live server: reject the pending question
    ABORT = "abort"  # through its live server: abort the session
    PATCH_PART = "patch-part"  # idle on a reachable server: PATCH the part through it
    STOP_PROCESS = "stop-process"  # opt-in: end the owner that has no API (SIGINT, SIGTERM), then DB repair
    REPORT = "report"  # nothing may be written: reported, with why
    UNDO = "undo"  # journal rows of `undo`, never planned for a candidate


@dataclass(frozen=True)
class Plan:
    """What `reap` does with a candidate, decided once per pass (pipeline: judge and plan)."""

    route: Route
    why: str = ""  # for REPORT: why nothing is written

    @property
    def label(self) -> str:
        """The route as `scan`, `status` and `reap --json` show it: `report: <why>` for a report."""
        return (
            f"{self.route.value}: {self.why}" if self.route is Route.REPORT and self.why else self.route.value
        )


class Outcome(StrEnum):
    """How a journaled action (or a planned one) ended; the journal's `outcome` column holds the value."""

    PLANNED = "planned"  # journaled, not settled yet (a crash in between: settled by reconcile)
    DONE = "done"
    SKIPPED = "skipped"  # nothing written: the row changed, or the session is no longer busy
    FAILED = "failed"
    REPORTED = "reported"  # expired, but nothing may be written
    UNDONE = "undone"
    DRY_RUN = "dry-run"  # `reap --dry-run`: never journaled


@dataclass(frozen=True)
class Assessment:
    """One candidate with everything the pass learned about it, carried forward to the actors."""

    candidate: Candidate
    ownership: Ownership
    verdict: Verdict
    sighting: Sighting
    session: SessionInfo | None = None
    queued: tuple[tuple[str, int], ...] = ()  # (message id, ms) of prompts sent while a live run holds it
    child_at_work: bool = False  # a `task` part whose subagent its server reports busy, or could not tell
    plan: Plan | None = None  # None: not due (kept, or never)
    # the last attempts on this row and plan did not free it (watchdogd/backoff.py)
    backoff: Backoff | None = None
    undone: Undone | None = None  # kept because `undo` put it back and its row still holds that image

    def journal_fields(self) -> dict[str, str]:
        """What every journal row of an action on this candidate records: which part, and why."""
        cand = self.candidate
        return {
            "db": str(cand.db),
            "session_id": cand.session_id,
            "message_id": cand.message_id,
            "part_id": cand.part_id,
            "tool": cand.tool,
            "reason": self.verdict.reason,
        }


@dataclass
class DBReport:
    """One DB as one pass saw it: its write gate, its schema, its candidates' assessments."""

    path: Path
    schema: SchemaVerdict | None = None
    error: str | None = None
    holders: list[Holder] = field(default_factory=list)
    assessments: list[Assessment] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    refusal: str | None = None  # why this process must not write the DB (writegate), even if it can read it

    @property
    def ok(self) -> bool:
        """Writable: readable, a known layout, and the write gate allows it."""
        return (
            self.error is None and self.schema is not None and self.schema.writable and self.refusal is None
        )

    @property
    def not_writable(self) -> str:
        """Why `ok` is false, in one line."""
        if self.error:
            return self.error
        if self.schema is not None and not self.schema.writable:
            return self.schema.reason
        return self.refusal or "schema not read"

    @property
    def failed(self) -> bool:
        """Could not be read although the file exists (a missing DB is waited for, not an error)."""
        return bool(self.error) and self.path.exists()


@dataclass(frozen=True)
class ActionResult:
    """What acting on one assessment did: the plan actually taken, how it ended, the journal row."""

    item: Assessment
    plan: Plan
    outcome: Outcome
    detail: str = ""
    action_id: int | None = None
    sent: bool = False  # a reject/abort was answered for this run (never sent again inside a back-off)

    @property
    def route(self) -> Route:
        return self.plan.route

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.DONE, Outcome.DRY_RUN)


@dataclass(frozen=True)
class ServerSeen:
    """An opencode server the pass asked (its version answered `GET /global/health`)."""

    url: str
    version: str


@dataclass(frozen=True)
class PassResult:
    """What one pass (watchdogd/pipeline.py) found and did; the status file, STATUS=, the notifiers, the
    metrics and the CLI output all read it."""

    started: datetime
    duration_s: float
    ok: bool  # the pass ran to the end (an unreadable DB is a fact it reports, not a failed pass)
    evaluated: bool  # the pass judged some DB again (else `reports` are the previous passes')
    reports: tuple[DBReport, ...] = ()
    outcomes: tuple[ActionResult, ...] = ()
    next_deadline: datetime | None = None
    servers: tuple[ServerSeen, ...] = field(default=())

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)
