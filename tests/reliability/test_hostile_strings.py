"""Hostile strings in ids, tool names, titles and directories: every output stays one safe line per record."""

from __future__ import annotations

import json
import re

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, cli, journal_actions

pytestmark = pytest.mark.integration

# Anything that could move the cursor, recolour, retitle the terminal, end a line or reorder text.
UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
LONG = 100_000

HOSTILE = [  # (session id, message id, part id, tool, title, directory)
    (
        "ses_\x1b[2J\x1b[31mEVIL\nopencode-watchdogd: fake line",
        "msg_\rrewrite",
        "prt_\x1b]0;pwned\x07title",
        "question\n#99 done      all good\x1b[0m",
        "\u202eevil title\u2028second",
        "/home/u/\x1b[8mhidden\nproj",
    ),
    (
        "ses_" + "A" * LONG,
        "msg_" + "B" * LONG,
        "prt_" + "C" * LONG,
        "mcp_" + "D" * LONG,
        "T" * (1 << 20),
        "/" + "d" * LONG,
    ),
    (
        "ses_\u2066bidi\u2069\u200f",
        "msg_\x00nul",
        "prt_\x7fdel\x9bcsi",
        "bash\u2029",
        "tab\there",
        "/tmp/\u061cx",
    ),
]


def hostile_db(path):
    db = dbfactory.make_db(path)
    start = dbfactory.now_ms() - 7_200_000
    parts = []
    for sid, mid, pid, tool, title, directory in HOSTILE:
        dbfactory.add_session(db, sid, title=title, directory=directory, created_ms=start - 400)
        user = dbfactory.add_message(db, sid, role="user", created_ms=start - 300)
        dbfactory.add_message(db, sid, mid=mid, created_ms=start - 100, parent_id=user, directory=directory)
        dbfactory.add_tool_part(db, sid, mid, tool, start_ms=start, pid=pid)
        parts.append(pid)
    return db, parts


def assert_safe(text: str, what: str, max_line: int = 6000) -> list[str]:
    bad = UNSAFE.search(text)
    assert bad is None, f"{what}: unsafe character {bad.group()!r} at {bad.start()}"
    lines = text.splitlines()
    assert all(len(line) <= max_line for line in lines), (
        f"{what}: a line of {max(map(len, lines))} characters"
    )
    return lines


@scenario(
    "hostile_strings",
    "ids, tool names, titles and directories holding terminal escapes (clear screen, "
    "colours, window title, hidden text), CR/LF, NUL, DEL, C1, bidi overrides, U+2028, and 100 000-1 MiB "
    "strings; through scan, reap, history and status",
    "printable output, one line per record, bounded length (escapes shown as \\xNN, long values cut with …)",
)
def test_cli_outputs_stay_one_safe_line_per_record(tmp_path, observe):
    db, parts = hostile_db(tmp_path / "opencode.db")
    n = len(parts)
    scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
    assert scan.returncode == 1, scan.stderr
    lines = assert_safe(scan.stdout, "scan")
    assert len(lines) == 2 * n + 2  # header, one row per part, a blank line, one reason line per part
    assert "\\x1b[2J" in scan.stdout  # shown, not executed
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert len(assert_safe(reap.stdout, "reap")) == n
    assert len([a for a in journal_actions(tmp_path / "state") if a["outcome"] == "done"]) == n
    history = cli(tmp_path, "history")
    assert len(assert_safe(history.stdout, "history")) == 1 + 2 * n
    as_json = json.loads(cli(tmp_path, "history", "--json").stdout)
    assert sorted(a["part_id"] for a in as_json) == sorted(parts)  # exact values kept in JSON

    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, what="status")
        status = cli(tmp_path, "status", state_dir=daemon.state_dir)
    finally:
        daemon.stop()
    lines = assert_safe(status.stdout, "status")
    assert len([line for line in lines if line.startswith("    #")]) == n  # one line per recent action
    observe(
        "scan: 2N+2 lines, reap: N lines, history: 2N+1 lines, status: one line per action",
        "no control/bidi character reached the terminal; longest line bounded",
        "JSON output keeps exact values",
    )


@scenario(
    "hostile_strings",
    "the same hostile rows repaired by the daemon (JSON logs) and by `reap` with console logs at debug level",
    "every log record is one line: JSON lines parse, console lines all start with a timestamp; no raw "
    "control or bidi character; values cut at 2000 characters",
)
def test_logs_stay_one_safe_line_per_record(tmp_path, observe):
    db, parts = hostile_db(tmp_path / "opencode.db")
    daemon = DaemonProcess(
        tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}, extra_args=["-v"]
    )
    try:
        wait_until(
            lambda: (
                len([a for a in journal_actions(daemon.state_dir) if a["outcome"] == "done"]) == len(parts)
            ),
            timeout=30,
            what="repairs",
        )
    finally:
        daemon.stop()
    text = daemon.log_path.read_text()
    lines = assert_safe(text, "daemon JSON log", max_line=30000)
    records = [json.loads(line) for line in lines]  # every line is one whole record
    assert sum(r.get("event") == "action done" for r in records) == len(parts)
    assert all(len(v) <= 2000 for r in records for v in r.values() if isinstance(v, str))

    db2, parts2 = hostile_db(tmp_path / "second" / "opencode.db")
    reap = cli(
        tmp_path,
        "reap",
        "--db",
        str(db2),
        "--log-format",
        "console",
        "-v",
        env=GRACE0,
        state_dir=tmp_path / "state2",
    )
    assert reap.returncode == 0, reap.stderr[-3000:]
    lines = assert_safe(reap.stderr, "console log", max_line=30000)
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in lines), lines[:5]
    assert sum("action done" in line for line in lines) == len(parts2)
    observe(
        "daemon JSON log: every line parses, one 'action done' per part",
        "console log: every line starts with a timestamp (no forged lines), escapes shown as \\xNN",
    )


def set_raw(db, table: str, column: str, row_id: str, raw: bytes) -> None:
    """Store bytes that are not UTF-8 as TEXT, as a foreign writer could."""
    with dbfactory.connection(db) as conn:
        conn.execute(f"UPDATE {table} SET {column} = CAST(? AS TEXT) WHERE id = ?", (raw, row_id))


@scenario(
    "hostile_strings",
    "bytes that are not UTF-8 in one part row, in a session's title and directory, and in "
    "an assistant message row, next to a normal orphan",
    "the bad part and the bad message are explained and skipped (no content echoed), the others are "
    "repaired; one bad row never blocks the DB",
)
def test_invalid_utf8_rows(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    good, bad_part, bad_session, bad_message = (dbfactory.stuck_question(db) for _ in range(4))
    text = dbfactory.read_text(db, "part", bad_part.part_id).encode()
    set_raw(db, "part", "data", bad_part.part_id, text.replace(b'"question"', b'"q\xffuestion"', 1))
    set_raw(db, "session", "title", bad_session.session_id, b"title \xff\xfe")
    set_raw(db, "session", "directory", bad_session.session_id, b"/home/\xc3(")
    message = dbfactory.read_text(db, "message", bad_message.message_id).encode()
    set_raw(db, "message", "data", bad_message.message_id, message.replace(b'"build"', b'"bu\xffild"', 1))
    scan = cli(tmp_path, "scan", "--db", str(db), "--json", env=GRACE0)
    assert scan.returncode == 1, scan.stderr
    assert {r["part_id"] for r in json.loads(scan.stdout)} == {
        good.part_id,
        bad_session.part_id,
        bad_message.part_id,
    }
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    output = reap.stdout + reap.stderr
    assert reap.returncode == 1 and "Traceback" not in output, output
    assert f"part {bad_part.part_id} skipped: part row is not valid UTF-8" in output
    assert "message row is not valid UTF-8" in output
    assert "Could not decode" not in output and "Which colour" not in output  # no row content echoed
    done = {a["part_id"] for a in journal_actions(tmp_path / "state") if a["outcome"] == "done"}
    assert done == {good.part_id, bad_session.part_id}
    assert_safe(output, "reap output", max_line=30000)
    observe(
        "bad part: 'skipped: part row is not valid UTF-8'; bad message: skipped, not valid UTF-8",
        "the normal orphan and the one with a bad title/directory repaired; no row content in the output",
    )
