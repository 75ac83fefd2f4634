"""The live layer end to end (survey → policy → reaper) against a fake API answering as 1.15.3 or 1.18.33."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests import dbfactory as f  # noqa: E402
from tests.passes import one_pass  # noqa: E402
from tests.support.fake_api import FakeAPI  # noqa: E402
from watchdogd.backoff import BackoffBook  # noqa: E402
from watchdogd.config import Settings  # noqa: E402
from watchdogd.db_repair import DBRepairer  # noqa: E402
from watchdogd.journal import Journal  # noqa: E402
from watchdogd.live_evidence import (
    LiveEvidence,  # noqa: E402
    build_live,  # noqa: E402
)
from watchdogd.live_recovery import ABORT, PATCH_PART, REJECT, LiveRecovery  # noqa: E402
from watchdogd.models import Decision, Holder, OwnerKind  # noqa: E402
from watchdogd.opencode.discovery_net import Listener  # noqa: E402
from watchdogd.opencode.repair import MARKER  # noqa: E402
from watchdogd.opencode.store import OpencodeStore  # noqa: E402
from watchdogd.undo import undo_action  # noqa: E402

VERSIONS = ("1.15.3", "1.18.33")
DIR = "/home/user/proj"
PID = 4_999_999  # above any real pid_max: /proc never has it
ONE_SECOND = {"question": "1s", "task": "1s", "bash": "1s", "*_*": "1s"}
# live.timeout bounds each request AND how long a free is verified. The fake answers in milliseconds, but a
# loaded 2-core machine once took longer than 0.5 s (a reject that timed out): requests get 10 s, and only the
# tests that must wait out the verification (a session that stays busy) use a short one.
ANSWER_S = 10.0
VERIFY_S = 2.0


def make_settings(tmp_path: Path, **live) -> Settings:
    servers = live.pop("servers", [])
    return Settings(
        state_dir=tmp_path / "state",
        servers=servers,
        policy={"orphan_grace": "0s", "pending": "1s", "default": "1s", "tools": ONE_SECOND},
        live={"timeout": ANSWER_S, **live},
    )


def holder(
    started_ago_s: float = 36000, cmdline: str = "/usr/local/bin/opencode serve --port 4096", pid: int = PID
):
    return Holder(pid, time.time() - started_ago_s, cmdline)


def listeners_to(*apis: FakeAPI, pid: int = PID):
    return lambda pids: {
        p: [Listener("127.0.0.1", a.port, os.getuid()) for a in apis] if p == pid else [] for p in pids
    }


class Env:
    def __init__(self, tmp_path: Path, version: str):
        self.tmp = tmp_path
        self.version = version
        self.db = f.make_db(tmp_path / "opencode.db", version)

    def run(self, settings: Settings, holders, layer, *, reap: bool = True):
        journal = Journal(settings.state_dir)
        try:
            result = one_pass(self.db, journal, settings, holders, layer, act=reap)
            [report] = result.reports
            routes = {a.candidate.part_id: a.plan.label if a.plan else "" for a in report.assessments}
            outcomes = list(result.outcomes)
            actions = list(reversed(journal.recent(50)))
        finally:
            journal.close()
        return report, routes, outcomes, actions

    def run_at(self, settings: Settings, holders, layer, now: datetime, backoffs: BackoffBook):
        """A daemon's pass at `now` with the back-off it keeps across passes: (report, outcomes)."""
        journal = Journal(settings.state_dir)
        try:
            result = one_pass(self.db, journal, settings, holders, layer, now, backoffs=backoffs)
        finally:
            journal.close()
        return result.reports[0], list(result.outcomes)


@pytest.fixture(params=VERSIONS)
def version(request) -> str:
    return request.param


@pytest.fixture
def env(tmp_path, version) -> Env:
    return Env(tmp_path, version)


def stuck_on(api: FakeAPI, env: Env, **kwargs) -> f.Stuck:
    stuck = f.stuck_question(env.db, age_s=10, **kwargs)
    api.add_session(stuck.session_id, kwargs.get("directory", DIR))
    api.parts[stuck.session_id] = (stuck.message_id, stuck.part_id)
    return stuck


def test_a_live_stuck_question_is_rejected_verified_and_marked(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path)
        layer = LiveEvidence(settings, listeners=listeners_to(api))
        report, routes, [outcome], actions = env.run(settings, [holder()], layer)

        [item] = report.assessments
        assert item.ownership.kind is OwnerKind.LIVE and item.ownership.label == f"live:{api.url}"
        assert routes[stuck.part_id] == REJECT
        assert outcome.outcome == "done", outcome.detail
        assert "rejected question que_fake1" in outcome.detail and "unrevert probe" in outcome.detail
        assert not api.sessions[stuck.session_id]["busy"] and api.questions == []
        assert not api.calls("POST", "/abort")
        # every call that concerns the session is scoped to its directory
        assert all(q.get("directory") == DIR for _m, p, q, _h in api.calls() if p != "/global/health")

        part = f.read_data(env.db, "part", stuck.part_id)
        assert part["state"]["status"] == "error"
        assert part["state"]["error"].startswith("Abandoned by opencode-watchdogd")
        assert MARKER in part["state"]["metadata"]
        message = f.read_data(env.db, "message", stuck.message_id)
        assert message["finish"] == "tool-calls" and message["time"]["completed"]  # the server's own finish

        live_action, patch_action = actions
        assert (live_action.route, live_action.outcome, live_action.server_version) == (
            REJECT,
            "done",
            env.version,
        )
        assert live_action.part_before == stuck_data(env, stuck) and live_action.part_after is None
        assert (patch_action.route, patch_action.outcome, patch_action.server_version) == (
            PATCH_PART,
            "done",
            env.version,
        )
        assert "The user dismissed this question" in patch_action.part_before
        assert patch_action.part_after == f.read_text(env.db, "part", stuck.part_id)


def test_undo_of_a_live_free_restores_the_servers_row_never_the_running_one(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path)
        env.run(settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api)))
    journal, store = Journal(settings.state_dir), OpencodeStore(env.db)
    try:
        live_action, patch_action = sorted(journal.last_write_run(), key=lambda a: a.id)
        assert (
            undo_action(journal, live_action, store).restored == []
        )  # the reject itself is not a row we wrote
        # the server's row as it was before the PATCH, time_updated included (journaled before the PATCH)
        assert patch_action.part_before_updated is not None
        assert patch_action.part_after_updated == row_updated(env.db, stuck.part_id)
        assert undo_action(journal, patch_action, store).restored == [f"part {stuck.part_id}"]
    finally:
        store.close()
        journal.close()
    state = f.read_data(env.db, "part", stuck.part_id)["state"]
    assert (state["status"], state["error"]) == ("error", "The user dismissed this question")
    assert row_updated(env.db, stuck.part_id) == patch_action.part_before_updated  # byte for byte


def row_updated(db, part_id: str) -> object:
    with f.connection(db) as conn:
        return conn.execute("SELECT time_updated FROM part WHERE id = ?", (part_id,)).fetchone()[0]


def stuck_data(env: Env, stuck: f.Stuck) -> str:
    return json.dumps(
        {
            "type": "tool",
            "tool": "question",
            "callID": stuck.call_id,
            "state": f.tool_state("question", "running", stuck.start_ms, raw=env.version == "1.15.3"),
        },
        separators=(",", ":"),
    )


def test_an_answer_that_raced_the_reject_is_never_overwritten(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        api.reject_state = {
            "status": "completed",
            "output": "User has answered your questions",
            "metadata": {},
        }
        settings = make_settings(tmp_path)
        _r, _routes, [outcome], actions = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert outcome.outcome == "done" and "left as opencode wrote it" in outcome.detail
        assert f.read_data(env.db, "part", stuck.part_id)["state"]["status"] == "completed"
        assert [a.route for a in actions] == [REJECT] and not api.calls("PATCH")


def test_without_a_listed_question_it_aborts_then_rejects_the_leaked_one(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, "call_other", qid="que_leak")  # not this call
        settings = make_settings(tmp_path)
        _report, routes, [outcome], actions = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert routes[stuck.part_id] == ABORT
        assert outcome.outcome == "done", outcome.detail
        assert (
            "aborted the session" in outcome.detail and "rejected leaked question que_leak" in outcome.detail
        )
        assert api.questions == []
        part = f.read_data(env.db, "part", stuck.part_id)
        assert part["state"]["error"].startswith("Abandoned by opencode-watchdogd")
        assert [a.route for a in actions] == [ABORT, PATCH_PART]


def test_still_busy_after_abort_is_a_failure_with_no_db_write(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck_on(api, env, tool="bash")
        api.abort_frees = False
        settings = make_settings(tmp_path, timeout=VERIFY_S)
        before = f.snapshot(env.db)
        layer = LiveEvidence(settings, listeners=listeners_to(api))
        _r, _routes, [outcome], actions = env.run(settings, [holder()], layer)
        assert (
            outcome.outcome == "failed"
            and "still busy" in outcome.detail
            and "allow_dispose" in outcome.detail
        )
        assert f.snapshot(env.db) == before
        assert not api.calls("POST", "/instance/dispose")
        [action] = actions
        assert (action.route, action.outcome, action.server_version) == (ABORT, "failed", env.version)


def test_dispose_only_when_allowed(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env, tool="bash")
        api.abort_frees = False
        settings = make_settings(tmp_path, allow_dispose=True, timeout=VERIFY_S)
        _r, _routes, [outcome], _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert outcome.outcome == "done", outcome.detail
        assert api.calls("POST", "/instance/dispose") and "disposed the instance" in outcome.detail
        assert not api.sessions[stuck.session_id]["busy"]


@pytest.mark.parametrize("mode", ["garbage", "html", "500", "hang"])
def test_a_broken_server_means_unreachable_and_nothing_written(env, tmp_path, mode):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.mode = mode  # "hang": no answer until the server closes
        settings = make_settings(tmp_path, timeout=0.2 if mode == "hang" else ANSWER_S)
        before = f.snapshot(env.db)
        report, routes, [outcome], actions = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert api.hung_answers == 0  # the pass gave up on its own timeout; it never waited for an answer
        [item] = report.assessments
        assert item.ownership.kind is OwnerKind.UNREACHABLE and item.ownership.pids == (PID,)
        assert outcome.outcome == "reported" and routes[stuck.part_id].startswith("report")
        assert f.snapshot(env.db) == before and actions == []
        assert not api.calls("POST") and not api.calls("PATCH")


def test_a_holder_without_api_is_reported_never_written(env, tmp_path):
    stuck = f.stuck_question(env.db, age_s=10)
    settings = make_settings(tmp_path)
    before = f.snapshot(env.db)
    tui = holder(cmdline="opencode")
    report, routes, [outcome], actions = env.run(
        settings, [tui], LiveEvidence(settings, listeners=lambda pids: {})
    )
    [item] = report.assessments
    assert item.ownership.label == f"live-unreachable:{PID}"
    assert "not listening on loopback TCP" in item.ownership.detail
    assert outcome.outcome == "reported" and routes[stuck.part_id].startswith("report")
    assert f.snapshot(env.db) == before and actions == []


def test_the_api_of_the_wrong_process_does_not_vouch_for_another_holder(env, tmp_path):
    # A `serve` says idle, but a TUI without a port also holds the DB: the session may be the TUI's.
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.sessions[stuck.session_id]["busy"] = False
        settings = make_settings(tmp_path)
        serve, tui = holder(), holder(cmdline="opencode", pid=PID - 1)
        before = f.snapshot(env.db)
        report, _routes, [outcome], _a = env.run(
            settings, [serve, tui], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert report.assessments[0].ownership.label == f"live-unreachable:{PID - 1}"
        assert outcome.outcome == "reported" and f.snapshot(env.db) == before


def test_an_orphan_on_a_reachable_server_is_patched_and_its_message_completed(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.sessions[stuck.session_id]["busy"] = False
        settings = make_settings(tmp_path)
        restarted = holder(started_ago_s=1)  # the server started after the part: it cannot own it
        report, routes, [outcome], actions = env.run(
            settings, [restarted], LiveEvidence(settings, listeners=listeners_to(api))
        )
        [item] = report.assessments
        assert item.ownership.kind is OwnerKind.LIVE_IDLE and routes[stuck.part_id] == PATCH_PART
        assert outcome.outcome == "done", outcome.detail
        assert [(a.route, a.outcome) for a in actions] == [(PATCH_PART, "done"), ("db-repair", "done")]
        part = f.read_data(env.db, "part", stuck.part_id)
        assert part["state"]["status"] == "error" and MARKER in part["state"]["metadata"]
        assert actions[0].part_after == f.read_text(env.db, "part", stuck.part_id)
        message = f.read_data(env.db, "message", stuck.message_id)
        assert message["time"]["completed"] and "finish" not in message
        assert actions[1].message_after == f.read_text(env.db, "message", stuck.message_id)
        assert actions[1].part_after is None  # the part went through the server, not SQL


def test_status_idle_but_runner_busy_is_not_written(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.hide_status = True  # status says idle; the gated probe still refuses
        settings = make_settings(tmp_path)
        before = f.snapshot(env.db)
        _r, routes, [outcome], actions = env.run(
            settings, [holder(started_ago_s=1)], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert routes[stuck.part_id] == PATCH_PART
        assert outcome.outcome == "skipped" and "probe was refused" in outcome.detail
        assert f.snapshot(env.db) == before and actions == [] and not api.calls("PATCH")


def test_a_session_busy_with_a_newer_run_is_left_alone(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)  # busy: the user prompted again after a restart
        settings = make_settings(tmp_path)
        before = f.snapshot(env.db)
        report, routes, [outcome], _a = env.run(
            settings, [holder(started_ago_s=1)], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert report.assessments[0].ownership.kind is OwnerKind.LIVE
        assert "newer run" in routes[stuck.part_id] and outcome.outcome == "reported"
        assert f.snapshot(env.db) == before and not api.calls("POST", "/abort")


def test_a_parent_task_is_never_abandoned_while_its_child_works(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        parent_sid = f.add_session(env.db, directory=DIR)
        child_sid = f.add_session(env.db, directory=DIR, parent_id=parent_sid)
        parent = f.stuck_question(
            env.db, age_s=3600, tool="task", session=parent_sid, child_session_id=child_sid
        )
        child = f.stuck_question(env.db, age_s=10, session=child_sid)
        api.add_session(parent_sid, DIR)
        api.add_session(child_sid, DIR)
        api.parts[child_sid] = (child.message_id, child.part_id)
        api.add_question(child_sid, child.message_id, child.call_id)
        settings = make_settings(tmp_path)
        report, routes, outcomes, _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        verdicts = {a.candidate.part_id: a.verdict for a in report.assessments}
        assert verdicts[parent.part_id].decision is Decision.NEVER
        assert routes[child.part_id] == REJECT and routes[parent.part_id] == ""
        [outcome] = outcomes
        assert outcome.item.candidate.part_id == child.part_id and outcome.outcome == "done"
        assert api.sessions[parent_sid]["busy"] and not api.calls("POST", f"/session/{parent_sid}/abort")
        assert f.read_data(env.db, "part", parent.part_id)["state"]["status"] == "running"


def test_an_expired_task_part_is_not_aborted_when_the_child_state_is_unknown(env, tmp_path):
    # The serve owns the parent; a TUI without API also holds the DB, so the child may be busy there.
    with FakeAPI(env.version, db=env.db) as api:
        parent = stuck_on(api, env, tool="task", child_session_id="ses_childelsewhere")
        settings = make_settings(tmp_path)
        holders = [holder(), holder(cmdline="opencode", pid=PID - 1)]
        report, routes, [outcome], _a = env.run(
            settings, holders, LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert report.assessments[0].ownership.kind is OwnerKind.LIVE
        assert routes[parent.part_id].startswith("report") and "subagent" in routes[parent.part_id]
        assert outcome.outcome == "reported" and not api.calls("POST", "/abort")


def test_a_sibling_tool_is_not_freed_by_an_abort_that_would_cancel_a_working_subagent(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        child_sid = f.add_session(env.db, directory=DIR)
        task = stuck_on(api, env, tool="task", child_session_id=child_sid)
        bash = f.add_tool_part(env.db, task.session_id, task.message_id, "bash", start_ms=task.start_ms)
        api.add_session(child_sid, DIR)  # the subagent is busy (its model streams: no part of its own)
        settings = make_settings(tmp_path)
        _r, routes, outcomes, _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert routes[task.part_id] == "" and "subagent" in routes[bash]
        assert [o.outcome for o in outcomes] == ["reported"] and not api.calls("POST", "/abort")


def test_queued_prompts_are_listed_in_the_assessment_and_the_journal(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        queued = f.add_message(env.db, stuck.session_id, role="user", created_ms=stuck.start_ms + 2000)
        settings = make_settings(tmp_path)
        report, _routes, [outcome], actions = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert report.assessments[0].queued == ((queued, stuck.start_ms + 2000),)
        assert queued in outcome.detail and queued in actions[0].detail


def test_pending_permission_asks_are_reported(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env, tool="bash")
        api.permissions.append({"id": "per_1", "sessionID": stuck.session_id, "permission": "bash"})
        settings = make_settings(tmp_path)
        report, _routes, [outcome], actions = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert "per_1 (bash)" in report.assessments[0].ownership.detail
        assert "per_1" in actions[0].detail


def _auth_of(api: FakeAPI) -> set[str | None]:
    return {h.get("Authorization") for _m, _p, _q, h in api.calls()}


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"opencode:{password}".encode()).decode()


def test_auth_needed_is_reported_with_the_setting(env, tmp_path):
    with FakeAPI(env.version, password="s3cret", db=env.db) as api:
        stuck_on(api, env)
        settings = make_settings(tmp_path)
        report, _routes, [outcome], _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        owner = report.assessments[0].ownership
        assert owner.kind is OwnerKind.UNREACHABLE and "auth needed" in owner.detail
        assert "OPENCODE_SERVER_PASSWORD" in owner.detail and "s3cret" not in owner.detail
        assert outcome.outcome == "reported"


def test_discovered_servers_get_the_env_credentials(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "s3cret")
    with FakeAPI(env.version, password="s3cret", db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path)
        _r, _routes, [outcome], _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api))
        )
        assert outcome.outcome == "done", outcome.detail
        assert _auth_of(api) == {basic("s3cret")}


def test_configured_credentials_go_only_to_their_own_server(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "envpass")
    secret = tmp_path / "pw"
    secret.write_text("filepass\n")
    with (
        FakeAPI(env.version, password="filepass", db=env.db) as configured,
        FakeAPI(env.version, password="envpass", db=env.db) as discovered,
    ):
        stuck = stuck_on(configured, env)
        configured.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path, servers=[{"url": configured.url, "password_file": str(secret)}])
        layer = LiveEvidence(
            settings,
            listeners=lambda pids: {
                PID: [Listener("127.0.0.1", configured.port, os.getuid())],
                PID - 1: [Listener("127.0.0.1", discovered.port, os.getuid())],
            },
        )
        _r, _routes, [outcome], _a = env.run(settings, [holder(), holder(pid=PID - 1)], layer)
        assert outcome.outcome == "done", outcome.detail
        assert _auth_of(configured) == {basic("filepass")}
        assert _auth_of(discovered) == {basic("envpass")}


def test_a_remote_configured_server_over_plain_http_is_not_used_without_opt_in(env, tmp_path):
    stuck = f.stuck_question(env.db, age_s=10)
    settings = make_settings(tmp_path, servers=[{"url": "http://203.0.113.9:4096"}], discover=False)
    layer = build_live(settings, [env.db])
    report, _routes, [outcome], _a = env.run(settings, [], layer)
    # No holder at all: an orphan, repaired in the DB; the remote server was never contacted.
    assert report.assessments[0].ownership.kind is OwnerKind.NONE
    assert outcome.route == "db-repair" and stuck.part_id


def test_build_live_is_none_without_any_server(tmp_path):
    assert build_live(make_settings(tmp_path, discover=False), []) is None
    assert build_live(make_settings(tmp_path), []) is not None


def test_a_configured_loopback_server_on_another_uids_socket_is_not_asked(env, tmp_path):
    """The uid column of /proc/net/tcp for the configured port is not the DB owner's: no request, no password."""
    secret = tmp_path / "pw"
    secret.write_text("filepass\n")
    stranger = os.getuid() + 1
    with FakeAPI(env.version, password="filepass", db=env.db) as api:
        stuck = stuck_on(api, env)
        settings = make_settings(tmp_path, servers=[{"url": api.url, "password_file": str(secret)}])
        sockets = {api.port: [Listener("127.0.0.1", api.port, stranger)]}
        behind_holder = LiveEvidence(
            settings, listeners=listeners_to(api), on_port=lambda port: sockets.get(port, [])
        )
        report, _routes, [outcome], _a = env.run(settings, [holder()], behind_holder)
        assert report.assessments[0].ownership.kind is OwnerKind.UNREACHABLE
        assert f"owned by uid {stranger}, not by the DB owner's uid {os.getuid()}" in outcome.detail
        no_holder_port = LiveEvidence(
            settings, listeners=lambda pids: {}, on_port=lambda port: sockets.get(port, [])
        )
        report, _routes, [outcome], _a = env.run(settings, [holder()], no_holder_port)
        assert report.assessments[0].ownership.kind is OwnerKind.UNREACHABLE
        assert api.calls() == []
        owned = LiveEvidence(
            settings,
            listeners=lambda pids: {},
            on_port=lambda port: [Listener("127.0.0.1", port, os.getuid())],
        )
        report, _routes, _outcomes, _a = env.run(settings, [holder()], owned)
        assert report.assessments[0].ownership.kind is OwnerKind.LIVE
        assert _auth_of(api) == {basic("filepass")}
    assert stuck.part_id


def test_a_run_that_stays_busy_is_aborted_once_then_only_rechecked_after_a_back_off(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env, tool="bash")
        api.abort_frees = False
        settings = make_settings(tmp_path, timeout=VERIFY_S)
        book, start = BackoffBook(), datetime.now(UTC)

        def at(seconds: float):  # a daemon's pass: fresh evidence, the back-off kept
            layer = LiveEvidence(settings, listeners=listeners_to(api))
            return env.run_at(settings, [holder()], layer, start + timedelta(seconds=seconds), book)

        report, outcomes = at(0)
        assert [o.outcome for o in outcomes] == ["failed"] and report.assessments[0].backoff.sent
        assert at(0.5)[1] == []  # inside the back-off: nothing at all
        report, [recheck] = at(5)
        assert recheck.outcome == "failed" and "not sent again" in recheck.detail, recheck.detail
        assert report.assessments[0].backoff.attempts == 2
        assert len(api.calls("POST", "/abort")) == 1
        journal = Journal(settings.state_dir)
        try:
            assert [a.route for a in journal.recent(10)] == [ABORT]  # one row for the decision
        finally:
            journal.close()
        api.sessions[stuck.session_id]["busy"] = False  # the runner lets go: idle, the part still running
        report, [patched] = at(6)  # another plan: the back-off does not hold it
        assert (patched.route, patched.outcome) == (PATCH_PART, "done"), patched.detail
        assert len(api.calls("POST", "/abort")) == 1


def test_a_recheck_that_finds_the_run_free_finishes_its_rows_without_a_second_abort(env, tmp_path):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env, tool="bash")
        api.abort_frees = False
        settings = make_settings(tmp_path, timeout=VERIFY_S)
        book = BackoffBook()
        report, [first] = env.run_at(
            settings, [holder()], LiveEvidence(settings, listeners=listeners_to(api)), datetime.now(UTC), book
        )
        item = report.assessments[0]
        assert first.outcome == "failed" and item.backoff.sent
        api.sessions[stuck.session_id]["busy"] = False  # freed between the pass's look and the recheck
        journal, store = Journal(settings.state_dir), OpencodeStore(env.db)
        try:
            layer = LiveEvidence(settings, listeners=listeners_to(api))
            layer.ownership(item.candidate, item.ownership, [holder()])  # the pass's look finds its server
            outcome = LiveRecovery(layer, settings.live).free(
                item, item.plan, report, store, DBRepairer(settings, journal)
            )
            actions = list(reversed(journal.recent(10)))
        finally:
            journal.close()
            store.close()
        assert outcome.outcome == "done" and outcome.detail.startswith(f"free after #{first.action_id}"), (
            outcome
        )
        assert len(api.calls("POST", "/abort")) == 1
        assert [(a.route, a.outcome) for a in actions] == [
            (ABORT, "done"),
            (PATCH_PART, "done"),
            ("db-repair", "done"),
        ]
        assert {a.group_of for a in actions[1:]} == {
            first.action_id
        }  # one event: the abort and the rows after it
        assert f.read_data(env.db, "part", stuck.part_id)["state"]["error"].startswith("Abandoned by")
