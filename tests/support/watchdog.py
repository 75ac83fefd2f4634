"""Run opencode-watchdogd (`scan`, `reap`, `run`) as a subprocess against a test's opencode DB."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
FIRST_PASS_S = 90  # a daemon's first pass, generous for a loaded 2-core machine
ONE_SECOND_POLICY = {
    "orphan_grace": "1s",
    "pending": "1s",
    "default": "1s",
    "tools": {"question": "1s", "task": "1s", "bash": "1s", "*_*": "1s"},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_table(name: str, table: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"] if name else []
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((f"{name}.{key}" if name else key, value))
        else:
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for sub, value in nested:
        lines += _toml_table(sub, value)
    return lines


def write_config(
    path: Path,
    *,
    policy: dict | None = None,
    live: dict | None = None,
    watch: dict | None = None,
    servers: list[dict] | None = None,
) -> Path:
    lines: list[str] = []
    for name, table in (("policy", policy), ("live", live), ("watch", watch)):
        if table:
            lines += _toml_table(name, table)
    for server in servers or []:
        lines.append("[[servers]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in server.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Watchdog:
    """One state dir and config for a test; `cli()` runs a verb, `daemon()` runs `run`."""

    def __init__(self, tmp_path: Path, db: Path, name: str = "watchdog", **config: Any):
        self.db = db
        self.state_dir = tmp_path / "watchdog-state"  # shared by every Watchdog of a test: one journal
        self.config = write_config(tmp_path / f"{name}.toml", **config)
        self.home = tmp_path / "watchdog-home"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE", "DBUS_SESSION_BUS_ADDRESS"))
        }
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            env[name] = str(self.home / name.lower())
        env.update(extra or {}, PYTHONPATH=str(ROOT))
        return env

    def args(self, verb: str, *more: str) -> list[str]:
        # Each verb takes only its own options: --db where opencode DBs are read, logging where it logs.
        db = ["--db", str(self.db)] if verb in ("scan", "reap", "run") else []
        log = ["--log-format", "json"] if verb in ("scan", "reap", "run", "undo") else []
        return [
            sys.executable,
            "-m",
            "watchdogd",
            verb,
            "-c",
            str(self.config),
            *db,
            "--state-dir",
            str(self.state_dir),
            *log,
            *more,
        ]

    def cli(
        self, verb: str, *more: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(verb, *more), env=self.env(env), cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    def json(self, verb: str, *more: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        done = self.cli(verb, "--json", *more, env=env)
        assert done.returncode in (0, 1), f"{verb} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    @contextlib.contextmanager
    def daemon(self, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
        log = open(self.state_dir.parent / "watchdog-daemon.log", "w")  # noqa: SIM115 (the daemon writes it)
        proc = subprocess.Popen(
            self.args("run"), env=self.env(env), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while not (self.state_dir / "status.json").exists():
                assert proc.poll() is None, f"daemon exited {proc.returncode}: {self.daemon_log()}"
                assert time.monotonic() < deadline, f"daemon never published its status: {self.daemon_log()}"
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()

    def daemon_log(self) -> str:
        path = self.state_dir.parent / "watchdog-daemon.log"
        return path.read_text() if path.exists() else ""

    def actions(self) -> list[dict[str, Any]]:
        """Every journal action, oldest first (read directly: the test must not depend on `history`)."""
        import sqlite3

        conn = sqlite3.connect(f"file:{self.state_dir / 'journal.db'}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM actions ORDER BY id")]
        finally:
            conn.close()


# -- driving opencode into the stuck states ---------------------------------------------------------


def start_stuck(
    server, script: str = "SCRIPT:question", tool: str = "question", directory: str | Path | None = None
):
    """A session whose `tool` part is running (question: stuck until someone answers)."""
    session = server.create_session(directory)
    server.prompt_async(session["id"], f"Please help. {script}", directory)
    return session, server.wait_for_running_part(session["id"], tool)


def abandoned(part_data: dict) -> bool:
    state = part_data["state"]
    return (
        state["status"] == "error"
        and state["error"].startswith("Abandoned by opencode-watchdogd")
        and "opencode_watchdogd" in state.get("metadata", {})
    )


def assert_freed(server, session_id: str, part, directory: str | Path) -> None:
    """Idle, no question left, the part says abandoned, the message is finished, and deleting it works."""
    assert session_id not in server.session_status(directory)
    assert [q for q in server.questions(directory) if q["sessionID"] == session_id] == []
    [row] = [p for p in server.tool_parts(session_id) if p["id"] == part.part_id]
    assert abandoned(row["data"]), row["data"]
    assert server.db_message(part.message_id)["data"]["time"].get("completed")
    assert server.delete_message(session_id, part.message_id, directory) == 200


def assert_prompt_completes(server, session_id: str, directory: str | Path, timeout: float = 90.0) -> None:
    """A new prompt gets a finished answer (the session really works again)."""

    def finished() -> int:
        return sum(
            1
            for m in server.messages(session_id, directory)
            if m["info"]["role"] == "assistant" and m["info"].get("finish") == "stop"
        )

    before = finished()
    server.prompt_async(session_id, "Say something. SCRIPT:text", directory)
    deadline = time.monotonic() + timeout
    while finished() <= before:
        assert time.monotonic() < deadline, (
            f"no answer to a new prompt within {timeout}s\n{server.log_tail()}"
        )
        time.sleep(0.1)
    server.wait_idle(session_id, directory)


def assert_finished_through_api(server, session_id: str, directory: str | Path, part) -> None:
    """What a user sees after a restart: the call ended as abandoned, the turn is over, the session works."""
    assert session_id not in server.session_status(directory)
    [entry] = [m for m in server.messages(session_id, directory) if m["info"]["id"] == part.message_id]
    assert entry["info"]["time"].get("completed")
    assert entry["info"]["error"]["name"] == "MessageAbortedError"
    [tool] = [p for p in entry["parts"] if p.get("callID") == part.call_id]
    assert tool["state"]["status"] == "error"
    assert tool["state"]["error"].startswith("Abandoned by opencode-watchdogd")
    assert tool["state"]["metadata"]["interrupted"] is True
    assert server.delete_message(session_id, part.message_id, directory) == 200
    assert_prompt_completes(server, session_id, directory)


# -- the daemon as users run it --------------------------------------------------------------------


def daemon_for(
    tmp_path: Path,
    server,
    settings: dict[str, str] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
):
    """`opencode-watchdogd run` with no --db: it discovers the DB in opencode's data dir, as it does for users.

    `settings` are config keys as environment variables without the prefix (`POLICY__ORPHAN_GRACE="2s"`).
    Returns a started DaemonProcess (a context manager that stops it) after its first pass.
    """
    from tests.integration.daemonproc import DaemonProcess

    full_env = {"XDG_DATA_HOME": str(server.db_path.parent.parent), **(env or {})}
    full_env.update({f"OPENCODE_WATCHDOGD_{key}": value for key, value in (settings or {}).items()})
    daemon = DaemonProcess(tmp_path, [], env=full_env, extra_args=args)
    try:
        daemon.wait_status(
            lambda s: (
                [(db["path"], db["exists"]) for db in s["databases"]]
                == [(str(server.db_path), server.db_path.exists())]
            ),
            timeout=FIRST_PASS_S,
            what="the daemon's first pass over the discovered DB",
        )
    except BaseException:
        daemon.stop()
        raise
    return daemon


def candidate(status: dict, part_id: str) -> dict | None:
    """The daemon's published record of one candidate part."""
    return next((c for c in status.get("candidates", []) if c["part_id"] == part_id), None)
