"""Secrets and content: server passwords never in logs, `config show`, the status file or the journal;
`history` shows ids and reasons, not conversation content, unless asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, needs_root
from tests.support.fake_api import FakeAPI

pytestmark = pytest.mark.integration

BADSERVER = Path(__file__).with_name("badserver.py")
SECRETS = {"config": "cfg-Secret-7f3a", "file": "file-Secret-91bc", "env": "env-Secret-44d2"}


def all_text(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@scenario(
    "secrets",
    "server passwords given in the config file, in a password_file and in OPENCODE_SERVER_PASSWORD; "
    "the daemon talks to that (busy, never freed) server at debug log level",
    "no password in `config show` (text or JSON), the logs, the status file, `status`, `history "
    "--with-content` or any byte of the state dir (journal included)",
)
def test_passwords_never_leak(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRETS["file"] + "\n")
    sid = dbfactory.session_id()
    log = tmp_path / "requests.log"
    server = subprocess.Popen(
        ["opencode", str(BADSERVER), str(db), f"busy:{sid}", str(log)],
        executable=sys.executable,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        config = tmp_path / "config.toml"
        config.write_text(
            f'[policy.tools]\nquestion = "0s"\n[live]\ntimeout = "1s"\n'
            f'[[servers]]\nurl = "http://127.0.0.1:{port}"\npassword = "{SECRETS["config"]}"\n'
            f'[[servers]]\nurl = "http://127.0.0.1:1"\npassword_file = "{secret_file}"\n'
        )
        env = {"OPENCODE_SERVER_PASSWORD": SECRETS["env"]}
        shows = [
            cli(tmp_path, "config", "show", "--config", str(config), env=env),
            cli(tmp_path, "config", "show", "--json", "--config", str(config), env=env),
        ]
        assert all(s.returncode == 0 for s in shows)
        assert (
            '"********"' in shows[0].stdout
            and json.loads(shows[1].stdout)["servers"][0]["password"] == "********"
        )
        time.sleep(0.05)
        dbfactory.stuck_question(db, age_s=0, session=dbfactory.add_session(db, sid))
        daemon = DaemonProcess(
            tmp_path,
            [db],
            extra_args=["--config", str(config), "-v"],
            env={**env, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"},
        )
        try:
            wait_until(
                lambda: [a for a in journal_actions(daemon.state_dir) if a["outcome"] == "failed"],
                timeout=60,
                what="a live action tried (and failed: the server never frees it)",
            )
            status = cli(tmp_path, "status", state_dir=daemon.state_dir)
            history = cli(tmp_path, "history", "--with-content", state_dir=daemon.state_dir)
        finally:
            assert daemon.stop() == 0
    finally:
        server.kill()
        server.wait()
    haystacks = {
        "config show": (shows[0].stdout + shows[1].stdout).encode(),
        "daemon log": daemon.log_path.read_bytes(),
        "status": status.stdout.encode(),
        "history": history.stdout.encode(),
        "state dir": all_text(daemon.state_dir),
    }
    for name, hay in haystacks.items():
        for secret in SECRETS.values():
            assert secret.encode() not in hay, f"{secret} found in {name}"
    observe(
        "none of the 3 passwords in config show, logs, status, history --with-content or the state dir bytes"
    )


@scenario(
    "secrets",
    "a [[servers]] url with credentials in it (http://user:password@host)",
    "refused by `config check` with one line that does not repeat the password",
)
def test_credentials_in_url_are_refused(tmp_path, observe):
    config = tmp_path / "config.toml"
    config.write_text('[[servers]]\nurl = "http://opencode:pw-in-url-5e1@127.0.0.1:4096"\n')
    check = cli(tmp_path, "config", "check", "--config", str(config))
    assert check.returncode == 2
    assert "must not carry credentials" in check.stderr and "pw-in-url-5e1" not in check.stderr + check.stdout
    observe("exit 2: 'servers.0.url: server url must not carry credentials …'; password not echoed")


@scenario(
    "secrets",
    "`history` after repairs (the journal keeps the before/after rows, i.e. conversation content)",
    "ids, outcomes and reasons only; the rows appear only with --with-content",
)
def test_history_shows_no_content_unless_asked(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(db, 2)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    content = dbfactory.QUESTION_INPUT["questions"][0]["question"]
    plain, as_json = cli(tmp_path, "history"), cli(tmp_path, "history", "--json")
    assert content not in plain.stdout and content not in as_json.stdout
    assert content in cli(tmp_path, "history", "--with-content").stdout
    assert content in cli(tmp_path, "history", "--json", "--with-content").stdout
    observe("question text absent from history and history --json; present with --with-content")


ALICE = 4242  # a uid with no account: the DB's owner, not the listener's


@needs_root
@scenario(
    "secrets",
    "a [[servers]] loopback url with a password_file while opencode is down: another user (here root) listens "
    "on that port; the DB belongs to uid 4242. Then the same url for a DB root owns",
    "the listener of another uid gets no request and no password; one warning names the port and the uid "
    "seen. A socket of the DB owner's uid gets the password",
)
def test_configured_server_gets_the_password_only_from_the_db_owners_uid(tmp_path, observe):
    secret = tmp_path / "password"
    secret.write_text(SECRETS["file"] + "\n")
    secret.chmod(0o600)
    folder = tmp_path / "alice"
    theirs = dbfactory.make_db(folder / "opencode.db")
    add_orphans(theirs, 1, age_s=0)
    for path in (folder, theirs):
        os.chown(path, ALICE, ALICE)
    mine = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(mine, 1, age_s=0)
    with FakeAPI("1.18.33", password=SECRETS["file"]) as api:
        config = tmp_path / "config.toml"
        config.write_text(f'[[servers]]\nurl = "{api.url}"\npassword_file = "{secret}"\n')
        refused = cli(tmp_path, "scan", "--db", str(theirs), "--config", str(config))
        asked_for_theirs = api.calls()
        allowed = cli(tmp_path, "scan", "--db", str(mine), "--config", str(config))
        auth = {headers.get("Authorization") for _m, _p, _q, headers in api.calls()}
    assert "Traceback" not in refused.stderr + allowed.stderr
    assert asked_for_theirs == [], asked_for_theirs
    warned = [line for line in refused.stderr.splitlines() if f"port={api.port}" in line]
    assert len(warned) == 1 and "uid=0" in warned[0] and f"db_owner_uid={ALICE}" in warned[0], refused.stderr
    assert SECRETS["file"] not in refused.stdout + refused.stderr + allowed.stdout + allowed.stderr
    assert len(auth) == 1 and next(iter(auth)).startswith("Basic "), auth
    observe(
        f"DB of uid {ALICE}: no request reached the listener; one warning naming its port and uid 0",
        "DB of root: the server was asked with the password (Basic auth)",
    )
