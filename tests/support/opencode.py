"""Install, run and drive a real ``opencode serve`` for end-to-end tests.

Facts this relies on (every release in PINNED_VERSIONS, see the shared reference):

* Each server gets private XDG data/config/state/cache dirs; its DB is
  ``$XDG_DATA_HOME/opencode/opencode.db``. ``restart()`` reuses the same dirs.
* ``serve --port 0`` prints ``opencode server listening on http://host:port``.
* At first start opencode installs ``@opencode-ai/plugin`` into
  ``$XDG_CONFIG_HOME/opencode``; on 1.18.33 a SIGTERM during that install is
  swallowed. By default we pre-seed that dir from a per-version template so no
  install runs (opencode skips it when node_modules and the lock file already
  list the dependency). ``seed_config_deps=False`` gives a truly fresh start.
* SIGTERM is not reliable, so stopping escalates to SIGKILL.
* npm's 1.14.x runs a node wrapper (`bin/opencode`) that spawns the server `bin/.opencode`; 1.15+ link
  `.bin/opencode` to the server binary itself. Stopping kills the process group, so both go.
* Every API call passes ``?directory=`` (instance scoping differs by version).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

# One release per SQLite line of opencode (1.14 is the first that keeps opencode.db; 1.18.33 is the newest
# 1.18.x
# the registry serves as of this writing). Older releases keep JSON files: nothing for the daemon to do.
PINNED_VERSIONS = ("1.14.41", "1.15.3", "1.15.13", "1.17.19", "1.18.33")


@dataclass(frozen=True)
class Release:
    """What differs between the pinned releases, as observed (shared reference §5, §9)."""

    version: str
    busy_delete: int  # how DELETE of a message of a busy session is refused
    # A dead MCP server stays "connected" and its tool offered: calling it fails "Not connected" (the seed).
    # 1.17+ mark the server failed and drop the tool, as soon as they notice the exit.
    keeps_dead_mcp_tool: bool
    event_log: bool  # writes an `event` row per part update
    task_error_on_child_error: bool  # the task tool fails when the child's last tool part is an error


RELEASES = {
    r.version: r
    for r in (
        Release("1.14.41", 400, True, False, False),
        Release("1.15.3", 400, True, False, False),
        Release("1.15.13", 409, True, False, False),
        Release("1.17.19", 409, False, True, False),
        Release("1.18.33", 409, False, True, True),
    )
}
FAKE_MCP = Path(__file__).with_name("fake_mcp.py")
_LISTENING = re.compile(r"opencode server listening on (http://[^\s]+)")


# -- installation -------------------------------------------------------------


def cache_root() -> Path:
    env = os.environ.get("OPENCODE_WATCHDOGD_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "opencode-watchdogd" / "opencode"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive file lock so parallel test workers do not install twice."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _binary_version(binary: Path) -> str | None:
    if not binary.exists():
        return None
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


_CHECKED: dict[str, Path] = {}  # versions whose binary this process already ran (`--version` costs a second)


def ensure_opencode(version: str) -> Path:
    """Return the opencode binary for `version`, installing it with npm once."""
    if version in _CHECKED:
        return _CHECKED[version]
    prefix = cache_root() / version
    binary = prefix / "node_modules" / ".bin" / "opencode"
    with _locked(version):
        if _binary_version(binary) != version:
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(prefix),
                    f"opencode-ai@{version}",
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )
            found = _binary_version(binary)
            if found != version:
                raise RuntimeError(f"installed opencode-ai@{version} but {binary} reports {found!r}")
    _CHECKED[version] = binary
    return binary


def ensure_config_deps(version: str) -> Path | None:
    """A template of what opencode's first start installs into its config dir.

    Returns None when it cannot be built (e.g. offline); the server then does
    its own first-start install, as a real fresh opencode would.
    """
    template = cache_root() / version / "config-deps"
    marker = template / "node_modules" / "@opencode-ai" / "plugin" / "package.json"
    with _locked(f"{version}-config-deps"):
        if marker.exists() and (template / "package-lock.json").exists():
            return template
        template.mkdir(parents=True, exist_ok=True)
        # The exact spec opencode itself saves (it installs with savePrefix "").
        pkg = {"dependencies": {"@opencode-ai/plugin": version}}
        (template / "package.json").write_text(json.dumps(pkg, indent=2) + "\n")
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=template,
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return template if marker.exists() else None


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (~60 MB per server otherwise; nothing writes these files), else copy."""
    try:
        os.link(src, dst)
    except OSError:  # e.g. the temp dir is on another filesystem
        shutil.copy2(src, dst)


# -- configuration ------------------------------------------------------------


def provider_config(model_url: str) -> dict[str, Any]:
    """opencode.json pointing every model call at the fake model."""
    model = {"name": "m", "tool_call": True, "limit": {"context": 100000, "output": 4000}}
    return {
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": model_url, "apiKey": "x"},
                "models": {"m": model},
            }
        },
        "model": "fake/m",
        "small_model": "fake/m",
        "autoupdate": False,
        "share": "disabled",
    }


def mcp_config(mode: str, name: str = "ghost") -> dict[str, Any]:
    """Config entry for the fake stdio MCP server (tool `<name>_lookup`)."""
    command = [sys.executable, str(FAKE_MCP), mode]
    return {"mcp": {name: {"type": "local", "command": command, "enabled": True}}}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base` (dicts merge, other values replace)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


TEST_ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    "OPENCODE_ENABLE_QUESTION_TOOL": "1",
}


@dataclass(frozen=True)
class RunningPart:
    part_id: str
    message_id: str
    call_id: str
    session_id: str
    data: dict[str, Any]


# -- the server -----------------------------------------------------------------

# opencode runs in its own session (so its MCP children can be killed as a group),
# which also shields it from a Ctrl-C; kill whatever is still running at exit.
_LIVE: "weakref.WeakSet[OpencodeServer]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


class OpencodeServer:
    """One `opencode serve` process with private dirs; a context manager."""

    def __init__(
        self,
        base_dir: Path,
        model_url: str,
        *,
        version: str | None = None,
        binary: Path | None = None,
        password: str | None = None,
        config: dict[str, Any] | None = None,
        project_dir: Path | None = None,
        seed_config_deps: bool = True,
        start_timeout: float = 120.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        if binary is None:
            if version is None:
                raise ValueError("give a version or a binary")
            binary = ensure_opencode(version)
        self.binary = Path(binary)
        self.version = version or _binary_version(self.binary) or "unknown"
        self.base_dir = Path(base_dir).resolve()
        self.password = password
        self.config = merge(provider_config(model_url), config or {})
        # opencode reports the real path as the session directory, so resolve it.
        self.project_dir = Path(project_dir or self.base_dir / "proj").resolve()
        self.seed_config_deps = seed_config_deps
        self.start_timeout = start_timeout
        self.xdg = {
            name: self.base_dir / name.lower()
            for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
        }
        self.home = self.base_dir / "home"
        # Where opencode itself is told its data lives; the tests read the DB at `db_path` either way.
        self.data_home = self.xdg["XDG_DATA_HOME"]
        self.bind_data_at: Path | None = None  # run in a private mount namespace, data dir bind-mounted here
        self.extra_env = dict(extra_env or {})
        self.log_path = self.base_dir / "opencode.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._client: httpx.Client | None = None

    # -- paths and identity

    @property
    def db_path(self) -> Path:
        return self.xdg["XDG_DATA_HOME"] / "opencode" / "opencode.db"

    @property
    def config_dir(self) -> Path:
        return self.xdg["XDG_CONFIG_HOME"] / "opencode"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("opencode is not running")
        return self.proc.pid

    @property
    def server_pid(self) -> int:
        """The server process itself: npm's 1.14 runs it (`bin/.opencode`) as a child of a node wrapper."""
        if not os.path.basename(os.readlink(f"/proc/{self.pid}/exe")).startswith("node"):
            return self.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    if (
                        entry.name.isdigit()
                        and int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == self.pid
                    ):
                        return int(entry.name)
            time.sleep(0.1)
        raise RuntimeError(f"the node wrapper {self.pid} has no child server")

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header (empty when no password is set)."""
        if not self.password:
            return {}
        token = base64.b64encode(f"opencode:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def env(self) -> dict[str, str]:
        # Drop inherited OPENCODE_* so an outer opencode (or password) cannot leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE")}
        env.update({k: str(v) for k, v in self.xdg.items()})
        env.update(TEST_ENV, HOME=str(self.home), XDG_DATA_HOME=str(self.bind_data_at or self.data_home))
        env.update(self.extra_env)
        if self.password:
            env["OPENCODE_SERVER_PASSWORD"] = self.password
        return env

    # -- lifecycle

    def prepare(self) -> None:
        """Create the private dirs and config without starting anything (a TUI test starts its own process)."""
        self._prepare_dirs()

    def _prepare_dirs(self) -> None:
        for path in [*self.xdg.values(), self.data_home, self.home, self.project_dir, self.config_dir]:
            path.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "opencode.json").write_text(json.dumps(self.config, indent=2))
        if self.seed_config_deps and not (self.config_dir / "node_modules").exists():
            template = ensure_config_deps(self.version)
            if template is not None:
                for name in ("package.json", "package-lock.json"):
                    shutil.copy2(template / name, self.config_dir / name)
                shutil.copytree(
                    template / "node_modules",
                    self.config_dir / "node_modules",
                    symlinks=True,
                    copy_function=_link_or_copy,
                )

    def start(self) -> "OpencodeServer":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("opencode is already running")
        self._prepare_dirs()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.binary} ({self.version})\n".encode())
            log.flush()
            # Output goes straight to a file, never a pipe that could fill and block opencode.
            # A new session lets stop() kill opencode's children (MCP servers) as a group.
            self.proc = subprocess.Popen(
                [
                    *self._launcher(),
                    str(self.binary),
                    "serve",
                    "--port",
                    "0",
                    "--hostname",
                    "127.0.0.1",
                    "--print-logs",
                ],
                cwd=self.project_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)
        try:
            self._wait_ready(offset)
        except BaseException:
            self.stop()
            raise
        return self

    def _launcher(self) -> list[str]:
        """A prefix that runs opencode where its data dir has another name (a container's bind mount).

        `unshare --mount` gives opencode a private mount namespace (the mount is invisible outside it), and
        `exec` keeps opencode at the pid the test holds. Needs root (or CAP_SYS_ADMIN).
        """
        if self.bind_data_at is None:
            return []
        self.bind_data_at.mkdir(parents=True, exist_ok=True)
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(self.data_home),
            str(self.bind_data_at),
        ]

    def _wait_ready(self, offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not self.url:
            match = _LISTENING.search(self._log_since(offset))
            if match:
                self.url = match.group(1).rstrip("/")
                break
            self._check_alive_before(deadline, "never printed its listening line")
            time.sleep(0.1)
        self._client = httpx.Client(base_url=self.url, headers=self.auth, timeout=15)
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if self._client.get("/global/health").json().get("healthy") is True:
                    return
            self._check_alive_before(deadline, "never became healthy")
            time.sleep(0.1)

    def _check_alive_before(self, deadline: float, what: str) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"opencode exited with {self.proc.returncode}\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"opencode {what} within {self.start_timeout}s\n{self.log_tail()}")

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_bytes().decode(errors="replace")
        return "--- opencode log tail ---\n" + "\n".join(text.splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        """Send `sig` to opencode and wait until its pid is gone.

        Raises TimeoutError if it survives (a swallowed SIGTERM); the process is
        then left running for the caller to inspect or escalate.
        """
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"opencode pid {self.proc.pid} survived signal {sig}") from None
        self._cleanup_after_exit()

    def stop(self, term_grace: float = 8.0) -> None:
        """SIGTERM, then SIGKILL after `term_grace` seconds; always leaves nothing running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.kill(signal.SIGTERM, timeout=term_grace)
            except TimeoutError:
                self.kill(signal.SIGKILL)
        if self.proc is not None:  # it had already exited on its own
            self._cleanup_after_exit()

    def _cleanup_after_exit(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        # Children (MCP servers) normally exit on stdin EOF; make sure of it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _LIVE.discard(self)
        if self._client is not None:
            self._client.close()
        self._client = None
        self.url = ""
        self.proc = None

    def restart(self) -> "OpencodeServer":
        """Stop if running, then start a new process on the same dirs and DB."""
        self.stop()
        return self.start()

    def __enter__(self) -> "OpencodeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("opencode is not running")
        return self._client

    def request(
        self, method: str, path: str, *, directory: str | Path | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Any API call, always scoped with ?directory= (defaults to the project dir)."""
        params = dict(kwargs.pop("params", None) or {})
        params.setdefault("directory", str(directory or self.project_dir))
        return self.client.request(method, path, params=params, **kwargs)

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise AssertionError(
                f"{response.request.method} {response.request.url} -> "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json() if response.content else None

    def create_session(self, directory: str | Path | None = None) -> dict[str, Any]:
        return self._ok(self.request("POST", "/session", directory=directory, json={}))

    def get_session(self, session_id: str, directory: str | Path | None = None) -> dict[str, Any]:
        return self._ok(self.request("GET", f"/session/{session_id}", directory=directory))

    def prompt_async(self, session_id: str, text: str, directory: str | Path | None = None) -> None:
        body = {"parts": [{"type": "text", "text": text}]}
        response = self.request("POST", f"/session/{session_id}/prompt_async", directory=directory, json=body)
        if response.status_code != 204:
            self._ok(response)
            raise AssertionError(f"prompt_async -> {response.status_code}, expected 204")

    def session_status(self, directory: str | Path | None = None) -> dict[str, Any]:
        return self._ok(self.request("GET", "/session/status", directory=directory))

    def questions(self, directory: str | Path | None = None) -> list[dict[str, Any]]:
        return self._ok(self.request("GET", "/question", directory=directory))

    def messages(self, session_id: str, directory: str | Path | None = None) -> list[dict[str, Any]]:
        return self._ok(self.request("GET", f"/session/{session_id}/message", directory=directory))

    def delete_message(self, session_id: str, message_id: str, directory: str | Path | None = None) -> int:
        path = f"/session/{session_id}/message/{message_id}"
        return self.request("DELETE", path, directory=directory).status_code

    def wait_idle(self, session_id: str, directory: str | Path | None = None, timeout: float = 90.0) -> None:
        """Wait until the session is absent from /session/status (idle sessions are)."""
        deadline = time.monotonic() + timeout
        while session_id in (status := self.session_status(directory)):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{session_id} still {status[session_id]} after {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.1)

    # -- the DB (read-only, so the harness never changes what it observes)

    @contextlib.contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def db_parts(self, session_id: str) -> list[dict[str, Any]]:
        """Part rows of a session in creation order, with `data` decoded."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT * FROM part WHERE session_id = ? ORDER BY time_created, id", (session_id,)
            ).fetchall()
        return [{**dict(row), "data": json.loads(row["data"])} for row in rows]

    def db_message(self, message_id: str) -> dict[str, Any]:
        with self.db() as conn:
            row = conn.execute("SELECT * FROM message WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(message_id)
        return {**dict(row), "data": json.loads(row["data"])}

    def tool_parts(self, session_id: str, tool: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.db_parts(session_id)
            if p["data"].get("type") == "tool" and (tool is None or p["data"].get("tool") == tool)
        ]

    def wait_for_running_part(
        self, session_id: str, tool: str = "question", timeout: float = 90.0
    ) -> RunningPart:
        """Poll the DB until a `tool` part of the session is `running`."""
        deadline = time.monotonic() + timeout
        parts: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(sqlite3.OperationalError):  # DB not created yet
                parts = self.tool_parts(session_id, tool)
                for part in parts:
                    if part["data"]["state"].get("status") == "running":
                        return RunningPart(
                            part["id"], part["message_id"], part["data"]["callID"], session_id, part["data"]
                        )
            time.sleep(0.1)
        raise TimeoutError(
            f"no running {tool!r} part in {session_id} after {timeout}s; "
            f"parts: {[p['data'] for p in parts]}\n{self.log_tail()}"
        )
