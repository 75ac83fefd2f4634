"""Drive a real opencode terminal UI (or `opencode run`) under a pseudo-terminal for end-to-end tests.

The TUI draws with escape sequences; pyte keeps the screen so tests can wait for text. Keys are the
bytes a terminal sends (Esc is a lone ESC, Ctrl+C is 0x03: the TUI reads the terminal raw). The
process gets the pty as its controlling terminal, so closing it is a real hang-up.

What each version does is in docs/tui.md (observed the same way).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Self

import pyte

from tests.support.opencode import OpencodeServer

KEYS = {"enter": b"\r", "esc": b"\x1b", "ctrl+c": b"\x03"}


def _controlling_tty() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """One process on a pty; the screen as text."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], cols: int = 120, rows: int = 40):
        self.argv, self.cwd, self.env = argv, cwd, {**env, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.screen = pyte.Screen(cols, rows)
        self.screen.write_process_input = self._answer  # device status / attribute queries
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        self._master: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._size = (rows, cols)

    def start(self) -> Terminal:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self._size[0], self._size[1], 0, 0))
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=_controlling_tty,
            close_fds=True,
        )  # noqa: PLW1509 (2 syscalls)
        os.close(slave)
        self._master = master
        threading.Thread(target=self._pump, name="pty-reader", daemon=True).start()
        return self

    def _pump(self) -> None:
        while self._master is not None:
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._stream.feed(data)

    def _answer(self, data: str) -> None:
        with contextlib.suppress(OSError, TypeError):
            os.write(self._master, data.encode())

    def text(self) -> str:
        with self._lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, *needles: str, timeout: float = 120.0) -> str:
        """Wait until any of the texts is on screen; returns the one seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            for needle in needles:
                if needle in screen:
                    return needle
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} waiting for {needles}\n{screen}")
            time.sleep(0.2)
        raise TimeoutError(f"none of {needles} on screen after {timeout}s\n{self.text()}")

    def type(self, text: str) -> None:
        self.send(text.encode())

    def press(self, key: str) -> None:
        self.send(KEYS[key])

    def send(self, data: bytes) -> None:
        assert self._master is not None
        os.write(self._master, data)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def hang_up(self) -> None:
        """Close the terminal, as closing its window does (the kernel sends SIGHUP)."""
        master, self._master = self._master, None
        if master is not None:
            os.close(master)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        self.hang_up()


class OpencodeTui:
    """A real opencode TUI (`opencode [args]`) with the private dirs and fake model of an OpencodeServer."""

    PROMPT_READY = ("Ask anything", "ctrl+p commands")

    def __init__(
        self,
        base_dir: Path,
        model_url: str,
        version: str,
        args: tuple[str, ...] = (),
        config: dict | None = None,
        password: str | None = None,
        command: tuple[str, ...] = (),
    ):
        self.dirs = OpencodeServer(base_dir, model_url, version=version, config=config, password=password)
        self.version = version
        self.terminal = Terminal(
            [str(self.dirs.binary), *command, *args], self.dirs.project_dir, self.dirs.env()
        )

    @property
    def db_path(self) -> Path:
        return self.dirs.db_path

    def start(self, wait_ready: bool = True) -> OpencodeTui:
        self.dirs.prepare()
        self.terminal.start()
        if wait_ready:
            self.terminal.wait_for(*self.PROMPT_READY, timeout=180)
        return self

    def prompt(self, text: str) -> None:
        """Type a prompt and send it (a short pause lets the input settle before Enter)."""
        self.terminal.type(text)
        time.sleep(0.5)
        self.terminal.press("enter")

    def holder_pid(self, timeout: float = 60.0) -> int:
        """The process that has the DB open (npm 1.14 runs `bin/.opencode` under a node wrapper)."""
        deadline = time.monotonic() + timeout
        target = os.path.realpath(self.db_path)
        while time.monotonic() < deadline:
            for pid in [self.terminal.proc.pid, *_children(self.terminal.proc.pid)]:
                if _has_open(pid, target):
                    return pid
            time.sleep(0.2)
        raise TimeoutError(f"no process of the TUI holds {target}\n{self.terminal.text()}")

    def stop(self) -> None:
        self.terminal.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def _has_open(pid: int, target: str) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
    return False
