"""The compare-and-set checks the session of both rows: another session's message is never completed."""

from __future__ import annotations

import sqlite3

import pytest

from tests import dbfactory
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions
from tests.reliability.test_cas import interfere_before_write, one_pass

pytestmark = pytest.mark.integration


def live_session_message(db) -> tuple[str, str]:
    """(session id, message id) of another session whose assistant message is still running."""
    session = dbfactory.add_session(db)
    message = dbfactory.add_message(db, session)
    return session, message


def point_part_at(db, part_id: str, message_id: str) -> None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE part SET message_id=? WHERE id=?", (message_id, part_id))
        conn.commit()
    finally:
        conn.close()


@scenario(
    "cas",
    "an orphan part whose `message_id` names a running assistant message of ANOTHER session",
    "reported, not repaired: neither the part nor the other session's message is written; the reason names "
    "both sessions",
)
def test_part_whose_message_is_in_another_session(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    other_session, other_message = live_session_message(db)
    point_part_at(db, orphan.part_id, other_message)
    before = dbfactory.snapshot(db)
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert "Traceback" not in reap.stderr, reap.stderr
    assert dbfactory.snapshot(db) == before
    assert (
        f"belongs to session {other_session}, not to the part's session {orphan.session_id}" in reap.stdout
    ), reap.stdout + reap.stderr
    assert [a["outcome"] for a in journal_actions(tmp_path / "state")] == []
    observe(
        f"reap exit {reap.returncode}: 'its message … belongs to session …, not to the part's session …: "
        "not repaired'",
        "no row changed, nothing journaled",
    )


@scenario(
    "cas",
    "the message row is moved to another session between the daemon's read and its write",
    "compare-and-set miss on the session: nothing written, journaled skipped",
)
def test_message_moved_to_another_session_before_the_write(env, monkeypatch, observe):
    db, settings, journal = env
    [orphan] = add_orphans(db, 1)
    other_session = dbfactory.add_session(db)

    def move():
        conn = sqlite3.connect(db, timeout=10)
        try:
            conn.execute("UPDATE message SET session_id=? WHERE id=?", (other_session, orphan.message_id))
            conn.commit()
        finally:
            conn.close()

    interfere_before_write(monkeypatch, move)
    [outcome] = one_pass(db, journal, settings)
    assert str(outcome.outcome) == "skipped", (outcome.outcome, outcome.detail)
    assert dbfactory.read_text(db, "part", orphan.part_id) == orphan.part_before
    assert dbfactory.read_text(db, "message", orphan.message_id) == orphan.message_before
    observe(f"outcome skipped: '{outcome.detail.split(';')[0]}'", "part and message unchanged")


@scenario(
    "secrets",
    "a `[[servers]]` password_file that group and others can read (0644)",
    "one warning naming the file, its mode and the fix (`chmod 600 …`); the password itself never printed",
)
def test_shared_password_file_is_warned_about(tmp_path, observe):
    secret = tmp_path / "password"
    secret.write_text("s3cret-Pa55\n")
    secret.chmod(0o644)
    config = tmp_path / "config.toml"
    config.write_text(f'[[servers]]\nurl = "http://127.0.0.1:1"\npassword_file = "{secret}"\n')
    db = dbfactory.make_db(tmp_path / "opencode.db")
    scan = cli(tmp_path, "scan", "--db", str(db), "--config", str(config))
    warned = [
        line for line in scan.stderr.splitlines() if "password_file is readable by group or others" in line
    ]
    assert len(warned) == 1 and "0644" in warned[0] and f"chmod 600 {secret}" in warned[0], scan.stderr
    assert "s3cret-Pa55" not in scan.stdout + scan.stderr
    secret.chmod(0o600)
    quiet = cli(tmp_path, "scan", "--db", str(db), "--config", str(config))
    assert "readable by group or others" not in quiet.stderr
    observe(
        "0644: one warning 'password_file is readable by group or others' with mode 0644 and 'chmod 600 …'",
        "0600: no warning; the password never printed",
    )
