"""Shared machinery of the reliability tier: CLI and daemon subprocesses, bulk orphans, invariants, mounts."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import dbfactory

REPO = Path(__file__).resolve().parents[2]
MARKER = "opencode_watchdogd"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, chown, other uids)")


def clean_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a watchdogd subprocess: private XDG dirs, no settings from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENCODE_", "NOTIFY_SOCKET", "WATCHDOG_", "PYTEST_"))
    }
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(tmp / "xdg-sub" / name.split("_")[1].lower())
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def cli(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    state_dir: Path | None = None,
) -> subprocess.CompletedProcess:
    """`python -m watchdogd ARGS` as a real subprocess; its state dir is tmp/state unless given."""
    argv = [sys.executable, "-m", "watchdogd", *args]
    if "--state-dir" not in args and args and args[0] not in ("config", "service"):
        argv += ["--state-dir", str(state_dir or tmp / "state")]
    return subprocess.run(
        argv,
        env=clean_env(tmp, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        check=False,
    )


GRACE0 = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s"}


# -- orphans in bulk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Orphan:
    session_id: str
    message_id: str
    part_id: str
    part_before: str
    message_before: str


def add_orphans(db: Path, count: int, age_s: float = 7200, tool: str = "question") -> list[Orphan]:
    """`count` stuck sessions (reference §2 shape) written in ONE transaction by a separate connection."""
    conn = sqlite3.connect(db, timeout=30)
    out = []
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        for _ in range(count):
            stuck = dbfactory.stuck_question(conn, age_s=age_s, tool=tool)
            out.append(stuck)
        conn.commit()
        result = []
        for stuck in out:
            part = conn.execute("SELECT data FROM part WHERE id=?", (stuck.part_id,)).fetchone()[0]
            message = conn.execute("SELECT data FROM message WHERE id=?", (stuck.message_id,)).fetchone()[0]
            result.append(Orphan(stuck.session_id, stuck.message_id, stuck.part_id, part, message))
        return result
    finally:
        conn.close()


def rows(db: Path, table: str, ids: list[str]) -> dict[str, str]:
    """`data` of the given rows, read through a read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        out = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            out.update(
                conn.execute(
                    f"SELECT id, data FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            )
        return out
    finally:
        conn.close()


def is_repaired_part(text: str) -> bool:
    state = json.loads(text)["state"]
    return state["status"] == "error" and MARKER in (state.get("metadata") or {})


def is_completed_message(text: str) -> bool:
    data = json.loads(text)
    return (
        bool(data.get("time", {}).get("completed"))
        and data.get("error", {}).get("name") == "MessageAbortedError"
    )


def pair_states(db: Path, orphans: list[Orphan]) -> dict[str, str]:
    """part id -> "untouched" | "repaired" | "HALF: …" for each orphan (part and message together)."""
    parts = rows(db, "part", [o.part_id for o in orphans])
    messages = rows(db, "message", [o.message_id for o in orphans])
    out = {}
    for o in orphans:
        part, message = parts.get(o.part_id), messages.get(o.message_id)
        if part == o.part_before and message == o.message_before:
            out[o.part_id] = "untouched"
        elif (
            part is not None
            and message is not None
            and is_repaired_part(part)
            and is_completed_message(message)
        ):
            out[o.part_id] = "repaired"
        else:
            out[o.part_id] = (
                f"HALF: part {'same' if part == o.part_before else 'changed'}, "
                f"message {'same' if message == o.message_before else 'changed'}"
            )
    return out


# -- the journal, read from outside ----------------------------------------------------------------


def journal_actions(state_dir: Path) -> list[dict]:
    path = state_dir / "journal.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM actions ORDER BY id")]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the daemon is creating its journal right now
            return []
        raise
    finally:
        conn.close()


def journal_lies(db: Path, state_dir: Path) -> list[str]:
    """Claims the journal makes that the DB contradicts, and our writes the journal does not explain."""
    problems = []
    actions = journal_actions(state_dir)
    by_id = {a["id"]: a for a in actions}
    repairs = [a for a in actions if a["route"] == "db-repair"]
    parts = rows(db, "part", [a["part_id"] for a in repairs])
    messages = rows(db, "message", [a["message_id"] for a in repairs])
    done_parts = set()
    for a in repairs:
        if a["outcome"] == "done":
            done_parts.add(a["part_id"])
            if a["part_after"] is not None and parts.get(a["part_id"]) != a["part_after"]:
                problems.append(f"#{a['id']} claims part {a['part_id']} written, the row differs")
            if a["message_after"] is not None and messages.get(a["message_id"]) != a["message_after"]:
                problems.append(f"#{a['id']} claims message {a['message_id']} written, the row differs")
    for part_id, text in parts.items():
        if text is None or MARKER not in text:
            continue
        action_id = json.loads(text)["state"]["metadata"][MARKER]["action"]
        action = by_id.get(action_id)
        if action is None:
            problems.append(f"part {part_id} carries our write #{action_id} with no journal row")
        elif action["part_after"] != text:
            problems.append(f"part {part_id}: journal #{action_id} does not hold the row we wrote")
        elif action["outcome"] not in ("done", "planned"):
            problems.append(f"part {part_id}: written by #{action_id}, journaled as {action['outcome']}")
    return problems


# -- mounts (root only) ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill_disk(folder: Path) -> Path:
    """Fill the filesystem of `folder` to the last byte; returns the filler (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while os.write(fd, block) == size:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
