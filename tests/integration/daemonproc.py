"""Real daemon subprocesses, a real NOTIFY_SOCKET, and processes that hold a DB open."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# Waits poll for behaviour with generous limits (60 s by default below): on a loaded 2-core machine a daemon may
# take many seconds just to import; a limit is only there so that a broken daemon fails instead of hanging.
def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class NotifySocket:
    """A datagram socket bound like systemd's, recording every sd_notify message."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, msg in list(self.messages) for line in msg.split("\n")]

    def wait_for(self, prefix: str, timeout: float = 60, after: int = 0) -> str:
        def found():
            for line in self.lines()[after:]:
                if line.startswith(prefix):
                    return line
            return None

        return wait_until(found, timeout, what=f"sd_notify {prefix!r}")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=1)


class DaemonProcess:
    def __init__(
        self,
        tmp: Path,
        dbs: list[Path],
        env: dict[str, str] | None = None,
        notify: NotifySocket | None = None,
        extra_args: list[str] | None = None,
    ):
        self.state_dir = tmp / "state"
        self.log_path = tmp / "daemon.log"
        # No session bus from the machine running the tests: desktop notifications only on a test's own bus.
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENCODE_", "NOTIFY_SOCKET", "WATCHDOG_", "DBUS_SESSION_BUS_ADDRESS"))
        }
        full_env.update(
            {
                "XDG_CONFIG_HOME": str(tmp / "config"),
                "XDG_DATA_HOME": str(tmp / "data"),
                "XDG_STATE_HOME": str(tmp / "xdgstate"),
                "XDG_RUNTIME_DIR": str(tmp / "runtime"),
                "PYTHONPATH": str(REPO),
            }
        )
        if notify is not None:
            full_env["NOTIFY_SOCKET"] = str(notify.path)
        full_env.update(env or {})
        args = [
            sys.executable,
            "-m",
            "watchdogd",
            "run",
            "--state-dir",
            str(self.state_dir),
            "--log-format",
            "json",
        ]
        for db in dbs:
            args += ["--db", str(db)]
        self.log_file = open(self.log_path, "a")  # noqa: SIM115 (closed in stop); a daemon started again on the same state keeps one log
        self.log_start = self.log_file.tell()  # where this process's own lines begin
        self.proc = subprocess.Popen(
            args + (extra_args or []), env=full_env, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=tmp
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict | None:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def wait_status(self, predicate, timeout: float = 60, what: str = "daemon status"):
        return wait_until(lambda: (s := self.status()) is not None and predicate(s) and s, timeout, what=what)

    def own_log(self) -> bytes:
        """What this process wrote to the shared log (not an earlier daemon's lines)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self.log_start)
            return fh.read()

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": line})
        return out

    def actions(self) -> list[dict]:
        """Every journaled action, oldest first (read directly, not through `history`)."""
        path = self.state_dir / "journal.db"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute("SELECT * FROM actions ORDER BY id")]
        finally:
            conn.close()

    def wait_action(self, part_id: str, route: str, timeout: float = 60) -> dict:
        """The first settled action of `route` on the part (a planned one is still in flight)."""

        def settled():
            return next(
                (
                    a
                    for a in self.actions()
                    if a["part_id"] == part_id and a["route"] == route and a["outcome"] != "planned"
                ),
                None,
            )

        try:
            return wait_until(settled, timeout, what=f"a {route} action on {part_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; actions: {self.actions()}\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 4000) -> str:
        return "--- daemon log tail ---\n" + self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


class Holder:
    """Another process with the DB open, as opencode (or a TUI without an API) would have it."""

    def __init__(self, db: Path):
        code = (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(db)!r})\n"
            "c.execute('SELECT count(*) FROM part').fetchall()\n"
            "print('ready', flush=True)\n"
            "time.sleep(3600)\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
