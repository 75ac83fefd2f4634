"""`service`: install, remove or print the systemd units that run `opencode-watchdogd run`.

`install` writes the per-user unit (`watchdogd/systemd_units.py` makes its text, with ExecStart=
pointing at this installation) and runs `systemctl --user`; `uninstall` removes it; `show` prints it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from shtab import DIRECTORY as DIR

from watchdogd.commands.options import EXIT_ERROR, PROG, Options, add_verb
from watchdogd.opencode.dirs import opencode_config_dir
from watchdogd.opencode.tui_config import reachability_hint
from watchdogd.present.text import safe
from watchdogd.systemd_units import (
    SCRIPT,
    SYSTEM_TEMPLATE,
    USER_UNIT,
    ServiceError,
    daemon_command,
    default_unit_dir,
    passed_options,
    read_unit,
    render,
    template,
    user_unit,
    write_atomic,
)


def add_parser(subparsers, opts: Options) -> None:
    parser = subparsers.add_parser(
        "service",
        help="install, remove or print the systemd units",
        description="Install the per-user systemd unit, or print the units.",
    )
    actions = parser.add_subparsers(dest="service_action", required=True, metavar="ACTION")
    passed = (opts.config, opts.db, opts.state)  # passed on to the service's ExecStart=
    _add_install(actions, passed)
    _add_uninstall(actions)
    _add_show(actions, passed)


def _add_install(actions, passed) -> None:
    install = add_verb(
        actions,
        "install",
        "write the user unit, with ExecStart= pointing at this installation",
        reads="the unit shipped in the package; --config, --db and --state-dir given here go into ExecStart=",
        writes=f"$XDG_CONFIG_HOME/systemd/user/{USER_UNIT}; with --now runs `systemctl --user daemon-reload` "
        "and `enable --now`",
        example=f"{PROG} service install --now",
        exits="0 written (and started with --now)",
        parents=passed,
    )
    install.add_argument(
        "--now", action="store_true", help="also run `systemctl --user daemon-reload` and `enable --now`"
    )
    install.add_argument(
        "--unit-dir",
        type=Path,
        metavar="DIR",
        help="where to write the unit (default: $XDG_CONFIG_HOME/systemd/user)",
    ).complete = DIR
    install.add_argument("--force", action="store_true", help="replace an existing unit that differs")


def _add_uninstall(actions) -> None:
    uninstall = add_verb(
        actions,
        "uninstall",
        "remove the user unit (only one that matches the shipped unit, unless --force)",
        reads=f"the installed {USER_UNIT}",
        writes="removes it; with --now first runs `systemctl --user disable --now`, then `daemon-reload`",
        example=f"{PROG} service uninstall --now",
        exits="0 removed or not installed",
    )
    uninstall.add_argument(
        "--now", action="store_true", help="first run `systemctl --user disable --now`, then `daemon-reload`"
    )
    uninstall.add_argument(
        "--unit-dir",
        type=Path,
        metavar="DIR",
        help="where the unit is (default: $XDG_CONFIG_HOME/systemd/user)",
    ).complete = DIR
    uninstall.add_argument("--force", action="store_true", help="remove the unit even if it was edited")


def _add_show(actions, passed) -> None:
    show = add_verb(
        actions,
        "show",
        "print the unit `install` would write, or the system template",
        reads="the units shipped in the package",
        writes="the unit on stdout",
        example=f"{PROG} service show --system | sudo tee /etc/systemd/system/{SYSTEM_TEMPLATE}",
        exits="0",
        parents=passed,
    )
    show.add_argument(
        "--system",
        action="store_true",
        help=f"print the system template {SYSTEM_TEMPLATE} (headless servers, User=%%i)",
    )


def run(args, settings) -> int:
    action = {"install": _install, "uninstall": _uninstall, "show": _show}[args.service_action]
    try:
        return action(args)
    except ServiceError as exc:
        print(f"opencode-watchdogd: error: {safe(exc, 500)}", file=sys.stderr)
        return EXIT_ERROR


# --- systemctl ---------------------------------------------------------------------------------


def systemctl(*argv: str) -> None:
    """Run `systemctl --user ARGV`; raise ServiceError with one line on failure."""
    shown = "systemctl --user " + " ".join(argv)
    exe = shutil.which("systemctl")
    if exe is None:
        raise ServiceError(f"{shown}: systemctl not found (is this a systemd system?)")
    try:
        proc = subprocess.run(
            [exe, "--user", *argv], capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise ServiceError(f"{shown}: cannot run systemctl: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        detail = lines[0] if lines else "no message"
        raise ServiceError(f"{shown} failed (exit status {proc.returncode}): {detail}")


# --- actions -----------------------------------------------------------------------------------


def _unit_path(args) -> Path:
    unit_dir = args.unit_dir.expanduser() if args.unit_dir else default_unit_dir()
    return Path(os.path.abspath(unit_dir)) / USER_UNIT


NO_MANAGER = "no systemd user service manager to {verb} it with ({why}); nothing {done}. {instead}"
INSTEAD_OF_START = (
    f"Instead: run `{SCRIPT} run` in the foreground (tmux, cron @reboot); or install without "
    f"--now and run `systemctl --user enable --now {USER_UNIT}` from a login session "
    f"(`loginctl enable-linger` keeps it running after logout); on a headless server see "
    f"`{SCRIPT} service show --system`"
)
INSTEAD_OF_STOP = (
    f"Without a user manager the unit is not running: remove the file with `{SCRIPT} service "
    "uninstall` (without --now)"
)


def user_manager_problem() -> str | None:
    """Why `systemctl --user` cannot reach a user service manager (a container, SSH without lingering), or None."""
    exe = shutil.which("systemctl")
    if exe is None:
        return "systemctl not found"
    try:
        proc = subprocess.run(
            [exe, "--user", "show-environment"],
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError as exc:
        return f"cannot run systemctl: {exc.strerror or exc}"
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[0] if lines else f"systemctl --user exited with status {proc.returncode}"


def _install(args) -> int:
    path = _unit_path(args)
    text = user_unit(args)
    if args.now and (why := user_manager_problem()):
        raise ServiceError(NO_MANAGER.format(verb="start", why=why, done="written", instead=INSTEAD_OF_START))
    existing = read_unit(path)
    if existing == text:
        state = "unchanged"
    elif existing is not None and not args.force:
        raise ServiceError(
            f"{path} exists and differs from the unit this version writes (edited, or "
            f"from another installation); compare with `{SCRIPT} service show`, "
            "or use --force to replace it"
        )
    else:
        write_atomic(path, text)
        state = "replaced" if existing is not None else "written"
    print(f"{state}: {path}")
    hint = reachability_hint(opencode_config_dir(), Path.home())
    if hint:
        print(hint)
    if os.geteuid() == 0:
        print(
            f"note: this is a per-user unit for root; for a headless server see `{SCRIPT} service show "
            "--system`"
        )
    steps = [("daemon-reload",), ("enable", "--now", USER_UNIT)]
    if state == "replaced":
        steps.append(("restart", USER_UNIT))
    if not args.now:
        print(
            "to start it now and at every login:\n  "
            + " && ".join("systemctl --user " + " ".join(step) for step in steps)
        )
        print("to keep it running while you are logged out: loginctl enable-linger")
        return 0
    try:
        for step in steps:
            systemctl(*step)
    except ServiceError as exc:
        raise ServiceError(f"{exc}; {_roll_back(path, existing, state)}") from None
    print(f"enabled and started {USER_UNIT}; see `systemctl --user status {USER_UNIT}`")
    return 0


def _roll_back(path: Path, previous: str | None, state: str) -> str:
    """Nothing half done: the unit file goes back to what it was before this command."""
    if state == "unchanged":
        return f"{path} left as it was"
    try:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, previous)
    except (OSError, ServiceError) as exc:
        return f"and {path} could not be put back ({getattr(exc, 'strerror', None) or exc})"
    with contextlib.suppress(ServiceError):
        systemctl("daemon-reload")
    return f"{path} {'removed again' if previous is None else 'restored'}"


def _without_exec(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("ExecStart=")]


def _uninstall(args) -> int:
    path = _unit_path(args)
    existing = read_unit(path)
    if existing is None:
        print(f"not installed: {path}")
        return 0
    if _without_exec(existing) != _without_exec(template(USER_UNIT)) and not args.force:
        raise ServiceError(
            f"{path} differs from the unit this version writes (edited by hand, or from "
            "another version); use --force to remove it anyway"
        )
    if args.now:
        why = user_manager_problem()
        if why:
            raise ServiceError(
                NO_MANAGER.format(verb="stop", why=why, done="removed", instead=INSTEAD_OF_STOP)
            )
        systemctl("disable", "--now", USER_UNIT)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot remove {path}: {exc.strerror or exc}") from None
    print(f"removed: {path}")
    if args.now:
        systemctl("daemon-reload")
    else:
        print(
            f"to stop it and forget it:\n  systemctl --user disable --now {USER_UNIT} && "
            "systemctl --user daemon-reload"
        )
    return 0


def _show(args) -> int:
    name = SYSTEM_TEMPLATE if args.system else USER_UNIT
    command = daemon_command()
    sys.stdout.write(render(template(name), command + passed_options(args)))
    blocked = args.system and _blocked_for_others(command[0])
    if blocked:
        print(
            f"{SCRIPT}: warning: the template runs as User=%i, who cannot run {safe(command[0], 300)}: "
            f"{safe(blocked, 300)}; install {SCRIPT} where every user can run it (e.g. `sudo pipx install "
            "--global .`, or a virtualenv under /opt) and print the template from there",
            file=sys.stderr,
        )
    return 0


def _blocked_for_others(executable: str) -> str | None:
    """Why a user other than the owner cannot run `executable` (or its #! interpreter), else None."""
    paths = [Path(executable)]
    try:
        with open(executable, "rb") as handle:
            first = handle.readline(512)
        if first.startswith(b"#!"):
            paths.append(Path(first[2:].split()[0].decode(errors="replace")))
    except (OSError, IndexError):
        pass
    for path in [*paths, *(Path(os.path.realpath(p)) for p in paths)]:
        for part in [*reversed(path.parents), path]:
            try:
                mode = part.stat().st_mode
            except OSError as exc:
                return f"{part}: {exc.strerror}"
            if not mode & stat.S_IXOTH:
                return f"{part} is mode {stat.S_IMODE(mode):04o} (no x for others)"
    return None
