"""Which processes hold a DB open, from /proc."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import dbfactory as f
from watchdogd.opencode.holders import (
    db_identities,
    find_holders,
    in_child_pid_namespace,
    is_watchdogd,
    lock_holders,
    shared_mount,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    db = f.make_db(tmp_path / "opencode.db")
    f.stuck_question(db)
    return db


def test_other_process_is_found_with_a_sane_start_time(db, tmp_path):
    other = f.make_db(tmp_path / "other.db")
    before = time.time()
    with f.holder_process(db) as proc:
        holders = find_holders([db, other])
    assert holders[other] == []
    [holder] = [h for h in holders[db] if h.pid == proc.pid]
    # /proc start times are good to about a second (boot time is whole seconds)
    assert before - 2 <= holder.started_at <= time.time() + 1
    assert "-c" in holder.cmdline and str(db) in holder.cmdline


def test_holder_with_open_read_transaction_is_found(db):
    with f.holder_process(db, "read") as proc:
        assert proc.pid in [h.pid for h in find_holders([db])[db]]


def test_gone_holder_is_not_listed(db):
    with f.holder_process(db) as proc:
        pid = proc.pid
    assert pid not in [h.pid for h in find_holders([db])[db]]


def test_our_own_process_is_excluded(db):
    conn = sqlite3.connect(db)
    try:
        conn.execute("SELECT count(*) FROM part").fetchall()
        assert os.getpid() not in [h.pid for h in find_holders([db])[db]]
    finally:
        conn.close()


def test_watchdogd_processes_are_excluded(db):
    with f.holder_process(db, argv0="opencode-watchdogd") as proc:
        assert proc.pid not in [h.pid for h in find_holders([db])[db]]


def test_symlinked_db_path_is_resolved(db, tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to(db)
    with f.holder_process(db) as proc:
        assert proc.pid in [h.pid for h in find_holders([link])[link]]
        assert db_identities(link) == db_identities(db)


def test_a_holder_through_a_hard_link_holds_the_same_file(db, tmp_path):
    """Matched by (st_dev, st_ino): the path text of the holder's fd says nothing."""
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    alias = other_dir / "renamed.db"
    os.link(db, alias)
    with f.holder_process(alias) as proc:
        [holder] = [h for h in find_holders([db])[db] if h.pid == proc.pid]
    assert holder.visible and str(alias) in holder.cmdline


def test_a_recreated_db_is_not_held_by_a_process_of_the_deleted_one(db, tmp_path):
    with f.holder_process(db) as proc:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        fresh = f.make_db(db)
        assert proc.pid not in [h.pid for h in find_holders([fresh])[fresh]]


def test_no_holders(db):
    assert find_holders([db]) == {db: []}


@pytest.mark.parametrize(
    "cmdline, ours",
    [
        ("/usr/bin/python3 /home/u/.venv/bin/opencode-watchdogd run", True),
        ("opencode-watchdogd scan --json", True),
        ("/home/u/.venv/bin/python -m watchdogd reap", True),
        ("/usr/sbin/watchdogd", False),  # the hardware watchdog daemon is not us
        ("opencode serve --port 4096", False),
        ("/usr/bin/node /home/u/.opencode/bin/opencode", False),
        ("/usr/bin/python3.11 -I -m watchdogd run", True),
        ("/usr/bin/python3 -m watchdogd.cli scan", False),
        ("", False),
        # arguments are not the program: a live opencode whose prompt mentions us is still a live opencode
        ("/usr/bin/node /home/u/.opencode/bin/opencode run please run python -m watchdogd scan", False),
        ("/home/u/.opencode/bin/opencode run opencode-watchdogd", False),
        ("/usr/bin/python3 -c import os -m watchdogd", False),
        ("bash -c opencode-watchdogd", False),
    ],
)
def test_is_watchdogd(cmdline, ours):
    assert is_watchdogd(cmdline) is ours


LOCKS = """1: POSIX  ADVISORY  READ 9003 fe:00:2154547 128 128
2: POSIX  ADVISORY  READ 0 fe:00:2164005 128 128
3: -> POSIX  ADVISORY  WRITE 77 08:11:99 0 EOF
4: OFDLCK ADVISORY  READ -1 00:2b:5 0 EOF
garbage line
"""


def test_lock_holders_reads_device_and_inode_of_each_lock():
    fe00, sda = os.makedev(0xFE, 0), os.makedev(8, 0x11)
    assert lock_holders({(fe00, 2164005)}, LOCKS) == {0}
    assert lock_holders({(sda, 99), (fe00, 2154547)}, LOCKS) == {77, 9003}
    assert lock_holders({(os.makedev(0, 0x2B), 5)}, LOCKS) == {-1}
    assert lock_holders({(fe00, 1)}, LOCKS) == set()


def test_a_wal_connection_locks_the_shm_in_proc_locks(db):
    """What unseen-holder detection rests on: SQLite keeps a shared lock on the -shm while connected."""
    with f.holder_process(db) as proc:
        assert proc.pid in lock_holders(db_identities(db), Path("/proc/locks").read_text())


_FINDER = (
    "import os, sys; from pathlib import Path; from watchdogd.opencode.holders import find_holders; "
    "sys.argv[3:] and (os.setgid(65534), os.setuid(65534)); db = Path(sys.argv[1]); "
    "found = find_holders([db], trust_pid_namespace=sys.argv[2] == 'trust')[db]; "
    "print(repr([(h.pid, h.visible, h.cmdline) for h in found]))"
)


def _find_elsewhere(prefix: list[str], db: Path, trust: bool = False, as_nobody: bool = False) -> list[tuple]:
    """find_holders in another process: in a PID namespace, or as user nobody (after importing as root)."""
    args = [
        *prefix,
        sys.executable,
        "-c",
        _FINDER,
        str(db),
        "trust" if trust else "-",
        *(["nobody"] * as_nobody),
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)  # noqa: S307  # our own repr of tuples


@pytest.fixture
def open_db(tmp_path_factory) -> Path:
    """A DB another user may stat (pytest's own tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="watchdogd-holders-"))
    root.chmod(0o755)
    db = f.make_db(root / "opencode.db")
    f.stuck_question(db)
    yield db
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(shutil.which("unshare") is None and not os.environ.get("CI"), reason="needs unshare(1)")
@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root for a PID namespace")
def test_inside_a_pid_namespace_a_shared_db_is_held_by_an_unseen_process(open_db):
    """The daemon in a container cannot see the host's processes (not even their locks): for a DB on a bind
    mount (shared with the outside) it says so, unless told no outside process can open it."""
    shared = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        f'mount --bind {open_db.parent} {open_db.parent} && exec "$0" "$@"',
    ]
    with f.holder_process(open_db) as proc:
        found = _find_elsewhere(shared, open_db)
        trusted = _find_elsewhere(shared, open_db, trust=True)
    assert proc.pid not in [pid for pid, _v, _c in found]
    assert [(pid, visible) for pid, visible, _c in found] == [(0, False)]
    assert "own PID namespace" in found[0][2] and f"is a bind mount of {open_db.parent}" in found[0][2]
    assert "watch.trust_pid_namespace" in found[0][2]
    assert trusted == []  # told that no process outside can open the DB


@pytest.mark.skipif(shutil.which("unshare") is None and not os.environ.get("CI"), reason="needs unshare(1)")
@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root for a PID namespace")
def test_inside_a_pid_namespace_a_db_on_the_containers_own_filesystem_is_its_own(open_db):
    with f.holder_process(open_db):
        found = _find_elsewhere(["unshare", "--pid", "--fork", "--mount-proc"], open_db)
    assert found == []


def test_shared_mount_reads_the_mount_a_path_is_on(tmp_path):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "60 27 254:0 /home/u/.local/share/opencode /data rw - ext4 /dev/vda rw\n"
        "61 27 0:40 / /data/tmp rw - tmpfs tmpfs rw\n"
        "62 27 254:0 /srv/my\\040dir /my\\040dir rw - ext4 /dev/vda rw\n"
    )
    assert (
        shared_mount(Path("/data/opencode.db"), proc)
        == "/data is a bind mount of /home/u/.local/share/opencode"
    )
    assert shared_mount(Path("/data/tmp/opencode.db"), proc) is None  # a tmpfs of its own
    assert shared_mount(Path("/root/opencode.db"), proc) is None  # the container's root filesystem
    assert shared_mount(Path("/my dir/x.db"), proc) == "/my dir is a bind mount of /srv/my dir"
    assert shared_mount(Path("/x.db"), tmp_path / "nowhere") == "its mounts cannot be read"


def test_in_the_initial_pid_namespace_nothing_is_added(open_db):
    if in_child_pid_namespace():
        pytest.skip("this test machine itself runs in a container's PID namespace")
    assert find_holders([open_db]) == {open_db: []}


@pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root to run as another user"
)
def test_a_holder_whose_fds_cannot_be_read_is_an_unseen_holder(open_db):
    with f.holder_process(open_db) as proc:
        found = _find_elsewhere([], open_db, as_nobody=True)
    [(pid, visible, cmdline)] = found
    assert pid == proc.pid and not visible and "cannot be read" in cmdline


@pytest.mark.skipif(shutil.which("unshare") is None and not os.environ.get("CI"), reason="needs unshare(1)")
@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root to mount /proc")
def test_a_holder_hidden_by_hidepid_is_an_unseen_holder(open_db):
    """/proc mounted with hidepid hides other users' processes; their locks stay listed in /proc/locks."""
    hidden_proc = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t proc -o hidepid=2 proc /proc && exec "$0" "$@"',
    ]
    with f.holder_process(open_db) as proc:
        found = _find_elsewhere(hidden_proc, open_db, as_nobody=True)
    [(pid, visible, cmdline)] = found
    assert pid == proc.pid and not visible and "not visible in /proc (hidepid" in cmdline
