"""A reachable opencode server (holding the DB, listening on loopback) that hangs, trickles, answers garbage,
500s, HTML or JSON of the wrong shape: timeouts, no crash, no DB write for its live session."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import cli, journal_actions, rows

pytestmark = pytest.mark.integration

BADSERVER = Path(__file__).with_name("badserver.py")
CONFIG = '[policy.tools]\nquestion = "0s"\n[live]\ntimeout = "1s"\n'
MODES = [
    "hang",
    "trickle",
    "garbage",
    "500",
    "html",
    "wrong-json",
    "health-ok-then-hang",
    "health-ok-then-trickle",
    "health-ok-then-500",
    "health-ok-then-html",
]


@contextlib.contextmanager
def bad_server(tmp: Path, db: Path, mode: str):
    log = tmp / f"requests-{time.monotonic_ns()}.log"
    log.touch()
    proc = subprocess.Popen(
        ["opencode", str(BADSERVER), str(db), mode, str(log)],
        executable=sys.executable,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        yield port, log
    finally:
        proc.kill()
        proc.wait()


def live_stuck(db: Path):
    """A question started after the server: it may be that server's live run (held, never an orphan)."""
    time.sleep(0.05)
    return dbfactory.stuck_question(db, age_s=0)


@pytest.mark.parametrize("mode", MODES)
@scenario(
    "bad_servers",
    "the opencode process holding the DB listens on loopback and its API hangs, trickles "
    "headers a byte at a time, answers garbage bytes, 500s, HTML or wrong JSON (on every route, or only "
    "after a healthy /global/health); a question of that session is overdue; `reap` with live.timeout = 1s",
    "timeouts (bounded wall time), no crash, the session reported as live-unreachable (or the action failed), "
    "no DB write",
)
def test_reap_against_a_bad_server(tmp_path, mode, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    with bad_server(tmp_path, db, mode):
        stuck = live_stuck(db)
        before = (
            dbfactory.read_text(db, "part", stuck.part_id),
            dbfactory.read_text(db, "message", stuck.message_id),
        )
        started = time.monotonic()
        reap = cli(tmp_path, "reap", "--db", str(db), "--config", str(config), "--json", timeout=90)
        elapsed = time.monotonic() - started
    assert "Traceback" not in reap.stderr, reap.stderr[-3000:]
    assert reap.returncode == 1, reap.stdout + reap.stderr
    [outcome] = json.loads(reap.stdout)
    assert outcome["outcome"] in ("reported", "failed"), outcome
    assert outcome["outcome"] == "failed" or "live owner has no reachable API" in outcome["route"], outcome
    after = (
        dbfactory.read_text(db, "part", stuck.part_id),
        dbfactory.read_text(db, "message", stuck.message_id),
    )
    assert after == before
    assert not [a for a in journal_actions(tmp_path / "state") if a["outcome"] == "done"]
    assert elapsed < 60, f"reap took {elapsed:.0f}s against a {mode} server"
    observe(f"{mode}: outcome {outcome['outcome']}, no DB write, no traceback, finished within the timeouts")


@scenario(
    "bad_servers",
    "the running daemon while the DB holder's API trickles its answer forever",
    "each request is cut at live.timeout, the pass completes and status is published, the session stays "
    "unwritten, the daemon keeps running and stops on SIGTERM",
)
def test_daemon_against_a_trickling_server(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    with bad_server(tmp_path, db, "trickle"):
        stuck = live_stuck(db)
        before = dbfactory.read_text(db, "part", stuck.part_id)
        daemon = DaemonProcess(
            tmp_path,
            [db],
            extra_args=["--config", str(config)],
            env={"OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "2s"},
        )
        try:
            status = daemon.wait_status(
                lambda s: s["candidates"] and s["passes"] >= 2, timeout=60, what="two passes published"
            )
            [cand] = status["candidates"]
            assert (
                cand["owner"].startswith("live-unreachable:")
                and "did not answer /global/health within 1s" in cand["owner_detail"]
            )
            assert daemon.proc.poll() is None
        finally:
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=30)
            daemon.stop()
        assert dbfactory.read_text(db, "part", stuck.part_id) == before
    assert code == 0
    observe(
        "status published every pass: owner live-unreachable ('… did not answer /global/health within 1s')",
        "part never written; SIGTERM: exit 0",
    )


@scenario(
    "bad_servers",
    "a session id in the DB crafted as a path (`ses_x/../../instance/dispose?all=1`), owned "
    "by a server that reports it busy and never frees it",
    "ids are percent-encoded into URL paths: the server never receives a request for another route; "
    "the action fails as 'still busy', no DB write",
)
def test_session_id_cannot_reach_another_route(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    sid = "ses_x/../../instance/dispose?all=1#"
    with bad_server(tmp_path, db, f"busy:{sid}") as (_port, log):
        time.sleep(0.05)
        stuck = dbfactory.stuck_question(db, age_s=0, session=dbfactory.add_session(db, sid))
        before = rows(db, "part", [stuck.part_id])
        reap = cli(tmp_path, "reap", "--db", str(db), "--config", str(config), "--json", timeout=90)
        requests = log.read_text().splitlines()
    assert "Traceback" not in reap.stderr, reap.stderr[-3000:]
    [outcome] = json.loads(reap.stdout)
    assert outcome["outcome"] == "failed" and "still busy" in outcome["detail"], outcome
    routes = {line.split(" ")[1].split("?", 1)[0] for line in requests}
    encoded = "ses_x%2F..%2F..%2Finstance%2Fdispose%3Fall%3D1%23"
    assert f"/session/{encoded}/abort" in routes, routes
    assert routes <= {
        "/global/health",
        "/session/status",
        "/question",
        "/permission",
        f"/session/{encoded}/abort",
        f"/session/{encoded}",
        f"/session/{encoded}/unrevert",
    }, routes
    assert rows(db, "part", [stuck.part_id]) == before
    observe(
        "the abort went to /session/ses_x%2F..%2F..%2Finstance%2Fdispose%3Fall%3D1%23/abort",
        "no request reached /instance/dispose; failed 'still busy', no DB write",
    )
