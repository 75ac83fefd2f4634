"""State-dir paths a user or an attacker can get wrong: empty, relative, shared, symlinked; one daemon per dir."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, NotifySocket, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import (
    GRACE0,
    add_orphans,
    clean_env,
    cli,
    journal_actions,
    pair_states,
)

pytestmark = pytest.mark.integration

POLL_1H = {"OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def raw(tmp, *args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """`python -m watchdogd ARGS` exactly as given (no --state-dir added), run in tmp."""
    return subprocess.run(
        [sys.executable, "-m", "watchdogd", *args],
        env=clean_env(tmp, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        check=False,
    )


WAYS = {  # how the empty/relative state dir is given: (argv tail, env, config text)
    "flag-empty": (["--state-dir", ""], {}, None),
    "env-empty": ([], {"OPENCODE_WATCHDOGD_STATE_DIR": ""}, None),
    "file-empty": ([], {}, 'state_dir = ""\n'),
    "file-relative": ([], {}, 'state_dir = "state"\n'),
    "env-relative": ([], {"OPENCODE_WATCHDOGD_STATE_DIR": "state"}, None),
}


@pytest.mark.parametrize("way", sorted(WAYS))
@scenario(
    "state_dir",
    'the state dir is empty or relative: `--state-dir ""`, `OPENCODE_WATCHDOGD_STATE_DIR=` '
    '(empty or relative), `state_dir = ""` or a relative path in the config file; with `reap` and `run`',
    "exit 2 with one line naming where the value came from and that it must be a non-empty absolute path; "
    "nothing is created or changed in the current directory",
)
def test_empty_or_relative_state_dir(tmp_path, way, observe):
    argv, env, text = WAYS[way]
    work = tmp_path / "home"
    work.mkdir()
    work.chmod(0o2775)
    db = dbfactory.make_db(work / "opencode.db")
    add_orphans(db, 1)
    if text is not None:
        (tmp_path / "config.toml").write_text(text)
        argv = [*argv, "--config", str(tmp_path / "config.toml")]
    before = sorted(p.name for p in work.iterdir())
    for verb in ("reap", "run"):
        result = raw(work, verb, "--db", str(db), *argv, env={**GRACE0, **env})
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "state_dir: must" in lines[0], result.stderr
    assert sorted(p.name for p in work.iterdir()) == before and mode(work) == 0o2775
    said = lines[0].split(": ", 1)[1].split(" (")[0].replace(str(tmp_path), "…")
    observe(f"reap and run: exit 2, '{said}'", "current directory unchanged")


@scenario(
    "state_dir",
    "the state dir is a directory used for other things (like `$HOME` under the user unit): "
    "setgid and group-readable, with the user's own files and folders in it; `reap` writes, then the "
    "daemon starts and stops there",
    "the daemon's own files are 0600 and folders 0700; the directory's mode and everything the daemon did "
    "not create keep their modes",
)
def test_shared_state_dir_keeps_other_modes(tmp_path, observe):
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    home.chmod(0o2755)
    (home / "projects").chmod(0o2775)
    (home / "notes.txt").chmod(0o644)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=home).returncode == 0
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, **POLL_1H}, extra_args=["--state-dir", str(home)])
    daemon.state_dir = home
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
    finally:
        assert daemon.stop() == 0
    assert (mode(home), mode(home / "projects"), mode(home / "notes.txt")) == (0o2755, 0o2775, 0o644)
    ours = [home / "journal.db", home / "status.json", *(home / "backups").rglob("*")]
    assert all(mode(p) & 0o777 == (0o700 if p.is_dir() else 0o600) for p in ours), {
        str(p): oct(mode(p)) for p in ours
    }
    observe(
        "dir 2755, projects/ 2775, notes.txt 644 unchanged", f"{len(ours)} files/folders of ours: 0600/0700"
    )


def other_app_db(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes(body) VALUES ('an unrelated app')")
    conn.commit()
    conn.close()


def tables(path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        conn.close()


def link_state_dir(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    os.symlink(real, tmp_path / "state")
    return real, "state dir", "is a symlink"


def link_journal(tmp_path):
    other = tmp_path / "app.db"
    other_app_db(other)
    (tmp_path / "state").mkdir(mode=0o700)
    os.symlink(other, tmp_path / "state" / "journal.db")
    return other, "journal", "is a symlink"


def link_backups(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mine.db").write_bytes(b"precious")
    (tmp_path / "state").mkdir(mode=0o700)
    os.symlink(photos, tmp_path / "state" / "backups")
    return photos, "backup dir", "is a symlink"


LINKS = {"state-dir": link_state_dir, "journal.db": link_journal, "backups": link_backups}


@pytest.mark.parametrize("which", sorted(LINKS))
@scenario(
    "state_dir",
    "the state dir, `journal.db` (pointing at another app's SQLite DB) or `backups/` (pointing "
    "at a folder of the user's files) is a symlink",
    "refused with one line naming the path ('… is a symlink: refusing to follow it'), exit 2; the target is "
    "unchanged (no journal tables added, no file deleted); the opencode DB is not written",
)
def test_symlinked_state_paths_are_refused(tmp_path, which, observe):
    target, what, why = LINKS[which](tmp_path)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    before = sorted(
        (p.name, p.read_bytes() if p.is_file() else b"")
        for p in ([target] if target.is_file() else target.iterdir())
    )
    result = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert f"opencode-watchdogd: error: {what} " in result.stderr and why in result.stderr, result.stderr
    after = sorted(
        (p.name, p.read_bytes() if p.is_file() else b"")
        for p in ([target] if target.is_file() else target.iterdir())
    )
    assert after == before
    if which == "journal.db":
        assert tables(target) == ["notes"]
    assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    observe(f"exit 2: '{what} … {why}: refusing to follow it'", "target unchanged", "DB not written")


@scenario(
    "backups",
    "rotation (backup.keep = 1) in a backup folder that also holds the user's own copy named "
    "like ours (`opencode-<stamp>.db`, older than every copy)",
    "only copies the journal records as written are deleted; the user's file is kept",
)
def test_rotation_deletes_only_recorded_copies(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text('[backup]\nkeep = 1\n[policy]\norphan_grace = "0s"\n')
    add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), "--config", str(config)).returncode == 0
    [folder] = (tmp_path / "state" / "backups").iterdir()
    mine = folder / "opencode-20000101T000000.000000Z.db"
    mine.write_bytes(b"the user's own copy")
    for _ in range(2):
        add_orphans(db, 1)
        assert cli(tmp_path, "reap", "--db", str(db), "--config", str(config)).returncode == 0
    left = sorted(p.name for p in folder.glob("*.db"))
    assert mine.name in left and len(left) == 2, left
    assert mine.read_bytes() == b"the user's own copy"
    observe("3 copies made, keep = 1: the newest kept, the user's file kept, the 2 older copies deleted")


# -- one daemon per state dir ----------------------------------------------------------------------


@scenario(
    "state_dir",
    "a second `run` on the same state dir while one runs",
    "the second exits 2 at once with one line 'already running (pid N)' (N the first daemon's pid); the first "
    "keeps running and its status file is its own",
)
def test_second_daemon_is_refused(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first = DaemonProcess(tmp_path, [db], env=POLL_1H)
    try:
        first.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first daemon's first pass")
        second = cli(tmp_path, "run", "--db", str(db), env=POLL_1H, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"already running (pid {first.pid})" in second.stderr and len(second.stderr.splitlines()) == 1
        assert first.proc.poll() is None and first.status()["pid"] == first.pid
    finally:
        assert first.stop() == 0
    observe("second run: exit 2, 'error: already running (pid N) on state dir …'", "first daemon unaffected")


@scenario(
    "state_dir",
    "`reap` runs beside a running daemon on the same state dir and DB while 20 orphans appear",
    "both keep working; every orphan is repaired exactly once (the loser of a race gets a compare-and-set miss, "
    "never a second write); the journal matches the rows",
)
def test_reap_beside_a_running_daemon(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0s"})
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
        orphans = add_orphans(db, 20)
        reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
        assert reap.returncode in (0, 1) and "Traceback" not in reap.stderr, reap.stdout + reap.stderr
        wait_until(
            lambda: set(pair_states(db, orphans).values()) == {"repaired"}, timeout=60, what="all repaired"
        )
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    done = [a["part_id"] for a in journal_actions(tmp_path / "state") if a["outcome"] == "done"]
    assert sorted(done) == sorted(o.part_id for o in orphans)
    observe("all 20 repaired; exactly one 'done' journal row per orphan across both processes; daemon alive")


@scenario(
    "state_dir",
    "SIGHUP with a config whose state dir cannot be used (a path under a regular file)",
    "the reload fails with one line, the daemon keeps running with the old config and state dir, and still "
    "repairs",
)
def test_reload_to_an_unusable_state_dir_keeps_the_old_config(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    settings = '[policy]\norphan_grace = "0s"\n[watch]\npoll_interval = "1h"\n'
    config.write_text(f'state_dir = "{state}"\n' + settings)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 (closed in the finally below)
    # No --state-dir flag: it would override the file's state_dir at the reload too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdogd", "run", "--db", str(db), "--config", str(config)],
        env=clean_env(tmp_path, {"NOTIFY_SOCKET": str(notify.path)}),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        notify.wait_for("READY=1", timeout=60)
        (tmp_path / "blocker").write_text("x")
        config.write_text(f'state_dir = "{tmp_path / "blocker" / "state"}"\n' + settings)
        mark = len(notify.lines())
        proc.send_signal(signal.SIGHUP)
        failed = notify.wait_for("STATUS=config reload failed", after=mark, timeout=30)
        time.sleep(0.5)
        assert proc.poll() is None, "the daemon died on reload"
        orphans = add_orphans(db, 1)
        wait_until(
            lambda: pair_states(db, orphans) == {orphans[0].part_id: "repaired"},
            timeout=60,
            what="a repair after the failed reload",
        )
        assert journal_actions(state)[-1]["part_id"] == orphans[0].part_id
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
        notify.close()
    assert "Not a directory" in failed, failed
    observe(
        "STATUS='config reload failed: state dir …: Not a directory; running with the previous config'",
        "daemon alive; the next orphan repaired and journaled in the old state dir",
    )
