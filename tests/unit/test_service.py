"""`service install/uninstall/show`: the user unit written from the shipped template, in-process."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from watchdogd import systemd_units as units
from watchdogd.cli import main

REPO = Path(__file__).resolve().parents[2]
UNIT = units.USER_UNIT


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exec_start(text: str) -> str:
    [line] = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    return line[len("ExecStart=") :]


def directives(text: str) -> set[str]:
    return {
        ln.split("=", 1)[0].strip()
        for ln in text.splitlines()
        if "=" in ln and not ln.lstrip().startswith(("#", ";"))
    }


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    return tmp_path / "units"


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A `systemctl` first on PATH that logs its arguments and fails when FAKE_SYSTEMCTL_FAIL matches."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bindir / "systemctl"
    script.write_text(
        '#!/bin/sh\necho "$*" >> "$FAKE_SYSTEMCTL_LOG"\n'
        'case "$*" in *"$FAKE_SYSTEMCTL_FAIL"*)\n'
        '  [ -n "$FAKE_SYSTEMCTL_FAIL" ] && { echo "Failed to connect to bus: No medium found" >&2;'
        ' echo "second line" >&2; exit 1; } ;;\nesac\nexit 0\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(log))
    monkeypatch.delenv("FAKE_SYSTEMCTL_FAIL", raising=False)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return calls


# --- install -----------------------------------------------------------------------------------


def test_install_writes_the_template_with_an_absolute_executable(capsys, unit_dir):
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    assert code == 0, err
    path = unit_dir / UNIT
    assert f"written: {path}" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now opencode-watchdogd.service" in out
    text = path.read_text()
    argv = exec_start(text).split()
    assert os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK), argv
    assert argv[-1] == "run"
    # Everything but ExecStart= is the shipped template, verbatim.
    template = units.template(UNIT)
    assert [ln for ln in text.splitlines() if not ln.startswith("ExecStart=")] == [
        ln for ln in template.splitlines() if not ln.startswith("ExecStart=")
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in unit_dir.iterdir()) == [UNIT]  # no temp file left behind


def test_exec_start_is_the_console_script_of_this_environment(capsys, unit_dir):
    run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    exe = exec_start((unit_dir / UNIT).read_text()).split()[0]
    sibling = Path(sys.executable).parent / "opencode-watchdogd"
    if sibling.exists():
        assert os.path.samefile(exe, sibling)
    else:
        assert Path(exe).name in ("opencode-watchdogd", Path(sys.executable).name)


def test_default_unit_dir_is_xdg_config_home(capsys, hermetic_env):
    code, out, err = run(capsys, "service", "install")
    assert code == 0, err
    assert (hermetic_env["XDG_CONFIG_HOME"] / "systemd" / "user" / UNIT).is_file()


def test_reinstall_is_idempotent(capsys, unit_dir):
    assert run(capsys, "service", "install", "--unit-dir", str(unit_dir))[0] == 0
    before = (unit_dir / UNIT).stat()
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    assert code == 0, err
    assert out.startswith("unchanged: ")
    after = (unit_dir / UNIT).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_refuses_to_clobber_a_different_unit(capsys, unit_dir):
    unit_dir.mkdir()
    mine = "[Service]\nExecStart=/usr/local/bin/my-own-thing\n"
    (unit_dir / UNIT).write_text(mine)
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    assert code == 2
    assert "--force" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert (unit_dir / UNIT).read_text() == mine


def test_force_replaces_and_asks_for_a_restart(capsys, unit_dir):
    unit_dir.mkdir()
    (unit_dir / UNIT).write_text("[Service]\nExecStart=/old/path run\n")
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--force")
    assert code == 0, err
    assert out.startswith("replaced: ")
    assert "systemctl --user restart opencode-watchdogd.service" in out
    assert (unit_dir / UNIT).read_text() == units.user_unit(_ns())


def test_failed_write_leaves_the_old_unit_and_no_temp_file(capsys, unit_dir, monkeypatch):
    unit_dir.mkdir()
    (unit_dir / UNIT).write_text("old\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(units.os, "replace", boom)
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--force")
    assert code == 2
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert (unit_dir / UNIT).read_text() == "old\n"
    assert sorted(p.name for p in unit_dir.iterdir()) == [UNIT]


def test_config_state_dir_and_db_are_passed_on_absolute(capsys, unit_dir, tmp_path, monkeypatch):
    config = tmp_path / "my config.toml"
    config.write_text("")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        capsys,
        "service",
        "install",
        "--unit-dir",
        str(unit_dir),
        "--config",
        "my config.toml",
        "--state-dir",
        "st",
        "--db",
        "a.db",
    )
    assert code == 0, err
    line = exec_start((unit_dir / UNIT).read_text())
    assert f'--config "{config}"' in line
    assert f"--state-dir {tmp_path / 'st'}" in line
    assert f"--db {tmp_path / 'a.db'}" in line
    assert line.endswith(" run")


def test_now_runs_daemon_reload_then_enable_now(capsys, unit_dir, fake_systemctl):
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--now")
    assert code == 0, err
    assert fake_systemctl() == [
        "--user show-environment",
        "--user daemon-reload",
        f"--user enable --now {UNIT}",
    ]
    assert "enabled and started" in out


def test_now_after_force_restarts(capsys, unit_dir, fake_systemctl):
    unit_dir.mkdir()
    (unit_dir / UNIT).write_text("old\n")
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--now", "--force")
    assert code == 0, err
    assert fake_systemctl() == [
        "--user show-environment",
        "--user daemon-reload",
        f"--user enable --now {UNIT}",
        f"--user restart {UNIT}",
    ]


def test_systemctl_failure_is_one_line_and_leaves_nothing_half_done(
    capsys, unit_dir, fake_systemctl, monkeypatch
):
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", "enable")
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--now")
    assert code == 2
    assert err.strip().splitlines() == [
        "opencode-watchdogd: error: systemctl --user enable --now opencode-watchdogd.service failed "
        f"(exit status 1): Failed to connect to bus: No medium found; {unit_dir / UNIT} removed again"
    ]
    assert not (unit_dir / UNIT).exists()
    assert fake_systemctl()[-1] == "--user daemon-reload"  # the manager forgets the removed unit too


def test_a_failed_restart_puts_the_previous_unit_back(capsys, unit_dir, fake_systemctl, monkeypatch):
    unit_dir.mkdir()
    (unit_dir / UNIT).write_text("old\n")
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", "restart")
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--now", "--force")
    assert code == 2 and err.rstrip().endswith(f"{unit_dir / UNIT} restored")
    assert (unit_dir / UNIT).read_text() == "old\n"


@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_no_user_manager_is_one_line_saying_what_to_do_and_changes_nothing(
    capsys, unit_dir, fake_systemctl, monkeypatch, action
):
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", "show-environment")
    if action == "uninstall":
        assert run(capsys, "service", "install", "--unit-dir", str(unit_dir))[0] == 0
    before = sorted(p.name for p in unit_dir.iterdir()) if unit_dir.exists() else []
    code, out, err = run(capsys, "service", action, "--unit-dir", str(unit_dir), "--now")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    verb, done = ("start", "written") if action == "install" else ("stop", "removed")
    assert line.startswith(
        f"opencode-watchdogd: error: no systemd user service manager to {verb} it with "
        f"(Failed to connect to bus: No medium found); nothing {done}. "
    )
    assert ("`opencode-watchdogd run`" in line) if action == "install" else ("without --now" in line)
    assert (sorted(p.name for p in unit_dir.iterdir()) if unit_dir.exists() else []) == before
    assert fake_systemctl()[-1] == "--user show-environment"  # nothing after the probe


def test_missing_systemctl_is_one_line(capsys, unit_dir, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out, err = run(capsys, "service", "install", "--unit-dir", str(unit_dir), "--now")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "(systemctl not found); nothing written" in err
    assert not (unit_dir / UNIT).exists()


# --- ExecStart rendering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("/usr/bin/opencode-watchdogd", "/usr/bin/opencode-watchdogd"),
        ("/home/a b/bin/x", '"/home/a b/bin/x"'),
        ("/opt/100%/x", "/opt/100%%/x"),
        ('/q"u\\o/x', '"/q\\"u\\\\o/x"'),
    ],
)
def test_exec_word_quotes_for_systemd(word, expected):
    assert units.exec_word(word) == expected


@pytest.mark.parametrize("word", ["/opt/$HOME/x", "/a\nb", "/a\tb"])
def test_exec_word_refuses_what_systemd_cannot_represent(word):
    with pytest.raises(units.ServiceError):
        units.exec_word(word)


def test_fallback_is_python_dash_m(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    fake_python = empty / "python3"
    monkeypatch.setattr(units.sys, "argv", ["pytest"])
    monkeypatch.setattr(units.sys, "executable", str(fake_python))
    monkeypatch.setenv("PATH", str(empty))
    assert units.daemon_command() == [str(fake_python), "-m", "watchdogd"]


def test_running_console_script_wins(monkeypatch, tmp_path):
    script = tmp_path / "bin" / "opencode-watchdogd"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(units.sys, "argv", [str(script), "service", "install"])
    assert units.daemon_command() == [str(script)]


# --- show / uninstall --------------------------------------------------------------------------


def test_show_prints_what_install_writes(capsys, unit_dir):
    code, shown, _ = run(capsys, "service", "show")
    assert code == 0
    run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    assert shown == (unit_dir / UNIT).read_text()


def test_show_system_prints_the_template(capsys):
    code, out, _ = run(capsys, "service", "show", "--system")
    assert code == 0
    assert "User=%i" in out and "ProtectSystem=strict" in out
    assert os.path.isabs(exec_start(out).split()[0])


def test_uninstall_removes_a_matching_unit(capsys, unit_dir):
    run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    code, out, err = run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir))
    assert code == 0, err
    assert not (unit_dir / UNIT).exists()
    assert f"systemctl --user disable --now {UNIT}" in out
    code, out, _ = run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir))
    assert code == 0 and out.startswith("not installed")


def test_uninstall_keeps_an_edited_unit_unless_forced(capsys, unit_dir):
    run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    path = unit_dir / UNIT
    path.write_text(path.read_text().replace("RestartSec=5s", "RestartSec=1s"))
    code, _, err = run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir))
    assert code == 2 and "--force" in err and path.exists()
    assert run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir), "--force")[0] == 0
    assert not path.exists()


def test_uninstall_accepts_another_exec_start(capsys, unit_dir):
    """Installed from another environment (different ExecStart=) is still ours to remove."""
    unit_dir.mkdir()
    text = units.render(units.template(UNIT), ["/elsewhere/bin/opencode-watchdogd"])
    (unit_dir / UNIT).write_text(text)
    assert run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir))[0] == 0


def test_uninstall_now_disables_first(capsys, unit_dir, fake_systemctl):
    run(capsys, "service", "install", "--unit-dir", str(unit_dir))
    code, out, err = run(capsys, "service", "uninstall", "--unit-dir", str(unit_dir), "--now")
    assert code == 0, err
    assert fake_systemctl() == [
        "--user show-environment",
        f"--user disable --now {UNIT}",
        "--user daemon-reload",
    ]


# --- the shipped files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [units.USER_UNIT, units.SYSTEM_TEMPLATE])
def test_repository_copy_matches_the_packaged_unit(name):
    """`systemd/` (for people and packagers) and `watchdogd/units/` (what install reads) must not drift."""
    assert (REPO / "systemd" / name).read_text() == units.template(name)


# Need a mount namespace; in a user unit they only work inside a user namespace (PrivateUsers=,
# implied by systemd >= 254), which hides /proc/PID/fd of the user's own opencode processes.
# CapabilityBoundingSet= fails with 218/CAPABILITIES in a user unit on systemd 252.
NOT_IN_USER_UNIT = {
    "PrivateUsers",
    "ProtectSystem",
    "ProtectHome",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateMounts",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "MountAPIVFS",
    "RootDirectory",
    "DynamicUser",
    "CapabilityBoundingSet",
    "User",
    "Group",
}


def test_user_unit_has_no_option_that_needs_a_user_namespace():
    assert directives(units.template(units.USER_UNIT)) & NOT_IN_USER_UNIT == set()


def test_units_keep_what_the_daemon_needs():
    for name in (units.USER_UNIT, units.SYSTEM_TEMPLATE):
        text = units.template(name)
        assert "PrivateUsers" not in directives(text)  # would hide /proc/PID/fd of opencode
        assert "ProcSubset" not in directives(text)  # would hide /proc/net/tcp and /proc/stat
        assert "PrivateNetwork" not in directives(text)  # opencode's API is on the host's loopback
        for line in (
            "Type=notify",
            "NotifyAccess=main",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "UMask=0077",
            "NoNewPrivileges=yes",
        ):
            assert line in text.splitlines(), (name, line)


def _ns():
    import argparse

    return argparse.Namespace(config=None, db=None, state_dir=None)


# --- show --system: can the template's user run what it embeds? ------------------------------


def fake_install(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "opencode-watchdogd"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return script


def test_show_system_warns_when_other_users_cannot_run_the_path(capsys, monkeypatch, tmp_path):
    private = tmp_path / "home"  # pytest's tmp dirs are 0700, as /root and most homes are
    private.mkdir(mode=0o700)
    script = fake_install(private / "bin")
    monkeypatch.setattr(sys, "argv", [str(script), "service", "show", "--system"])
    code, out, err = run(capsys, "service", "show", "--system")
    assert code == 0 and f"ExecStart={script} run" in out
    [line] = err.strip().splitlines()
    assert line.startswith(
        f"opencode-watchdogd: warning: the template runs as User=%i, who cannot run {script}: "
    )
    assert "no x for others" in line and "pipx install --global" in line


def test_show_system_is_quiet_when_everyone_can_run_it(capsys, monkeypatch):
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="cli-shared-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        script = fake_install(shared / "bin")
        monkeypatch.setattr(sys, "argv", [str(script)])
        code, out, err = run(capsys, "service", "show", "--system")
        assert (code, err) == (0, "") and f"ExecStart={script} run" in out
        # the user unit runs as its owner: no such warning there either
        assert run(capsys, "service", "show")[2] == ""
    finally:
        shutil.rmtree(shared)
