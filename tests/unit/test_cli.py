"""The command line, driven in-process with private XDG dirs."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from tests import dbfactory as f
from watchdogd import __version__
from watchdogd.cli import main
from watchdogd.config import load_config
from watchdogd.opencode.repair import MARKER
from watchdogd.present.text import safe

SCAN_FIELDS = {
    "db",
    "session_id",
    "message_id",
    "part_id",
    "tool",
    "status",
    "age_s",
    "owner",
    "verdict",
    "reason",
    "expires_at",
}


@pytest.fixture
def db(hermetic_env) -> Path:
    """opencode's default DB, where discovery finds it."""
    return f.make_db(hermetic_env["XDG_DATA_HOME"] / "opencode" / "opencode.db")


@pytest.fixture
def state_dir(hermetic_env) -> Path:
    return hermetic_env["XDG_STATE_HOME"] / "opencode-watchdogd"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def scan_json(capsys, *extra: str) -> tuple[int, list[dict]]:
    code, out, _err = run(capsys, "scan", "--json", *extra)
    return code, json.loads(out)


def orphans_due(monkeypatch) -> None:
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE", "0s")


# -- scan -----------------------------------------------------------------------------------------------


def test_scan_without_any_db(capsys, hermetic_env):
    code, out, err = run(capsys, "scan")
    assert code == 0
    assert out.strip() == "no running or pending tool parts in 1 database(s)"
    assert "database does not exist (yet)" in err


def test_scan_nothing_stuck(capsys, db):
    sid = f.add_session(db)
    mid = f.add_message(db, sid, completed=True)
    f.add_tool_part(db, sid, mid, "bash", "completed")
    assert run(capsys, "scan")[0] == 0
    assert scan_json(capsys) == (0, [])


def test_scan_orphan_in_grace_is_kept(capsys, db):
    stuck = f.stuck_question(db, age_s=7200)
    with f.connection(
        db
    ) as conn:  # started 2 h ago, but its row changed just now: the grace counts from there
        conn.execute("UPDATE part SET time_updated = ? WHERE id = ?", (f.now_ms(), stuck.part_id))
    code, records = scan_json(capsys)
    assert code == 0
    [record] = records
    assert set(record) >= SCAN_FIELDS
    assert record["db"] == str(db)
    assert (record["session_id"], record["message_id"], record["part_id"]) == (
        stuck.session_id,
        stuck.message_id,
        stuck.part_id,
    )
    assert (record["tool"], record["status"], record["owner"], record["verdict"]) == (
        "question",
        "running",
        "none",
        "keep",
    )
    assert 7190 <= record["age_s"] <= 7300
    assert "orphan: no process holds the DB" in record["reason"] and "repair in" in record["reason"]
    assert datetime.fromisoformat(record["expires_at"]).tzinfo is not None
    assert record["route"] is None and record["call_id"] == stuck.call_id


def test_week_old_orphans_are_due_at_the_first_scan_and_repaired_by_the_first_reap(capsys, db):
    """The first command a user with a stuck session runs acts: no waiting out a grace on days-old rows."""
    stuck = f.stuck_question(db, age_s=7 * 86400)
    other = f.stuck_question(db, age_s=3 * 86400, tool="bash")
    code, records = scan_json(capsys)
    assert code == 1 and {r["verdict"] for r in records} == {"expired"}
    assert {r["route"] for r in records} == {"db-repair"}
    code, out, _ = run(capsys, "reap")
    assert code == 0 and stuck.part_id in out and other.part_id in out
    for part in (stuck.part_id, other.part_id):
        assert f.read_data(db, "part", part)["state"]["status"] == "error"


def test_scan_exit_1_when_something_is_due(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    before = f.snapshot(db)
    code, [record] = scan_json(capsys)
    assert code == 1
    assert record["verdict"] == "expired" and record["route"] == "db-repair"
    code, out, _ = run(capsys, "scan")
    assert code == 1
    assert stuck.part_id in out and "expired" in out and "orphan: no process holds the DB" in out
    assert f.snapshot(db) == before  # scan never writes to opencode


def test_scan_pending_part(capsys, db):
    f.stuck_question(db, age_s=5, status="pending", tool="bash")  # an orphan within its grace
    code, [record] = scan_json(capsys)
    assert code == 0 and record["status"] == "pending" and record["tool"] == "bash"


def test_scan_broken_db_exits_2(capsys, db):
    db.write_bytes(b"not a database at all " * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    code, out, err = run(capsys, "scan")
    assert code == 2
    assert "not an SQLite database" in err and "Traceback" not in err


def test_scan_unsupported_layout_exits_2(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    f.stuck_question(db, age_s=7200)
    with f.connection(db) as conn:
        conn.execute("CREATE TABLE session_v2 (id text PRIMARY KEY)")
    code, out, err = run(capsys, "scan", "--json")
    assert code == 2
    assert "newer opencode layout (session_v2)" in err
    [record] = json.loads(out)
    assert record["route"].startswith("report: DB not writable")


def test_scan_hostile_strings_are_neutralised(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    evil = f.add_tool_part(
        db, stuck.session_id, stuck.message_id, "evil\x1b[2J\ntool", start_ms=stuck.start_ms + 1
    )
    code, out, _ = run(capsys, "scan")
    assert code == 1 and evil in out
    assert "\x1b" not in out and "evil\\x1b[2J\\x0atool" in out


def test_db_option_replaces_discovery(capsys, db, tmp_path):
    f.stuck_question(db, age_s=60)
    other = f.make_db(tmp_path / "other.db")
    code, records = scan_json(capsys, "--db", str(other))
    assert code == 0 and records == []


# -- reap and undo -----------------------------------------------------------------------------------------


def test_reap_repairs_an_orphan_then_is_idempotent(capsys, db, monkeypatch, state_dir):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    code, out, err = run(capsys, "reap")
    assert code == 0, out + err
    assert out.startswith("#1 done") and stuck.part_id in out and "Abandoned by opencode-watchdogd" in out

    part = f.read_data(db, "part", stuck.part_id)
    assert part["state"]["status"] == "error"
    assert part["state"]["error"].startswith(
        "Abandoned by opencode-watchdogd after 2h running without a result"
    )
    assert part["state"]["metadata"][MARKER]["action"] == 1
    message = f.read_data(db, "message", stuck.message_id)
    assert message["time"]["completed"] and message["error"]["name"] == "MessageAbortedError"
    assert list((state_dir / "backups").rglob("*.db"))

    after = f.snapshot(db)
    code, out, _ = run(capsys, "reap")
    assert (code, out.strip()) == (0, "nothing due")
    assert f.snapshot(db) == after
    assert scan_json(capsys) == (0, [])


def test_reap_json(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    code, out, _ = run(capsys, "reap", "--json")
    [record] = json.loads(out)
    assert code == 0
    assert (record["part_id"], record["route"], record["outcome"], record["action_id"]) == (
        stuck.part_id,
        "db-repair",
        "done",
        1,
    )


def test_reap_dry_run_writes_nothing(capsys, db, monkeypatch, state_dir):
    orphans_due(monkeypatch)
    f.stuck_question(db, age_s=7200)
    before = f.snapshot(db)
    code, out, _ = run(capsys, "reap", "--dry-run")
    assert code == 0 and "dry-run" in out
    assert f.snapshot(db) == before
    assert not (state_dir / "backups").exists()


def test_reap_does_not_write_while_a_process_holds_the_db(capsys, db, monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION", "0s")
    with f.holder_process(db) as holder:
        # the call started after the holder did: the holder may be the server running it
        stuck = f.stuck_question(db, start_ms=f.now_ms())
        before = f.snapshot(db)
        code, out, err = run(capsys, "reap")
        assert f.snapshot(db) == before
    assert code == 1
    assert f"reported  {stuck.session_id} {stuck.part_id} question" in out
    # held, or (with the live layer) a holder without a reachable API: either way, no DB write
    assert "live owner" in out and f"(pid {holder.pid})" in out and "no DB write" in out
    assert run(capsys, "history")[1].strip() == "no actions journaled yet"


def test_reap_repairs_when_every_holder_started_later(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)  # started long before the holder below: a restarted server
    with f.holder_process(db):
        code, out, _ = run(capsys, "reap")
    assert code == 0 and "done" in out
    assert f.read_data(db, "part", stuck.part_id)["state"]["status"] == "error"


def test_undo_last_restores(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    a = f.stuck_question(db, age_s=7200)
    b = f.stuck_question(db, age_s=3600)
    original = {
        (t, i): f.read_text(db, t, i)
        for t, i in [
            ("part", a.part_id),
            ("message", a.message_id),
            ("part", b.part_id),
            ("message", b.message_id),
        ]
    }
    assert run(capsys, "reap")[0] == 0
    code, out, _ = run(capsys, "undo", "--last")
    assert code == 0
    assert f"restored part {a.part_id}" in out and f"restored message {b.message_id}" in out
    # by the ids `history` shows: actions 1 and 2, undone by actions 3 and 4
    assert out.splitlines()[-1] == "undone: #2 (undo journaled as #3), #1 (undo journaled as #4)"
    assert {k: f.read_text(db, *k) for k in original} == original
    assert run(capsys, "undo", "--last")[1].strip() == "nothing to undo"


def test_undo_one_action(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    a = f.stuck_question(db, age_s=7200)
    b = f.stuck_question(db, age_s=3600)
    part_a = f.read_text(db, "part", a.part_id)
    run(capsys, "reap")
    code, out, _ = run(capsys, "undo", "1")
    assert code == 0 and f"#1 restored part {a.part_id}" in out
    assert f.read_text(db, "part", a.part_id) == part_a
    assert f.read_data(db, "part", b.part_id)["state"]["status"] == "error"
    # action 1 is undone now, and the undo itself cannot be undone
    code, _, err = run(capsys, "undo", "1")
    assert code == 2 and "action 1 is undone" in err
    code, _, err = run(capsys, "undo", "3")
    assert code == 2 and "action 3 is itself an undo (of #1): it cannot be undone" in err


def test_undo_after_opencode_moved_on(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    run(capsys, "reap")
    with f.connection(db) as conn:
        conn.execute("DELETE FROM message WHERE id = ?", (stuck.message_id,))
    code, out, _ = run(capsys, "undo", "--last")
    assert code == 1 and "NOT restored" in out
    assert out.splitlines()[-1] == "not undone: #1"  # the message and (by cascade) its part are gone


def test_undo_unknown_action(capsys, hermetic_env):
    code, out, err = run(capsys, "undo", "999")
    assert code == 2 and err.strip() == "opencode-watchdogd: error: no action 999 in the journal"


def test_reading_commands_create_no_state_dir(capsys, tmp_path, hermetic_env):
    """A first `history` or `undo` (nothing ever journaled) answers and leaves no state dir behind."""
    state = tmp_path / "fresh-state"
    assert run(capsys, "history", "--state-dir", str(state)) == (0, "no actions journaled yet\n", "")
    assert run(capsys, "history", "--json", "--state-dir", str(state))[1].strip() == "[]"
    assert run(capsys, "undo", "--last", "--state-dir", str(state)) == (0, "nothing to undo\n", "")
    assert run(capsys, "undo", "--last", "--json", "--state-dir", str(state))[:2] == (0, "[]\n")
    code, _, err = run(capsys, "undo", "7", "--state-dir", str(state))
    assert code == 2 and err.strip() == "opencode-watchdogd: error: no action 7 in the journal"
    assert not state.exists()


@pytest.mark.parametrize("flag", ["--db", "--config"])
def test_an_empty_file_flag_is_refused_as_empty(capsys, hermetic_env, flag):
    """Not "--db .: is a directory" (Path("") is the current directory)."""
    with pytest.raises(SystemExit) as info:
        main(["scan", flag, ""])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(": an empty path (give a file)")


def test_undo_needs_a_target(capsys, hermetic_env):
    with pytest.raises(SystemExit) as info:
        main(["undo"])
    assert info.value.code == 2


# -- history ---------------------------------------------------------------------------------------------


def test_history(capsys, db, monkeypatch):
    assert run(capsys, "history")[1].strip() == "no actions journaled yet"
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    run(capsys, "reap")
    run(capsys, "undo", "--last")
    code, out, _ = run(capsys, "history")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TIME", "OUTCOME", "ROUTE", "SESSION", "PART", "TOOL"]
    assert lines[1].split()[0] == "2" and "undo" in lines[1] and stuck.part_id in lines[1]
    assert lines[2].split()[0] == "1" and "undone" in lines[2] and "db-repair" in lines[2]
    assert "Which colour" not in out  # ids and reasons, never conversation content

    code, out, _ = run(capsys, "history", "--json", "-n", "1")
    [entry] = json.loads(out)
    assert entry["id"] == 2 and entry["undo_of"] == 1 and "part_before" not in entry
    code, out, _ = run(capsys, "history", "--json", "--with-content")
    entries = json.loads(out)
    assert "Which colour" in entries[1]["part_before"]


# -- config, version, errors
# ----------------------------------------------------------------------------------


def test_config_check_defaults(capsys, hermetic_env):
    code, out, err = run(capsys, "config", "check")
    default = hermetic_env["XDG_CONFIG_HOME"] / "opencode-watchdogd" / "config.toml"
    assert (code, err) == (0, "")
    assert out == f"config ok\n  file:        none (no file at {default}; defaults apply)\n"


def test_config_check_file(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[policy]\norphan_grace = "1m"\n')
    code, out, _ = run(capsys, "config", "check", "-c", str(path))
    assert (code, out) == (0, f"config ok\n  file:        {path} (--config)\n")


def test_config_check_names_every_source(capsys, tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[policy]\norphan_grace = "1m"\n')
    monkeypatch.setenv("OPENCODE_WATCHDOGD_CONFIG", str(path))
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__PENDING", "5m")
    monkeypatch.setenv("OPENCODE_WATCHDOGD_LIVE__TIMEOUT", "3s")
    code, out, _ = run(capsys, "config", "check", "--state-dir", str(tmp_path / "s"), "--log-format", "json")
    assert code == 0
    assert out.splitlines()[1:] == [
        f"  file:        {path} ($OPENCODE_WATCHDOGD_CONFIG)",
        "  environment: OPENCODE_WATCHDOGD_LIVE__TIMEOUT, OPENCODE_WATCHDOGD_POLICY__PENDING",
        "  flags:       --state-dir, --log-format",
    ]


def test_config_check_bad_key(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[policy]\norphan_grase = "1m"\n')
    code, out, err = run(capsys, "config", "check", "-c", str(path))
    assert code == 2 and out == ""
    assert err == f"opencode-watchdogd: config error: {path}: policy.orphan_grase: unknown key\n"


def test_bad_env_fails_every_verb_with_one_line(capsys, monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__PENDING", "soonish")
    code, out, err = run(capsys, "scan")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "env OPENCODE_WATCHDOGD_POLICY__PENDING: policy.pending: not a duration" in err


def test_config_show_redacts(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[servers]]\nurl = "http://127.0.0.1:4096"\npassword = "hunter2"\n[policy.tools]\n"gh_*" = "5m"\n'
    )
    code, out, _ = run(capsys, "config", "show", "-c", str(path))
    assert code == 0 and "hunter2" not in out
    assert '"gh_*" = "5m"' in out and "[[servers]]" in out
    code, out, _ = run(capsys, "config", "show", "--json", "-c", str(path))
    data = json.loads(out)
    assert data["servers"][0]["password"] == "********" and data["policy"]["orphan_grace"] == "30s"


ODD_CONFIG = """
[policy]
orphan_grace = "2h15m10s"
pending = "0.25s"
default = "never"
[policy.tools]
"😀_*" = "5m"
"gh_*" = "90061"
[backup]
max_db_size = "1GB"
[watch]
databases = ["/data/𝄞 music/opencode.db"]
[[servers]]
url = "http://127.0.0.1:4096"
username = "ünï😀"
"""


def test_config_show_round_trips_through_config_check(capsys, tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text(ODD_CONFIG)
    monkeypatch.setenv("OPENCODE_WATCHDOGD_LIVE__TIMEOUT", "7m10s")
    code, shown, _ = run(capsys, "config", "show", "-c", str(path))
    assert code == 0
    assert (
        'orphan_grace = "2h15m10s"' in shown
        and 'max_db_size = "1GB"' in shown
        and 'timeout = "7m10s"' in shown
    )
    assert '"😀_*" = "5m"' in shown and '"gh_*" = "1d1h1m1s"' in shown and 'default = "never"' in shown
    again = tmp_path / "again.toml"
    again.write_text(shown)
    monkeypatch.delenv("OPENCODE_WATCHDOGD_LIVE__TIMEOUT")
    assert run(capsys, "config", "check", "-c", str(again))[:2] == (
        0,
        f"config ok\n  file:        {again} (--config)\n",
    )
    monkeypatch.setenv("OPENCODE_WATCHDOGD_LIVE__TIMEOUT", "7m10s")
    assert load_config(again)[0].model_dump() == load_config(path)[0].model_dump()


def test_config_show_json_uses_the_same_forms(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(ODD_CONFIG)
    code, out, _ = run(capsys, "config", "show", "--json", "-c", str(path))
    data = json.loads(out)
    assert data["policy"]["orphan_grace"] == "2h15m10s" and data["backup"]["max_db_size"] == "1GB"
    assert data["policy"]["tools"]["😀_*"] == "5m" and data["servers"][0]["username"] == "ünï😀"
    code, toml_out, _ = run(capsys, "config", "show", "-c", str(path))
    from_toml = tomllib.loads(toml_out)
    assert data["policy"] == from_toml["policy"] and data["backup"] == from_toml["backup"]


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"opencode-watchdogd {__version__}"


def test_state_dir_option(capsys, db, monkeypatch, tmp_path):
    orphans_due(monkeypatch)
    f.stuck_question(db, age_s=7200)
    state = tmp_path / "elsewhere"
    assert run(capsys, "reap", "--state-dir", str(state))[0] == 0
    assert (state / "journal.db").exists()
    assert "db-repair" in run(capsys, "history", "--state-dir", str(state))[1]


def test_unusable_state_dir(capsys, db, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run(capsys, "scan", "--state-dir", str(blocker / "state"))
    assert code == 2 and err.startswith("opencode-watchdogd: error: state dir") and "Traceback" not in err


def test_history_with_content_labels_each_row_by_its_table(capsys, db, monkeypatch):
    orphans_due(monkeypatch)
    stuck = f.stuck_question(db, age_s=7200)
    part, message = f.read_text(db, "part", stuck.part_id), f.read_text(db, "message", stuck.message_id)
    run(capsys, "reap")
    code, out, _ = run(capsys, "history", "--with-content")
    labelled = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.startswith("    ") and "before:" in line or "after:" in line
    }
    assert set(labelled) == {"part before", "part after", "message before", "message after"}
    assert labelled["part before"] == safe(part, 2000) and labelled["message before"] == safe(message, 2000)
    assert '"status":"error"' in labelled["part after"] and '"completed"' in labelled["message after"]


def test_scan_age_is_human(capsys, db):
    f.stuck_question(db, age_s=6 * 86400 + 7 * 3600 + 50)
    code, out, _ = run(capsys, "scan")
    header, row = out.splitlines()[:2]
    assert row.split()[header.split().index("AGE")] == "6d7h"


@pytest.mark.parametrize("verb", [["status"], ["status", "--json"]])
def test_status_never_creates_the_state_dir(capsys, tmp_path, verb):
    state = tmp_path / "no-state-yet"
    code, _, err = run(capsys, *verb, "--state-dir", str(state))
    assert code in (0, 1) and err == ""
    assert not state.exists()


def test_status_does_not_create_a_journal_in_an_existing_state_dir(capsys, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert run(capsys, "status", "--state-dir", str(state))[0] == 1
    assert list(state.iterdir()) == []


@pytest.mark.parametrize(
    "document", ["[1]", '{"pid": "x"}', '{"pid": 1, "databases": [1]}', '{"pid": 1, "last_pass": 3}']
)
@pytest.mark.parametrize("verb", [["status"], ["status", "--json"]])
def test_status_of_a_status_file_of_another_shape_is_one_line(capsys, tmp_path, verb, document):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "status.json").write_text(document)
    code, out, err = run(capsys, *verb, "--state-dir", str(state))
    if verb == ["status", "--json"] and document.startswith('{"pid": 1'):
        assert code == 1 and json.loads(out)["status"] == json.loads(document)  # --json shows it as it is
        return
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"opencode-watchdogd: error: {state / 'status.json'}: not a status this version can read (damaged, or "
        "written by another version); a running daemon rewrites it after its next pass"
    ]


def test_undo_of_a_pruned_action_says_so(capsys, db, monkeypatch, state_dir):
    orphans_due(monkeypatch)
    f.stuck_question(db, age_s=7200)
    run(capsys, "reap")
    f.stuck_question(db, age_s=3600)
    run(capsys, "reap")
    conn = sqlite3.connect(state_dir / "journal.db")
    conn.execute("DELETE FROM actions WHERE id = 1")  # as journal.keep prunes an old row
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "undo", "1")
    assert code == 2
    assert err.strip().endswith(
        "action 1 is no longer in the journal (older than journal.keep = 90d: pruned)"
    )
    code, _, err = run(capsys, "undo", "9")
    assert code == 2 and err.strip().endswith("no action 9 in the journal")
