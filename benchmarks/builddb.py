"""Build an opencode DB shaped like a heavy user's: the real layout, real row shapes and sizes.

Layout: the schema dump of a DB that real opencode wrote (tests/data/opencode-<version>.schema.sql).
Rows: sessions of user turns; each assistant step is step-start, sometimes reasoning, sometimes
text, 0-3 tool parts (read/bash/edit/grep/… with outputs of several KB, bash output also in
metadata, edit diffs in metadata), step-finish with tokens and cost — the shapes opencode 1.15-1.18
writes (compact JSON). Times cover ~600 days up to now, so part ids wrap once inside the DB.
A few tool parts are left `running`/`pending` in old sessions, as crashed runs leave them.

Built with executemany in big transactions (synchronous=OFF while building), then WAL mode.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.dbfactory import compact, make_id, new_call_id, schema_sql  # noqa: E402

BATCH_PARTS = 20_000
DAY_MS = 86_400_000
# (tool, weight, output bytes low, high)
TOOLS = [
    ("read", 34, 2_000, 12_000),
    ("bash", 20, 200, 6_000),
    ("edit", 15, 300, 1_500),
    ("grep", 8, 300, 3_000),
    ("glob", 5, 200, 2_000),
    ("todowrite", 7, 400, 1_500),
    ("write", 4, 100, 300),
    ("task", 2, 500, 3_000),
    ("webfetch", 2, 5_000, 20_000),
    ("question", 1, 50, 200),
    ("github_search_issues", 2, 1_000, 8_000),
]
_TOOL_NAMES = [t[0] for t in TOOLS]
_TOOL_WEIGHTS = [t[1] for t in TOOLS]
_TOOL_SIZES = {t[0]: (t[2], t[3]) for t in TOOLS}
SEEDED_STUCK = [
    ("question", "running"),
    ("bash", "running"),
    ("task", "running"),
    ("read", "running"),
    ("github_search_issues", "running"),
    ("bash", "pending"),
]


def _corpus(rng: random.Random) -> str:
    words = [
        "the",
        "def",
        "return",
        "import",
        "self",
        "value",
        "if",
        "else",
        "for",
        "in",
        "while",
        "class",
        "from",
        "None",
        "True",
        "False",
        "path",
        "file",
        "data",
        "error",
        "test",
        "assert",
        "result",
        "config",
        "session",
        "message",
        "part",
        "tool",
        "status",
        "running",
        "completed",
        "json",
        "sqlite",
        "query",
        "index",
        "table",
        "row",
        "column",
        "int",
        "str",
        "list",
        "dict",
        "async",
        "await",
        "yield",
        "print",
        "raise",
    ]
    lines = []
    for _ in range(9_000):
        indent = " " * (4 * rng.randint(0, 3))
        lines.append(indent + " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))))
    return "\n".join(lines)


@dataclass
class Built:
    path: Path
    parts: int
    seconds: float
    bytes: int
    seeded: list[dict]


class Generator:
    def __init__(self, rng: random.Random, start_ms: int, end_ms: int, parts: int):
        self.rng = rng
        self.corpus = _corpus(rng)
        self.now = start_ms
        self.end_ms = end_ms
        # about 1.4 ticks per part (sessions and messages tick too): the history ends before end_ms
        self.step_ms = max(1, int((end_ms - start_ms) / (max(parts, 1) * 1.6)))
        self.counter = 0

    def text(self, low: int, high: int) -> str:
        n = self.rng.randint(low, high)
        at = self.rng.randrange(0, len(self.corpus) - n - 1)
        return self.corpus[at : at + n]

    def tick(self) -> int:
        self.now = min(self.now + self.rng.randint(1, 2 * self.step_ms), self.end_ms)
        return self.now

    def pid(self, ms: int, prefix: str = "prt") -> str:
        self.counter += 1
        return make_id(prefix, ms, self.counter)

    def tool_data(self, tool: str, status: str, ms: int) -> dict:
        rng = self.rng
        low, high = _TOOL_SIZES[tool]
        path = (
            f"/home/user/src/project/{rng.choice(('main', 'store', 'util', 'cli', 'models', 'test_api'))}.py"
        )
        inputs = {
            "read": {"filePath": path},
            "bash": {"command": self.text(20, 120), "description": "Run the tests"},
            "edit": {"filePath": path, "oldString": self.text(50, 600), "newString": self.text(50, 600)},
            "grep": {"pattern": "def \\w+", "path": "/home/user/src/project"},
            "glob": {"pattern": "**/*.py"},
            "write": {"filePath": path, "content": self.text(200, 4_000)},
            "todowrite": {
                "todos": [
                    {"content": self.text(20, 80), "status": "pending", "priority": "high", "id": str(i)}
                    for i in range(rng.randint(2, 8))
                ]
            },
            "task": {
                "description": "Explore the code",
                "prompt": self.text(100, 800),
                "subagent_type": "general",
            },
            "webfetch": {"url": "https://example.com/docs", "format": "markdown"},
            "question": {
                "questions": [
                    {
                        "question": "Which colour?",
                        "header": "Colour",
                        "options": [
                            {"label": "Red", "description": "red"},
                            {"label": "Blue", "description": "blue"},
                        ],
                    }
                ]
            },
            "github_search_issues": {"query": self.text(10, 40)},
        }[tool]
        start = ms + rng.randint(5, 50)
        if status == "pending":
            state = {"status": "pending", "input": {}, "raw": ""}
        elif status == "running":
            state = {"status": "running", "input": inputs, "time": {"start": start}}
            if tool == "task":
                state["title"] = "Explore the code"
                state["metadata"] = {
                    "sessionId": make_id("ses", ms, descending=True),
                    "model": {"modelID": "m", "providerID": "p"},
                }
        else:
            output = self.text(low, high)
            metadata: dict = {"truncated": False}
            if tool == "bash":
                metadata.update(output=output, exit=0, description="Run the tests")
            elif tool == "edit":
                metadata["diff"] = self.text(300, 4_000)
                metadata["filediff"] = {
                    "file": path,
                    "additions": rng.randint(1, 40),
                    "deletions": rng.randint(0, 30),
                }
            elif tool == "read":
                metadata["preview"] = output[:600]
            state = {
                "status": "completed",
                "input": inputs,
                "output": output,
                "title": path,
                "metadata": metadata,
                "time": {"start": start, "end": start + rng.randint(10, 30_000)},
            }
            if rng.random() < 0.03:
                state = {
                    "status": "error",
                    "input": inputs,
                    "error": "Tool execution aborted",
                    "metadata": {"interrupted": True},
                    "time": {"start": start, "end": start + 100},
                }
        return {"type": "tool", "callID": f"toolu_{new_call_id()[5:]}", "tool": tool, "state": state}


def build(path: Path, parts: int, *, version: str = "1.18.33", seed: int = 7, progress=None) -> Built:
    """Write a new DB with about `parts` part rows; returns what was built and the seeded stuck rows."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    end_ms = int(time.time() * 1000) - 3_600_000
    gen = Generator(rng, end_ms - 600 * DAY_MS, end_ms, parts)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(schema_sql(version))
    conn.execute(
        "INSERT INTO project (id, worktree, vcs, time_created, time_updated, sandboxes) "
        "VALUES ('global', '/', 'git', ?, ?, '[]')",
        (gen.now, gen.now),
    )
    columns = {r[1] for r in conn.execute("PRAGMA table_info(session)")}

    sessions: list[tuple] = []
    messages: list[tuple] = []
    rows: list[tuple] = []
    # where to leave stuck parts: spread over the history, never in the newest rows
    stuck_at = sorted(
        rng.sample(
            range(parts // 10, max(parts // 10 + len(SEEDED_STUCK), parts * 9 // 10)), len(SEEDED_STUCK)
        )
    )
    seeded: list[dict] = []
    written = 0

    def flush() -> None:
        conn.execute("BEGIN")
        if sessions:
            names = [
                "id",
                "project_id",
                "slug",
                "directory",
                "title",
                "version",
                "time_created",
                "time_updated",
            ]
            extra = [(c, i) for c, i in (("agent", 8), ("path", 9)) if c in columns]
            conn.executemany(
                f"INSERT INTO session ({', '.join(names + [c for c, _ in extra])}) "
                f"VALUES ({', '.join('?' * (len(names) + len(extra)))})",
                [s[: len(names)] + tuple(s[i] for _, i in extra) for s in sessions],
            )
        conn.executemany(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
            messages,
        )
        conn.executemany(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            rows,
        )
        conn.execute("COMMIT")
        sessions.clear()
        messages.clear()
        rows.clear()

    def add_part(mid: str, sid: str, data: dict, ms: int) -> str:
        nonlocal written
        pid = gen.pid(ms)
        rows.append((pid, mid, sid, ms, ms + rng.randint(0, 5_000), compact(data)))
        written += 1
        return pid

    while written < parts:
        ms = gen.tick()
        sid = make_id("ses", ms, descending=True)
        sessions.append(
            (
                sid,
                "global",
                "brave-falcon",
                "/home/user/src/project",
                gen.text(10, 50).replace("\n", " "),
                version,
                ms,
                ms + 60_000,
                "build",
                "home/user/src/project",
            )
        )
        for _turn in range(rng.randint(1, 12)):
            if written >= parts:
                break
            ms = gen.tick()
            user = make_id("msg", ms)
            messages.append(
                (
                    user,
                    sid,
                    ms,
                    ms,
                    compact(
                        {
                            "role": "user",
                            "time": {"created": ms},
                            "agent": "build",
                            "model": {"providerID": "anthropic", "modelID": "claude"},
                        }
                    ),
                )
            )
            add_part(user, sid, {"type": "text", "text": gen.text(20, 1_500)}, ms)
            if rng.random() < 0.1:
                add_part(
                    user,
                    sid,
                    {
                        "type": "file",
                        "mime": "text/plain",
                        "filename": "notes.md",
                        "url": "file:///home/user/src/project/notes.md",
                    },
                    ms,
                )
            parent = user
            for _step in range(rng.randint(1, 8)):
                if written >= parts:
                    break
                ms = gen.tick()
                mid = make_id("msg", ms)
                stuck_here = bool(stuck_at) and written >= stuck_at[0]
                msg = {
                    "parentID": parent,
                    "role": "assistant",
                    "mode": "build",
                    "agent": "build",
                    "path": {"cwd": "/home/user/src/project", "root": "/home/user/src/project"},
                    "cost": round(rng.random() / 20, 5),
                    "tokens": {
                        "input": rng.randint(100, 90_000),
                        "output": rng.randint(10, 4_000),
                        "reasoning": 0,
                        "cache": {"read": rng.randint(0, 80_000), "write": 0},
                    },
                    "modelID": "claude",
                    "providerID": "anthropic",
                    "time": {"created": ms},
                }
                if not stuck_here:
                    msg["time"]["completed"] = ms + rng.randint(500, 60_000)
                    msg["finish"] = rng.choice(["tool-calls", "tool-calls", "stop"])
                messages.append((mid, sid, ms, ms + 2, compact(msg)))
                add_part(
                    mid, sid, {"type": "step-start", "snapshot": f"{rng.getrandbits(160):040x}"}, gen.tick()
                )
                if rng.random() < 0.4:
                    t = gen.tick()
                    add_part(
                        mid,
                        sid,
                        {
                            "type": "reasoning",
                            "text": gen.text(100, 2_500),
                            "metadata": {"anthropic": {"signature": f"{rng.getrandbits(256):064x}"}},
                            "time": {"start": t, "end": t + 900},
                        },
                        t,
                    )
                if rng.random() < 0.6:
                    t = gen.tick()
                    add_part(
                        mid,
                        sid,
                        {"type": "text", "text": gen.text(50, 1_800), "time": {"start": t, "end": t + 500}},
                        t,
                    )
                if stuck_here:
                    stuck_at.pop(0)
                    tool, status = SEEDED_STUCK[len(seeded)]
                    t = gen.tick()
                    data = gen.tool_data(tool, status, t)
                    pid = add_part(mid, sid, data, t)
                    seeded.append(
                        {
                            "part_id": pid,
                            "part_data": compact(data),
                            "message_id": mid,
                            "message_data": compact(msg),
                            "session_id": sid,
                            "tool": tool,
                            "status": status,
                        }
                    )
                    continue  # the run died here: no step-finish
                for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3))):
                    t = gen.tick()
                    add_part(
                        mid, sid, gen.tool_data(rng.choices(_TOOL_NAMES, _TOOL_WEIGHTS)[0], "completed", t), t
                    )
                add_part(
                    mid,
                    sid,
                    {
                        "type": "step-finish",
                        "reason": msg["finish"],
                        "snapshot": f"{rng.getrandbits(160):040x}",
                        "cost": msg["cost"],
                        "tokens": msg["tokens"],
                    },
                    gen.tick(),
                )
                parent = mid
        if len(rows) >= BATCH_PARTS:
            flush()
            if progress:
                progress(written)
    flush()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    Path(f"{path}.seeded.json").write_text(json.dumps(seeded, indent=1))
    size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
    return Built(path, written, time.perf_counter() - started, size, seeded)


def reseed(path: Path) -> list[dict]:
    """Put the seeded stuck rows back (a previous run repaired them) and drop benchmark-added sessions."""
    seeded = json.loads(Path(f"{path}.seeded.json").read_text())
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        for row in seeded:
            conn.execute("UPDATE part SET data = ? WHERE id = ?", (row["part_data"], row["part_id"]))
            conn.execute("UPDATE message SET data = ? WHERE id = ?", (row["message_data"], row["message_id"]))
        conn.execute("DELETE FROM session WHERE slug = 'bench-probe'")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return seeded
