"""Back-off: an outcome that cannot change is not retried at every debounce, and a live action cut by a kill
is settled with what is known. Real `opencode-watchdogd run` subprocesses, a real misbehaving server."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, pair_states, rows
from tests.reliability.test_bad_servers import bad_server
from watchdogd.backup import backup_dir
from watchdogd.config import Settings

pytestmark = pytest.mark.integration

CONFIG = '[policy.tools]\nquestion = "0s"\n[live]\ntimeout = "1s"\n'
FAST = {"OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0.2s", "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}
WINDOW_S = 20.0  # how long the daemon is watched against a server that never frees


def aborts(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("POST ") and "/abort" in line]


def live_session(db) -> str:
    """A session created before the server starts; its question is added after (the server may own it)."""
    return dbfactory.add_session(db)


@scenario(
    "backoff",
    f"the opencode server holding the DB reports a session busy, accepts POST /abort and never frees it; "
    f"its question is overdue; `opencode-watchdogd run` with watch.debounce = 0.2s, watched for {WINDOW_S:.0f}s",
    "one POST /abort and one journal row for the decision (the same run is never aborted twice inside the "
    "back-off; the retries only re-check), one warning per change of reason; `status` and `scan` say "
    "'retry in …: <reason>'",
)
def test_server_that_never_frees_is_not_aborted_every_pass(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    sid = live_session(db)
    with bad_server(tmp_path, db, f"busy:{sid}") as (_port, log):
        time.sleep(0.05)
        stuck = dbfactory.stuck_question(db, age_s=0, session=sid)
        before = rows(db, "part", [stuck.part_id])
        daemon = DaemonProcess(tmp_path, [db], env=FAST, extra_args=["--config", str(config)])
        try:
            wait_until(lambda: aborts(log), timeout=60, what="the first POST /abort")
            time.sleep(WINDOW_S)
            sent, actions = aborts(log), journal_actions(tmp_path / "state")
            assert (len(sent), len(actions)) == (1, 1), (sent, [(a["route"], a["outcome"]) for a in actions])
            status = daemon.wait_status(
                lambda s: s["candidates"] and s["candidates"][0].get("retry"),
                timeout=30,
                what="the back-off in the status file",
            )
            shown = cli(tmp_path, "status")
            scanned = cli(tmp_path, "scan", "--db", str(db), "--config", str(config))
            passes = status["passes"]
        finally:
            daemon.stop()
        warnings = [
            e for e in daemon.log_lines() if e.get("part") == stuck.part_id and e.get("level") == "warning"
        ]
    assert actions[0]["route"] == "abort" and actions[0]["outcome"] == "failed", actions
    assert rows(db, "part", [stuck.part_id]) == before
    reasons = [w.get("detail") for w in warnings]
    assert len(reasons) == len(set(reasons)) <= 2, reasons
    assert "retry in " in shown.stdout and "still busy" in shown.stdout, shown.stdout
    assert "retry in " in scanned.stdout and "still busy" in scanned.stdout, scanned.stdout
    retry = status["candidates"][0]["retry"]
    assert retry["attempts"] >= 3, retry
    observe(
        f"1 POST /abort and 1 journal row (abort, failed) over {WINDOW_S:.0f}s (about 15 of each before the "
        "back-off)",
        f"{len(reasons)} warning(s), one per reason; `status` and `scan`: 'retry in … (attempt N did not free "
        "it): still busy …'",
        "the part never written",
    )
    assert passes >= 3  # the daemon kept looking: the bound comes from the back-off, not from idling


ODD_PART = (
    '{"type":"tool","tool":"bash","state":{"status":"running","input":{},"metadata":[1],"time":{"start":1}}}'
)


@scenario(
    "backoff",
    "an orphaned running part whose row shape the repair refuses (state.metadata a list), `opencode-watchdogd run` "
    "with watch.debounce = 0.2s; after a while the row is changed (to a shape the repair accepts)",
    "one log line for the refusal (not one per pass), `status` shows the back-off; the change to the row resets it: "
    "the part is repaired at once, before the retry the back-off had set",
)
def test_refused_row_shape_is_logged_once_and_a_row_change_resets(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    stuck = dbfactory.stuck_question(db)
    done = dbfactory.read_data(db, "part", stuck.part_id)
    done["state"]["status"] = "completed"
    with dbfactory.connection(db) as conn:
        conn.execute("UPDATE part SET data=? WHERE id=?", (dbfactory.compact(done), stuck.part_id))
    odd = dbfactory.add_tool_part(db, stuck.session_id, stuck.message_id, data=ODD_PART)
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, **FAST, "OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "1s"})
    try:
        status = daemon.wait_status(
            lambda s: s["candidates"] and (s["candidates"][0].get("retry") or {}).get("attempts", 0) >= 4,
            timeout=90,
            what="four attempts on the odd part",
        )
        retry_at = datetime.fromisoformat(status["candidates"][0]["retry"]["at"])
        lines = [e for e in daemon.log_lines() if e.get("part") == odd]
        fixed = json.loads(ODD_PART)
        fixed["state"]["metadata"] = {}
        with dbfactory.connection(db) as conn:
            conn.execute("UPDATE part SET data=? WHERE id=?", (dbfactory.compact(fixed), odd))
        daemon.wait_status(lambda s: not s["candidates"], timeout=60, what="the changed part repaired")
        repaired = [
            a for a in journal_actions(tmp_path / "state") if a["part_id"] == odd and a["outcome"] == "done"
        ]
    finally:
        daemon.stop()
    refusals = [e for e in lines if "unexpected row shape" in str(e.get("detail"))]
    assert len(refusals) == 1, lines
    assert len(repaired) == 1, repaired
    assert datetime.fromtimestamp(repaired[0]["time"], retry_at.tzinfo) < retry_at
    observe(
        "4+ attempts on the refused row, 1 log line ('unexpected row shape …')",
        "after the row changed: repaired by the next pass, before the retry time the back-off had set",
    )


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@scenario(
    "backoff",
    "the daemon is killed (SIGKILL, or SIGTERM: the stop does not wait for the request) after it sent POST /abort "
    "to a live server and while it waits for the answer; the next run settles the journal",
    "the action is settled as 'abort sent, outcome unknown', never 'nothing was written'",
)
def test_live_action_cut_by_a_kill_is_settled_as_sent(tmp_path, signum, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace('timeout = "1s"', 'timeout = "60s"'))
    sid = live_session(db)
    with bad_server(tmp_path, db, f"busy-slow-abort:{sid}") as (_port, log):
        time.sleep(0.05)
        stuck = dbfactory.stuck_question(db, age_s=0, session=sid)
        daemon = DaemonProcess(tmp_path, [db], env=FAST, extra_args=["--config", str(config)])
        try:
            wait_until(lambda: aborts(log), timeout=60, what="the POST /abort")
            daemon.proc.send_signal(signum)
            daemon.proc.wait(timeout=30)
        finally:
            daemon.stop()
    [planned] = journal_actions(tmp_path / "state")
    assert planned["outcome"] == "planned", planned
    reap = cli(tmp_path, "reap", "--db", str(db), "--config", str(config), env=GRACE0)
    assert "Traceback" not in reap.stderr, reap.stderr
    settled = {a["id"]: a for a in journal_actions(tmp_path / "state")}[planned["id"]]
    assert settled["outcome"] == "failed", settled
    assert "abort sent, outcome unknown" in settled["detail"], settled["detail"]
    assert "nothing was written" not in settled["detail"]
    assert rows(db, "part", [stuck.part_id])  # the next run then repaired the orphan the kill left
    observe(
        f"{signal.Signals(signum).name}: the next run settled the abort row as failed: "
        f"'{settled['detail'].split(';')[0]}'"
    )


@scenario(
    "backoff",
    "an orphan is due but its backup cannot be written (its folder under `backups/` in the state dir is a file); "
    "`opencode-watchdogd run` with watch.debounce = 0.2s, watched for 12s; then the file is removed",
    "tried again after a back-off, not at every pass: one warning, a handful of attempts, no journal row, the "
    "row untouched; once a backup can be written the orphan is repaired",
)
def test_a_backup_that_cannot_be_written_is_retried_after_a_back_off(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    state = tmp_path / "state"
    blocker = backup_dir(Settings(state_dir=state), db)  # this DB's backup folder, made a file
    blocker.parent.mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    blocker.write_text("not a folder\n")
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, **FAST})
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="the first pass")
        time.sleep(12)
        status = daemon.wait_status(lambda s: s["candidates"], timeout=30, what="the candidate")
        failed = [
            e for e in daemon.log_lines() if e.get("part") == orphan.part_id and e.get("level") == "warning"
        ]
        untouched = rows(db, "part", [orphan.part_id])[orphan.part_id] == orphan.part_before
        journaled = journal_actions(state)
        blocker.unlink()
        daemon.wait_status(lambda s: not s["candidates"], timeout=120, what="the orphan repaired")
    finally:
        daemon.stop()
    retry = status["candidates"][0]["retry"]
    assert len(failed) == 1 and "cannot prepare repair" in failed[0]["detail"], failed
    assert retry is not None and 3 <= retry["attempts"] <= 6, retry
    assert untouched and journaled == []
    assert pair_states(db, [orphan]) == {orphan.part_id: "repaired"}
    observe(
        f"{retry['attempts']} attempts in 12s, 1 warning ('cannot prepare repair: …'), no journal row, row "
        "untouched",
        "after the file was removed: the backup taken and the orphan repaired",
    )
