"""An opencode server is recognised by what it does (GET /global/health), never by its file name."""

from __future__ import annotations

import http.server
import os
import socket
import threading

import pytest

from tests import dbfactory as f
from tests.support.fake_api import FakeAPI
from tests.unit.test_live import DIR, PID, Env, _auth_of, basic, env, holder, make_settings, stuck_on, version  # noqa: F401  # noqa: F401  # fixtures
from watchdogd.live_evidence import LiveEvidence
from watchdogd.live_recovery import REJECT
from watchdogd.models import Holder, OwnerKind
from watchdogd.opencode.discovery_net import Listener

NAMES = [
    "/home/u/proj/node_modules/opencode-ai/bin/.opencode serve --port 0",  # npm 1.14.x (spawned by node)
    "/usr/lib/node_modules/opencode-ai/bin/opencode.exe serve",  # npm 1.15+
    "/home/u/.opencode/bin/opencode serve",  # the install script
    "/home/u/.bun/install/global/node_modules/opencode-linux-x64/bin/opencode",  # bun global
    "/usr/bin/oc-server --port 4096",  # renamed by a package manager
]


def _listening(port: int, uid: int | None = None):
    return lambda pids: {p: [Listener("127.0.0.1", port, os.getuid() if uid is None else uid)] for p in pids}


@pytest.mark.parametrize("cmdline", NAMES)
def test_any_name_that_answers_health_like_opencode_is_an_opencode_server(env, tmp_path, cmdline):
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path)
        report, routes, [outcome], _a = env.run(
            settings, [holder(cmdline=cmdline)], LiveEvidence(settings, listeners=_listening(api.port))
        )
    assert report.assessments[0].ownership.kind is OwnerKind.LIVE
    assert routes[stuck.part_id] == REJECT and outcome.outcome == "done", outcome.detail


class _NotOpencode(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_holder_whose_port_answers_something_else_is_reported_as_observed(env, tmp_path):
    stuck = f.stuck_question(env.db, age_s=10)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOpencode)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        settings = make_settings(tmp_path)
        before = f.snapshot(env.db)
        port = httpd.server_address[1]
        report, routes, [outcome], actions = env.run(
            settings, [holder(cmdline="sqlitebrowser")], LiveEvidence(settings, listeners=_listening(port))
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    [item] = report.assessments
    assert item.ownership.kind is OwnerKind.UNREACHABLE
    assert (
        f"pid {PID} holds the DB and listens on 127.0.0.1:{port}, which did not answer /global/health like "
        "opencode" in item.ownership.detail
    )
    assert outcome.outcome == "reported" and f.snapshot(env.db) == before and actions == [] and stuck.part_id


def test_a_port_that_never_answers_is_reported_with_the_time_waited(env, tmp_path):
    f.stuck_question(env.db, age_s=10)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts connections (the backlog) but never answers
        port = sock.getsockname()[1]
        settings = make_settings(tmp_path)
        before = f.snapshot(env.db)
        report, _routes, [outcome], _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=_listening(port))
        )
    detail = report.assessments[0].ownership.detail
    assert (
        f"pid {PID} holds the DB and listens on 127.0.0.1:{port}, which did not answer /global/health within"
        in detail
    )
    assert outcome.outcome == "reported" and f.snapshot(env.db) == before


def test_the_password_never_goes_to_a_socket_of_another_uid(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "envpass")
    with FakeAPI(env.version, password="envpass", db=env.db) as api:
        stuck = stuck_on(api, env)
        settings = make_settings(tmp_path)
        before = f.snapshot(env.db)
        stranger = os.getuid() + 1000
        report, _routes, [outcome], _a = env.run(
            settings, [holder()], LiveEvidence(settings, listeners=_listening(api.port, stranger))
        )
        assert _auth_of(api) == {None}  # asked, without a password
    detail = report.assessments[0].ownership.detail
    assert (
        f"belongs to uid {stranger}, not to the DB owner's uid {os.getuid()}, so no password is sent"
        in detail
    )
    assert outcome.outcome == "reported" and f.snapshot(env.db) == before and stuck.part_id


def test_the_password_goes_to_a_socket_of_the_db_owner(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCODE_SERVER_PASSWORD", "envpass")
    with FakeAPI(env.version, password="envpass", db=env.db) as api:
        stuck = stuck_on(api, env)
        api.add_question(stuck.session_id, stuck.message_id, stuck.call_id)
        settings = make_settings(tmp_path)
        _r, _routes, [outcome], _a = env.run(
            settings,
            [holder(cmdline="/x/bin/.opencode serve")],
            LiveEvidence(settings, listeners=_listening(api.port)),
        )
        assert outcome.outcome == "done", outcome.detail
        assert _auth_of(api) == {basic("envpass")}


def test_an_unseen_holder_is_never_probed_and_never_written(env, tmp_path):
    f.stuck_question(env.db, age_s=10)
    settings = make_settings(tmp_path)
    before = f.snapshot(env.db)
    unseen = Holder(0, 0.0, "[holds a lock on the DB (/proc/locks) but is not visible here]", visible=False)
    asked: list = []
    report, _routes, [outcome], _a = env.run(
        settings, [unseen], LiveEvidence(settings, listeners=lambda pids: asked.append(pids) or {})
    )
    [item] = report.assessments
    assert item.ownership.kind is OwnerKind.UNREACHABLE and "not visible here" in item.ownership.detail
    assert asked == [] and outcome.outcome == "reported" and f.snapshot(env.db) == before


def test_a_quick_restart_under_the_npm_1_14_name_ends_with_the_orphan_repaired(env, tmp_path):
    """The new server started within the start-time margin of the part: it may own it, so it is asked; idle there."""
    with FakeAPI(env.version, db=env.db) as api:
        stuck = stuck_on(api, env)  # started 10 s ago
        api.sessions[stuck.session_id]["busy"] = False
        settings = make_settings(tmp_path)
        quick = holder(started_ago_s=9.5, cmdline="/x/node_modules/opencode-ai/bin/.opencode serve --port 0")
        report, _routes, [outcome], _a = env.run(
            settings, [quick], LiveEvidence(settings, listeners=_listening(api.port))
        )
    [item] = report.assessments
    assert item.ownership.kind is OwnerKind.LIVE_IDLE and outcome.outcome == "done", outcome.detail
    assert f.read_data(env.db, "part", stuck.part_id)["state"]["status"] == "error"
