"""The state dir (journal, backups, status file, lock): ours, private, never reached through a symlink.

It holds conversation content (the journal's before-images, backup copies), so every path in it is
checked with lstat (a symlink is refused, never followed), must belong to this user, and is created
by this process with O_NOFOLLOW/O_EXCL and a private mode. Modes are changed only on the paths the
daemon itself creates (the journal, the status file, the lock, the backup folders and copies):
pointed at a directory that is also used for something else (`$HOME`), it never touches what it did
not create, the directory itself included.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

JOURNAL_FILE = "journal.db"
LOCK_FILE = "daemon.lock"
CLOCK_STEPS_FILE = "clock-steps.json"  # the wall clock's steps of this boot (watchdogd/clock_steps.py)
OUR_FILES = {
    JOURNAL_FILE: "journal",
    JOURNAL_FILE + "-wal": "journal",
    JOURNAL_FILE + "-shm": "journal",
    "status.json": "status file",
    LOCK_FILE: "lock file",
    CLOCK_STEPS_FILE: "clock steps file",
}


class StateDirError(OSError):
    """A state path that must not be used; the message says which and why, in one line."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _lstat(path: Path, what: str = "state dir") -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateDirError(f"{what} {path}: {_why(exc)}") from None


def _check_ours(path: Path, st: os.stat_result, what: str, kind: int) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"{what} {path} is a symlink: refusing to follow it (use the real path)")
    if stat.S_IFMT(st.st_mode) != kind:
        expected = "a directory" if kind == stat.S_IFDIR else "a regular file"
        raise StateDirError(f"{what} {path} is not {expected}: refusing to use it")
    if st.st_uid != os.geteuid():
        raise StateDirError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()}): "
            "refusing to keep another user's journal there; use --state-dir"
        )


def private_dir(path: Path, what: str = "state dir", tighten: bool = True) -> None:
    """Create `path` 0700 (parents as needed), or check an existing one is ours and not a symlink.

    `tighten`: make an existing one 0700 (only for directories the daemon itself creates)."""
    st = _lstat(path, what)
    if st is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # another process made it just now: checked below like any existing one
        except OSError as exc:
            raise StateDirError(f"{what} {path}: {_why(exc)}") from None
        st = _lstat(path, what)
        if st is None:
            raise StateDirError(f"{what} {path}: vanished while being created")
    _check_ours(path, st, what, stat.S_IFDIR)
    if tighten and stat.S_IMODE(st.st_mode) & 0o077:
        _chmod(path, 0o700)


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except NotImplementedError:  # no lchmod here: the lstat above already refused a symlink
        os.chmod(path, mode)
    except OSError as exc:
        raise StateDirError(f"cannot make {path} private: {_why(exc)}") from None


def private_file(path: Path, what: str = "state file", create: bool = True) -> bool:
    """Create `path` 0600 with O_NOFOLLOW|O_EXCL, or check the existing one; True when it exists after."""
    st = _lstat(path, what)
    if st is None and create:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateDirError(f"{what} {path}: {_why(exc)}") from None
        st = _lstat(path, what)
    if st is None:
        return False
    _check_ours(path, st, what, stat.S_IFREG)
    if stat.S_IMODE(st.st_mode) & 0o077:
        _chmod(path, 0o600)
    return True


def _in_place_of_a_file(st: os.stat_result) -> bool:
    """Neither a regular file nor a symlink (a symlink is refused, not judged as damage)."""
    return not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode)


def check_existing_state_dir(path: Path) -> None:
    """A reading command's check: an existing state dir must be ours and not a symlink; a missing one is left
    missing (nothing is created)."""
    st = _lstat(path)
    if st is not None:
        _check_ours(path, st, "state dir", stat.S_IFDIR)


def prepare_state_dir(path: Path) -> None:
    """At every start: the state dir is ours (else refused), and our own files in it are private.

    A missing state dir is created 0700. The mode of an existing one is left as it is (it may be a
    directory shared with other things, e.g. `$HOME`); our files in it are 0600 and our folders 0700,
    and anything else in it is never touched.
    """
    if not path.is_absolute():
        raise StateDirError(f"state dir {str(path)!r} is not an absolute path")
    private_dir(
        path, tighten=False
    )  # created 0700; an existing one may be shared ($HOME): its mode is not ours
    for name, what in OUR_FILES.items():
        st = _lstat(path / name, what)
        if name == JOURNAL_FILE and st is not None and _in_place_of_a_file(st):
            continue  # a damaged journal (e.g. a directory in its place): the journal says so, never uses it
        private_file(path / name, what, create=False)
    backups = path / "backups"
    if _lstat(backups) is not None:
        private_dir(backups, "backup dir")
        for entry in os.scandir(backups):
            if entry.is_dir(follow_symlinks=False):  # our per-DB folders; anything else there is not touched
                private_dir(Path(entry.path), "backup dir")


class StateLock:
    """One daemon per state dir: an exclusive flock on `daemon.lock`, held for the life of the process."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateDirError("already running (pid N)")."""
        private_file(self.path, "lock file")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise StateDirError(f"lock file {self.path}: {_why(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                who = f"pid {holder}" if holder else "pid unknown"
                raise StateDirError(
                    f"already running ({who}) on state dir {self.path.parent}; stop it first, "
                    "or use another --state-dir"
                ) from None
            raise StateDirError(f"lock file {self.path}: {_why(exc)}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
