"""Build real SQLite files shaped like opencode's DB (v1 layout, WAL mode) for tests.

The layout comes from the schema dumps of real opencode in ``tests/data/opencode-<ver>.schema.sql``
(``python -m tests.support.dump_opencode_data``); when a dump is missing, the 1.15.3 DDL of the
tables that matter is used instead. Row JSON follows what real opencode wrote (reference §2, §10 and
``tests/data/opencode-<ver>.stuck-rows.json``): compact ``JSON.stringify`` form, real id shapes.

Every helper takes a DB path (one short connection and one commit per call, like a separate
writer) or an open ``sqlite3.Connection`` (the caller commits).

    db = make_db(tmp_path / "opencode.db")
    ids = stuck_question(db, age_s=7200)
    part = read_data(db, "part", ids.part_id)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

DATA_DIR = Path(__file__).resolve().parent / "data"
VERSIONS = ("1.15.3", "1.18.33")
DEFAULT_DIRECTORY = "/home/user/proj"

# ids wrap every 2**48 / 4096 ms (~795 days); this is the last wrap (2026-08-14T11:19:55.136Z).
ID_WRAP_MS = 26 * (2**48 // 4096)

# The 1.15.3 DDL of the tables the daemon reads, for when the real dump is absent.
FALLBACK_DDL = """
CREATE TABLE `project` (
    `id` text PRIMARY KEY, `worktree` text NOT NULL, `vcs` text, `name` text, `icon_url` text, `icon_color` text,
    `time_created` integer NOT NULL, `time_updated` integer NOT NULL, `time_initialized` integer,
    `sandboxes` text NOT NULL, `commands` text, `icon_url_override` text);
CREATE TABLE `session` (
    `id` text PRIMARY KEY, `project_id` text NOT NULL, `parent_id` text, `slug` text NOT NULL,
    `directory` text NOT NULL, `title` text NOT NULL, `version` text NOT NULL, `share_url` text,
    `summary_additions` integer, `summary_deletions` integer, `summary_files` integer, `summary_diffs` text,
    `revert` text, `permission` text, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
    `time_compacting` integer, `time_archived` integer, `workspace_id` text, `path` text, `agent` text,
    `model` text, `cost` real DEFAULT 0 NOT NULL, `tokens_input` integer DEFAULT 0 NOT NULL,
    `tokens_output` integer DEFAULT 0 NOT NULL, `tokens_reasoning` integer DEFAULT 0 NOT NULL,
    `tokens_cache_read` integer DEFAULT 0 NOT NULL, `tokens_cache_write` integer DEFAULT 0 NOT NULL,
    CONSTRAINT `fk_session_project_id_project_id_fk`
    FOREIGN KEY (`project_id`) REFERENCES `project`(`id`) ON DELETE CASCADE);
CREATE TABLE `message` (
    `id` text PRIMARY KEY, `session_id` text NOT NULL, `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL, `data` text NOT NULL,
    CONSTRAINT `fk_message_session_id_session_id_fk`
    FOREIGN KEY (`session_id`) REFERENCES `session`(`id`) ON DELETE CASCADE);
CREATE TABLE `part` (
    `id` text PRIMARY KEY, `message_id` text NOT NULL, `session_id` text NOT NULL, `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL, `data` text NOT NULL,
    CONSTRAINT `fk_part_message_id_message_id_fk`
    FOREIGN KEY (`message_id`) REFERENCES `message`(`id`) ON DELETE CASCADE);
CREATE INDEX `part_session_idx` ON `part` (`session_id`);
CREATE INDEX `session_project_idx` ON `session` (`project_id`);
CREATE INDEX `session_parent_idx` ON `session` (`parent_id`);
CREATE INDEX `message_session_time_created_id_idx` ON `message` (`session_id`,`time_created`,`id`);
CREATE INDEX `part_message_id_id_idx` ON `part` (`message_id`,`id`);
"""

QUESTION_INPUT = {
    "questions": [
        {
            "question": "Which colour should the widget be?",
            "header": "Colour",
            "options": [
                {"label": "Red", "description": "A red widget"},
                {"label": "Blue", "description": "A blue widget"},
            ],
        }
    ]
}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_serial = itertools.count(1)


# -- ids and JSON ---------------------------------------------------------------------------------


def compact(value: Any) -> str:
    """JSON as opencode stores it (JSON.stringify: no spaces, unicode kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def now_ms() -> int:
    return int(time.time() * 1000)


def _random_tail(length: int = 14) -> str:
    # unique within a process (a counter) and across processes writing one DB at once (the pid)
    digest = int.from_bytes(hashlib.sha256(f"tail-{os.getpid()}-{next(_serial)}".encode()).digest(), "big")
    out = []
    for _ in range(length):
        digest, index = divmod(digest, 62)
        out.append(_BASE62[index])
    return "".join(out)


def make_id(prefix: str, ms: int, counter: int = 1, descending: bool = False) -> str:
    """opencode's Identifier: prefix_ + 12 hex of (ms * 0x1000 + counter) mod 2**48 + 14 base62.

    Sessions use the descending form (bits inverted) so newer sorts first; messages and parts
    ascend. Either way the hex wraps every ~795 days, which is why ids never give time order.
    """
    value = (ms * 0x1000 + (counter & 0xFFF)) & (2**48 - 1)
    if descending:
        value = ~value & (2**48 - 1)
    return f"{prefix}_{value:012x}{_random_tail()}"


def session_id(ms: int | None = None) -> str:
    return make_id("ses", now_ms() if ms is None else ms, descending=True)


def message_id(ms: int | None = None) -> str:
    return make_id("msg", now_ms() if ms is None else ms)


def part_id(ms: int | None = None) -> str:
    return make_id("prt", now_ms() if ms is None else ms)


def new_call_id() -> str:
    return f"call_{_random_tail(24)}"


# -- the DB -----------------------------------------------------------------------------------------


def schema_path(version: str) -> Path:
    return DATA_DIR / f"opencode-{version}.schema.sql"


def schema_sql(version: str = "1.15.3") -> str:
    """The real schema dump of `version` when present, else the 1.15.3 fallback DDL."""
    path = schema_path(version)
    if path.exists():
        statements = path.read_text().strip()
        return statements if statements.endswith(";") else statements + ";"
    return FALLBACK_DDL


@contextlib.contextmanager
def connection(db: Path | str | sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """An open connection: the given one (caller commits), or a short one that commits on exit."""
    if isinstance(db, sqlite3.Connection):
        yield db
        return
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn
        conn.commit()
    finally:
        conn.close()


def make_db(path: Path | str, version: str = "1.15.3", *, sql: str | None = None) -> Path:
    """A new opencode DB file in WAL mode with the layout of `version` (or the given DDL)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.executescript(sql if sql is not None else schema_sql(version))
        stamp = now_ms()
        conn.execute(
            "INSERT INTO project (id, worktree, vcs, time_created, time_updated, sandboxes)"
            " VALUES ('global', '/', NULL, ?, ?, '[]')",
            (stamp, stamp),
        )
        conn.commit()
    finally:
        conn.close()
    return path


def db_version(conn: sqlite3.Connection) -> str:
    """Which pinned release the file's layout matches (1.17+ added the `credential` table)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return "1.18.33" if "credential" in tables else "1.15.3"


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


# -- rows -----------------------------------------------------------------------------------------


def add_session(
    db,
    sid: str | None = None,
    *,
    parent_id: str | None = None,
    directory: str = DEFAULT_DIRECTORY,
    title: str = "Fake session title",
    created_ms: int | None = None,
    agent: str = "build",
    project_id: str = "global",
) -> str:
    created = now_ms() if created_ms is None else created_ms
    sid = sid or session_id(created)
    with connection(db) as conn:
        row = {
            "id": sid,
            "project_id": project_id,
            "parent_id": parent_id,
            "slug": "tidy-cactus",
            "directory": directory,
            "title": title,
            "version": db_version(conn),
            "time_created": created,
            "time_updated": created,
        }
        optional = {
            "path": directory.lstrip("/"),
            "agent": agent,
            "model": compact({"id": "m", "providerID": "fake", "variant": "default"}),
            "summary_additions": 0,
            "summary_deletions": 0,
            "summary_files": 0,
        }
        columns = _columns(conn, "session")
        row.update({k: v for k, v in optional.items() if k in columns})
        conn.execute(
            f"INSERT INTO session ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
    return sid


def user_message_data(created: int, agent: str = "build") -> dict[str, Any]:
    return {
        "role": "user",
        "time": {"created": created},
        "agent": agent,
        "model": {"providerID": "fake", "modelID": "m"},
    }


def assistant_message_data(
    created: int, parent_id: str | None, directory: str = DEFAULT_DIRECTORY, completed: bool = False
) -> dict[str, Any]:
    """The assistant message of reference §2: no `finish` and no `time.completed` while it runs."""
    data: dict[str, Any] = {
        "parentID": parent_id or message_id(created - 1),
        "role": "assistant",
        "mode": "build",
        "agent": "build",
        "path": {"cwd": directory, "root": "/"},
        "cost": 0,
        "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}},
        "modelID": "m",
        "providerID": "fake",
        "time": {"created": created},
    }
    if completed:
        data["time"]["completed"] = created + 500
        data["finish"] = "stop"
    return data


def add_message(
    db,
    session: str,
    *,
    role: str = "assistant",
    completed: bool = False,
    created_ms: int | None = None,
    parent_id: str | None = None,
    mid: str | None = None,
    data: dict | str | None = None,
    directory: str = DEFAULT_DIRECTORY,
) -> str:
    created = now_ms() if created_ms is None else created_ms
    mid = mid or message_id(created)
    if data is None:
        data = (
            user_message_data(created)
            if role == "user"
            else assistant_message_data(created, parent_id, directory, completed)
        )
    text = data if isinstance(data, str) else compact(data)
    with connection(db) as conn:
        conn.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
            (mid, session, created, created + 2, text),
        )
    return mid


def tool_state(
    tool: str,
    status: str,
    start_ms: int | None,
    *,
    raw: bool,
    input: dict | None = None,
    child_session_id: str | None = None,
    parent_session_id: str | None = None,
    output: str = "done",
    error: str = "Tool execution aborted",
) -> dict[str, Any]:
    """`state` of a tool part as opencode writes it for each status."""
    if input is None:
        input = (
            QUESTION_INPUT
            if tool == "question"
            else {"description": "ask the colour", "prompt": "Ask the user.", "subagent_type": "general"}
            if tool == "task"
            else {"command": "sleep 1000", "description": "wait"}
            if tool == "bash"
            else {}
        )
    start = now_ms() if start_ms is None else start_ms
    if status == "pending":
        return {"status": "pending", "input": {}, "raw": ""}
    if status == "running":
        state: dict[str, Any] = {}
        if tool == "task":
            state["title"] = input.get("description", "task")
            state["metadata"] = {
                "parentSessionId": parent_session_id,
                "sessionId": child_session_id,
                "model": {"modelID": "m", "providerID": "fake"},
            }
        elif child_session_id is not None:
            state["metadata"] = {"sessionId": child_session_id}
        state["status"] = "running"
        state["input"] = input
        if raw:
            state["raw"] = ""
        state["time"] = {"start": start}
        return state
    if status == "completed":
        return {
            "status": "completed",
            "input": input,
            "output": output,
            "title": "",
            "metadata": {"truncated": False},
            "time": {"start": start, "end": start + 100},
        }
    if status == "error":
        return {
            "status": "error",
            "input": input,
            "error": error,
            "time": {"start": start, "end": start + 100},
        }
    raise ValueError(f"unknown tool status {status!r}")


def add_tool_part(
    db,
    session: str,
    message: str,
    tool: str = "question",
    status: str = "running",
    *,
    start_ms: int | None = None,
    call_id: str | None = None,
    child_session_id: str | None = None,
    raw: bool | None = None,
    created_ms: int | None = None,
    pid: str | None = None,
    input: dict | None = None,
    data: dict | str | None = None,
) -> str:
    """A tool part; `raw=None` writes `"raw":""` as the DB's release does (1.14/1.15 only).

    Without `created_ms` the row is created 12 ms before `start_ms`, as opencode does.
    """
    start = now_ms() if start_ms is None else start_ms
    created = created_ms if created_ms is not None else start - 12
    pid = pid or part_id(created)
    with connection(db) as conn:
        if raw is None:
            raw = db_version(conn) == "1.15.3"
        if data is None:
            state = tool_state(
                tool,
                status,
                start,
                raw=raw,
                input=input,
                child_session_id=child_session_id,
                parent_session_id=session,
            )
            data = {"type": "tool", "tool": tool, "callID": call_id or new_call_id(), "state": state}
        text = data if isinstance(data, str) else compact(data)
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            (pid, message, session, created, created + 1, text),
        )
    return pid


def add_text_part(
    db,
    session: str,
    message: str,
    text: str = "Please ask me. SCRIPT:question",
    *,
    created_ms: int | None = None,
    pid: str | None = None,
) -> str:
    created = now_ms() if created_ms is None else created_ms
    pid = pid or part_id(created)
    data = {"type": "text", "text": text, "time": {"start": created, "end": created}}
    with connection(db) as conn:
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            (pid, message, session, created, created, compact(data)),
        )
    return pid


def add_step_start(db, session: str, message: str, *, created_ms: int | None = None) -> str:
    created = now_ms() if created_ms is None else created_ms
    pid = part_id(created)
    with connection(db) as conn:
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            (pid, message, session, created, created, compact({"type": "step-start"})),
        )
    return pid


@dataclass(frozen=True)
class Stuck:
    session_id: str
    user_message_id: str
    message_id: str
    part_id: str
    call_id: str
    start_ms: int


def stuck_question(
    db,
    age_s: float = 7200,
    *,
    tool: str = "question",
    status: str = "running",
    directory: str = DEFAULT_DIRECTORY,
    session: str | None = None,
    start_ms: int | None = None,
    child_session_id: str | None = None,
) -> Stuck:
    """The whole stuck state of reference §2: a session, the user's prompt, and an assistant message
    (no time.completed) whose `question` part has been `running` for `age_s` seconds."""
    start = start_ms if start_ms is not None else now_ms() - int(age_s * 1000)
    sid = session or add_session(db, directory=directory, created_ms=start - 400)
    user = add_message(db, sid, role="user", created_ms=start - 300)
    add_text_part(db, sid, user, created_ms=start - 299)
    assistant = add_message(
        db, sid, role="assistant", created_ms=start - 100, parent_id=user, directory=directory
    )
    add_step_start(db, sid, assistant, created_ms=start - 50)
    cid = new_call_id()
    pid = add_tool_part(
        db, sid, assistant, tool, status, start_ms=start, call_id=cid, child_session_id=child_session_id
    )
    return Stuck(sid, user, assistant, pid, cid, start)


# -- reading back -------------------------------------------------------------------------------------


def read_row(db, table: str, row_id: str) -> dict[str, Any] | None:
    assert table in ("session", "message", "part")
    with connection(db) as conn:
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
        finally:
            conn.row_factory = None
    return dict(row) if row is not None else None


def read_text(db, table: str, row_id: str) -> str | None:
    """The `data` column exactly as stored."""
    row = read_row(db, table, row_id)
    return None if row is None else row["data"]


def read_data(db, table: str, row_id: str) -> dict[str, Any] | None:
    text = read_text(db, table, row_id)
    return None if text is None else json.loads(text)


def table_rows(db, table: str) -> list[tuple]:
    """Every row of a table, for "nothing changed" assertions."""
    with connection(db) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def snapshot(db) -> dict[str, list[tuple]]:
    return {table: table_rows(db, table) for table in ("session", "message", "part")}


# -- other processes ------------------------------------------------------------------------------------

_HOLDER_CODE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("SELECT count(*) FROM part").fetchall()
if sys.argv[2] == "read":
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM part").fetchall()
elif sys.argv[2] == "write":
    conn.execute("BEGIN IMMEDIATE")
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holder_process(
    db: Path | str, hold: str = "open", argv0: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Another process with the DB open, like an opencode server: `open` (a connection after one read),
    `read` (a read transaction left open) or `write` (the write lock held). Ends when the block exits."""
    args = [argv0 or sys.executable, "-c", _HOLDER_CODE, str(db), hold]
    proc = subprocess.Popen(
        args, executable=sys.executable, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"holder process did not start: {line!r}")
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
