"""The systemd units that run `opencode-watchdogd run`: the shipped text, and the unit for this installation.

The unit files ship inside the package (`watchdogd/units/`, the same files as `systemd/` in the
repository). `render` puts the ExecStart= of this installation into one; `write_atomic` writes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

SCRIPT = "opencode-watchdogd"
USER_UNIT = "opencode-watchdogd.service"
SYSTEM_TEMPLATE = "opencode-watchdogd@.service"


class ServiceError(Exception):
    """A failure to report in one line, without a traceback."""


# --- rendering ---------------------------------------------------------------------------------


def template(name: str) -> str:
    """A unit file as shipped in the package."""
    return resources.files("watchdogd").joinpath("units", name).read_text(encoding="utf-8")


def _is_exec(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def daemon_command() -> list[str]:
    """Absolute argv (without the verb) that starts this installation of the daemon.

    Preference: the console script this process runs as; the console script next to this
    interpreter (same environment; under the PATH name if PATH finds the same file); the one on
    PATH; else `python -m watchdogd` with this interpreter.
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == SCRIPT and _is_exec(argv0):
        return [os.path.abspath(argv0)]
    sibling = Path(sys.executable).parent / SCRIPT
    found = shutil.which(SCRIPT)
    if _is_exec(sibling):
        if found and os.path.samefile(found, sibling):
            return [os.path.abspath(found)]
        return [os.path.abspath(sibling)]
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "watchdogd"]


_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def exec_word(word: str) -> str:
    """One word of an ExecStart= line: `%` escaped, quoted when needed; `$` and controls refused."""
    if "$" in word or any(ord(c) < 32 or ord(c) == 127 for c in word):
        raise ServiceError(
            f"cannot put {word!r} into a systemd unit ('$' and control characters "
            "are not representable there); install to a plainer path"
        )
    word = word.replace("%", "%%")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def passed_options(args) -> list[str]:
    """The --config/--db/--state-dir given to this command, made absolute for the service."""
    out: list[str] = []
    if getattr(args, "config", None):
        out += ["--config", os.path.abspath(Path(args.config).expanduser())]
    for db in getattr(args, "db", None) or []:
        out += ["--db", os.path.abspath(Path(db).expanduser())]
    if getattr(args, "state_dir", None):
        out += ["--state-dir", os.path.abspath(Path(args.state_dir).expanduser())]
    return out


def render(text: str, command: list[str]) -> str:
    """The unit text with its single ExecStart= line replaced by `command run`."""
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(found) != 1:
        raise ServiceError(
            f"shipped unit has {len(found)} ExecStart= lines, expected 1 (broken installation?)"
        )
    lines[found[0]] = "ExecStart=" + " ".join(exec_word(w) for w in [*command, "run"]) + "\n"
    return "".join(lines)


def user_unit(args) -> str:
    return render(template(USER_UNIT), daemon_command() + passed_options(args))


# --- files -------------------------------------------------------------------------------------


def default_unit_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "systemd" / "user"


def read_unit(path: Path) -> str | None:
    """The unit file's text, None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename over the target: never a half-written unit."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ServiceError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
