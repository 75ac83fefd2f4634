"""What kind of opencode process holds a DB (terminal UI, `opencode run`, server), and what its user can do.

Judged from the process's own argv (/proc/PID/cmdline), the way opencode's command line reads it:
the first word that is not an option (or an option's value) is the subcommand. The advice is what
was observed on real opencode 1.14.41, 1.15.3 and 1.18.33 (docs/tui.md): inside a TUI, Esc dismisses
a question dialog and Esc twice interrupts a running tool; quitting a TUI cleans up after itself;
`opencode run` ends on Ctrl+C (SIGINT) and leaves its rows for the daemon to repair.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from watchdogd.opencode.process_start import start_ticks
from watchdogd.opencode.rows import ProcessKind

# opencode's options that take a value (TUI, run and serve share these names).
_WITH_VALUE = {
    "--port",
    "--hostname",
    "--log-level",
    "-m",
    "--model",
    "-s",
    "--session",
    "--prompt",
    "--agent",
    "--mdns-domain",
    "--cors",
    "--replay-limit",
    "--variant",
    "--attach",
    "--format",
    "--title",
    "-f",
    "--file",
    "--command",
    "--dir",
}
_RUNTIMES = {"node", "bun", "nodejs"}
_SERVERS = {"serve", "web"}
# Other subcommands (`attach` is a TUI of another process's server: it owns no sessions itself).
# `pr` checks out a branch and then runs the TUI, so it is not listed.
_OTHERS = {
    "attach",
    "acp",
    "mcp",
    "debug",
    "providers",
    "auth",
    "agent",
    "upgrade",
    "uninstall",
    "models",
    "stats",
    "export",
    "import",
    "github",
    "session",
    "plugin",
    "plug",
    "db",
    "completion",
    "generate",
}

LABELS = {
    ProcessKind.TUI: "opencode TUI",
    ProcessKind.RUN: "opencode run",
    ProcessKind.SERVER: "opencode server",
    ProcessKind.OTHER: "opencode process",
}
REACHABLE_RECIPE = (
    "start the TUI as `opencode --port 0` to let the daemon free it live (README: the terminal UI)"
)


def read_argv(pid: int, proc: Path = Path("/proc")) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [word.decode("utf-8", "replace") for word in raw.split(b"\0") if word]


def _opencode_name(path: str) -> bool:
    """npm 1.14 runs `bin/.opencode`; others `opencode`, `opencode.exe`, the desktop sidecar `opencode-cli`."""
    name = os.path.basename(path).removesuffix(" (deleted)").removesuffix(".exe").lstrip(".")
    return name == "opencode" or (name.startswith("opencode-") and name != "opencode-watchdogd")


def classify(argv: list[str]) -> ProcessKind | None:
    """TUI (no subcommand, or a project dir), `run`, `serve`/`web`, another subcommand; None: not opencode.

    Only the program's name is read here (a process without an API cannot be asked what it is).
    """
    words = list(argv[1:])
    if argv and os.path.basename(argv[0]) in _RUNTIMES and words:
        argv, words = words, words[1:]  # `node …/bin/opencode …`: the script, then opencode's own arguments
    if not argv or not _opencode_name(argv[0]):
        return None
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--":
            continue
        if word.startswith("-"):
            skip = word in _WITH_VALUE
            continue
        if word == "run":
            return ProcessKind.RUN
        if word in _SERVERS:
            return ProcessKind.SERVER
        if word in _OTHERS:
            return ProcessKind.OTHER
        return ProcessKind.TUI  # `opencode <project dir>`, `opencode pr 12`
    return ProcessKind.TUI


def process_kind(pid: int, proc: Path = Path("/proc")) -> ProcessKind | None:
    """None when the process is gone, its command line cannot be read, or it is not opencode."""
    return classify(read_argv(pid, proc))


def describe(kind: ProcessKind, pid: int) -> str:
    """ "opencode TUI, pid 123, no HTTP API" — what the holder is, in the words a user knows."""
    return f"{LABELS[kind]}, pid {pid}, no HTTP API"


def advice(kind: ProcessKind | None, tool: str, pid: int, recipe: bool = True) -> str:
    """What the user can do about a part stuck in a process the daemon cannot reach (verified keys)."""
    repaired = "the rows are repaired when it exits"
    if kind is ProcessKind.TUI:
        keys = (
            "press Esc on the question in that TUI"
            if tool == "question"
            else "press Esc twice in that TUI to interrupt the tool"
        )
        nxt = f"; next time {REACHABLE_RECIPE}" if recipe else ""
        return f"{keys}, or quit it (Ctrl+C) and start it again{nxt}"
    if kind is ProcessKind.RUN:
        return f"press Ctrl+C in its terminal (or `kill -INT {pid}`); {repaired}"
    return f"quit it and start it again; {repaired}"


def _gone(pid: int, ticks: int | None, deadline: float, sleep: Callable[[float], None]) -> bool:
    while time.monotonic() < deadline:
        if start_ticks(pid) != ticks:
            return True
        sleep(0.1)
    return start_ticks(pid) != ticks


def stop_process(
    pid: int, expected: ProcessKind, grace: float, sleep: Callable[[float], None] = time.sleep
) -> tuple[bool, str]:
    """End a process the way its user would: SIGINT (Ctrl+C), then SIGTERM after `grace`; never SIGKILL.

    Returns (gone, what was done). The process must still be the opencode process of `expected` kind.
    `opencode run` ends on SIGINT within a second, unless it was started with SIGINT ignored (docs/tui.md).
    """
    ticks = start_ticks(pid)
    if ticks is None or process_kind(pid) is not expected:
        return False, f"pid {pid} is no longer that {LABELS[expected]}"
    steps = []
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace)):
        if start_ticks(pid) != ticks:
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError as exc:
            return False, "; ".join(steps + [f"{sig.name} to pid {pid} refused: {exc.strerror}"])
        steps.append(f"sent {sig.name}")
        if _gone(pid, ticks, time.monotonic() + wait, sleep):
            return True, "; ".join(steps + [f"pid {pid} exited"])
    if start_ticks(pid) != ticks:
        return True, "; ".join(steps + [f"pid {pid} exited"])
    return False, "; ".join(steps + [f"pid {pid} still runs (never sent SIGKILL)"])
