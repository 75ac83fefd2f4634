"""Where the DB lives: behind a symlink, on a network filesystem, on a read-only mount, in a read-only dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import (
    GRACE0,
    add_orphans,
    cli,
    journal_actions,
    needs_root,
    pair_states,
    remount,
    tmpfs,
)
from watchdogd import cli as watchdogd_cli
from watchdogd.opencode import writegate
from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError

NOBODY = 65534


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- symlinks ----------------------------------------------------------------------------------------


@scenario(
    "paths",
    "the DB path given to the daemon is a symlink to the real file in another directory "
    "(and is later pointed at another DB)",
    "documented: the daemon resolves the link and works on the file itself (watches its real directory, "
    "journals and shows the real path), re-resolving it every pass",
)
def test_symlinked_db_is_resolved(tmp_path, observe):
    real = dbfactory.make_db(tmp_path / "real" / "opencode.db")
    other = dbfactory.make_db(tmp_path / "other" / "opencode.db")
    link = tmp_path / "links" / "opencode.db"
    link.parent.mkdir()
    link.symlink_to(real)
    scan = cli(tmp_path, "scan", "--db", str(link), "--json")
    assert scan.returncode == 0, scan.stderr
    daemon = DaemonProcess(tmp_path, [link], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        daemon.wait_status(lambda s: s["databases"], what="status")
        assert [d["path"] for d in daemon.status()["databases"]] == [str(real)]
        orphans = add_orphans(
            real, 2
        )  # a commit in the real directory: seen by the file watcher, no poll needed
        wait_until(
            lambda: set(pair_states(real, orphans).values()) == {"repaired"},
            timeout=30,
            what="repair through the symlink",
        )
        assert {a["db"] for a in journal_actions(daemon.state_dir)} == {str(real)}
        assert link.is_symlink()  # the link itself is left alone
        # Point the link at another DB: the next pass (here: a SIGHUP) follows it.
        link.unlink()
        link.symlink_to(other)
        moved = add_orphans(other, 1)
        daemon.signal(1)
        wait_until(
            lambda: pair_states(other, moved)[moved[0].part_id] == "repaired",
            timeout=30,
            what="repair in the new target",
        )
        # The status file is published at the end of the pass that repaired it: wait for that pass.
        daemon.wait_status(
            lambda s: [d["path"] for d in s["databases"]] == [str(other)],
            timeout=30,
            what="status showing the new target",
        )
    finally:
        assert daemon.stop() == 0
    observe(
        "status and journal show the real path; a commit in the real directory woke the daemon (poll 1h)",
        "after re-pointing the link, the new target was watched and repaired",
    )


# -- network filesystems -------------------------------------------------------------------------------


@scenario(
    "paths",
    "the DB is on a network filesystem (statfs f_type NFS; simulated: the test answers statfs "
    "for the DB directory with NFS_SUPER_MAGIC, as no NFS server can run here)",
    "detected and refused: `reap` writes nothing and says why; `scan` marks it read-only; the store refuses "
    "any compare-and-set on it",
)
def test_network_filesystem_is_detected_and_refused(tmp_path, monkeypatch, capsys, observe):
    db = dbfactory.make_db(tmp_path / "nfs" / "opencode.db")
    orphans = add_orphans(db, 1)
    real_magic = writegate.fs_magic
    assert writegate.network_fs(str(db.parent)) is None  # the real local filesystem is not refused
    monkeypatch.setattr(
        writegate, "fs_magic", lambda path: 0x6969 if path.startswith(str(db.parent)) else real_magic(path)
    )
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE", "0s")
    state = ["--state-dir", str(tmp_path / "state")]
    assert watchdogd_cli.main(["scan", "--db", str(db), "--json", *state]) == 2
    out = capsys.readouterr()
    [record] = json.loads(out.out)
    assert record["route"].startswith("report: DB not writable (on a network filesystem (nfs")
    assert "read-only: on a network filesystem" in out.err
    assert watchdogd_cli.main(["reap", "--db", str(db), *state]) == 1
    out = capsys.readouterr()
    assert "network filesystem" in out.out and "reported" in out.out
    assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    assert journal_actions(tmp_path / "state") == []  # not even planned, and no backup taken
    assert not (tmp_path / "state" / "backups").exists()
    store = OpencodeStore(db)
    with pytest.raises(StoreError, match="network filesystem"):
        store.compare_and_set([RowChange("part", orphans[0].part_id, orphans[0].part_before, "{}")])
    store.close()
    observe(
        "scan: route 'report: DB not writable (on a network filesystem (nfs…))'",
        "reap: reported, exit 1, nothing written, no journal row, no backup",
        "store compare-and-set refused",
        "local ext4/tmpfs not refused",
    )


def test_network_magic_table():
    assert writegate.NETWORK_MAGIC[0x6969] == "nfs" and writegate.NETWORK_MAGIC[0x65735546] == "fuse"
    assert writegate.NETWORK_MAGIC[0x01021997] == "9p" and writegate.NETWORK_MAGIC[0xFF534D42] == "cifs"
    assert writegate.fs_magic(str(Path(__file__).parent)) not in writegate.NETWORK_MAGIC


# -- read-only mount -------------------------------------------------------------------------------------


@needs_root
@scenario(
    "paths",
    "the DB is on a read-only mount (a tmpfs remounted ro; WAL DB without its -shm)",
    "clear report naming the read-only mount, exit 2, the file is byte-for-byte unchanged",
)
def test_read_only_mount(tmp_path, observe):
    with tmpfs(tmp_path / "mnt") as mnt:
        db = dbfactory.make_db(mnt / "opencode.db")
        add_orphans(db, 1)
        before = digest(db)
        remount(mnt, "ro")
        try:
            scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
            reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
            assert digest(db) == before
        finally:
            remount(mnt, "rw")
    assert scan.returncode == 2 and reap.returncode == 2
    for result in (scan, reap):
        assert "on a read-only mount" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    observe(
        "scan and reap exit 2: 'unable to open database file (on a read-only mount: nothing can be written "
        "there)'",
        "file unchanged",
    )


# -- read-only directory / file for an unprivileged user ---------------------------------------------------


@contextlib.contextmanager
def shared_dir() -> Path:
    """A directory outside the root-only pytest tree, so another uid can reach it."""
    path = Path(tempfile.mkdtemp(prefix="watchdogd-rel-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as(uid: int, home: Path, argv: list[str]) -> tuple[int, str]:
    """cli.main(argv) in a forked child running as `uid` (the interpreter is not reachable by other users)."""
    out = home / f"out-{time.monotonic_ns()}.txt"
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
                os.environ[name] = str(home / "xdg" / name)
            os.environ["OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE"] = "0s"
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            code = watchdogd_cli.main(argv)
        except BaseException as exc:  # noqa: BLE001 (the child reports anything, never returns into pytest)
            print(f"child failed: {exc!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.read_text()


@needs_root
@scenario(
    "paths",
    f"unprivileged user (uid {NOBODY}): the DB directory is read-only (0555) with no -wal/-shm, "
    "then the DB file itself is read-only (0444)",
    "read-only dir: clear report (SQLite could not create -shm/-wal), no write; read-only file: scan works, "
    "reap reports why and writes nothing",
)
def test_read_only_dir_and_file_for_a_user(observe):
    # Imports the forked child would otherwise do lazily (it cannot read the root-only interpreter tree).
    import watchdogd.commands.reap
    import watchdogd.commands.scan  # noqa: F401

    with shared_dir() as home:
        folder = home / "data"
        db = dbfactory.make_db(folder / "opencode.db")
        orphans = add_orphans(db, 1)
        os.chown(db, NOBODY, NOBODY)
        os.chown(home, NOBODY, NOBODY)
        folder.chmod(0o555)
        os.chown(folder, NOBODY, NOBODY)
        before = digest(db)
        code, text = run_as(NOBODY, home, ["reap", "--db", str(db), "--state-dir", str(home / "state")])
        assert code == 2, text
        assert "directory is not writable" in text and "Traceback" not in text, text
        assert digest(db) == before

        folder.chmod(0o755)
        db.chmod(0o444)
        code, text = run_as(NOBODY, home, ["scan", "--db", str(db), "--state-dir", str(home / "state")])
        assert code == 2 and "read-only: the file is not writable" in text, text
        assert orphans[0].part_id in text  # it could read it
        code, text = run_as(NOBODY, home, ["reap", "--db", str(db), "--state-dir", str(home / "state")])
        assert code == 1 and "reported" in text and "not writable" in text, text
        assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    observe(
        "0555 dir: exit 2, '… its directory is not writable by nobody (uid 65534), so SQLite cannot create the "
        "-wal/-shm file(s) a write needs'",
        "0444 file: scan lists the part and says read-only; reap reported, exit 1, nothing written",
    )
