"""The shipped systemd units under the real `systemd-analyze`: `verify` and the offline `security` score.

`verify` runs on the units as `service install` / `service show --system` render them (ExecStart=
pointing at a real executable). It exits 0 even for unknown keys or unparsable values, so any line
it prints about our unit fails the test; lines about other units (container noise) are only shown.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from watchdogd import systemd_units as units

pytestmark = pytest.mark.integration

# systemd-analyze security: exposure levels 0.0 PERFECT, < 1.0 SAFE, < 5.0 OK, < 7.5 MEDIUM, ...
OK_OR_BETTER = {"PERFECT", "SAFE", "OK"}
OK_LIMIT = 5.0
# The per-user unit cannot use any mount-namespace option nor CapabilityBoundingSet= (see the unit's
# header and test_service.NOT_IN_USER_UNIT); systemd-analyze scores it as if it were a root system
# service with every capability. This pins today's figure so hardening can only go up.
USER_UNIT_CEILING = 6.2
OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) ([A-Z]+)")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path:
        return path
    message = "systemd-analyze not installed (Debian/Ubuntu package: systemd)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def analyze(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [systemd_analyze(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    """`--user` needs $XDG_RUNTIME_DIR even offline; a private one works without a user session."""
    path = tmp_path / "runtime"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def rendered(tmp_path: Path):
    """Write a shipped unit rendered for a real executable; returns its path."""
    out = tmp_path / "units"
    out.mkdir()

    def render(name: str, command: list[str] | None = None) -> Path:
        path = out / name
        path.write_text(units.render(units.template(name), command or units.daemon_command()))
        return path

    return render


def check_verify(proc: subprocess.CompletedProcess, unit: str) -> None:
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    ours = [ln for ln in lines if "opencode-watchdogd" in ln or unit in ln]
    noise = [ln for ln in lines if ln not in ours]
    if noise:
        print(f"systemd-analyze verify: ignored lines not about {unit}:\n  " + "\n  ".join(noise))
    assert proc.returncode == 0 and not ours, (
        f"systemd-analyze verify {unit} (exit {proc.returncode}):\n" + "\n".join(lines)
    )


def exposure(proc: subprocess.CompletedProcess) -> tuple[float, str]:
    match = OVERALL.search(proc.stdout + proc.stderr)
    assert match, f"no overall exposure level in:\n{proc.stdout}\n{proc.stderr}"
    return float(match.group(2)), match.group(3)


def require_offline_security() -> None:
    help_text = analyze("--help").stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")


# --- verify ------------------------------------------------------------------------------------


def test_user_unit_verifies(rendered, runtime_dir):
    path = rendered(units.USER_UNIT)
    proc = analyze("verify", "--man=no", "--user", str(path), env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    check_verify(proc, units.USER_UNIT)


def test_system_template_verifies_as_an_instance(rendered):
    path = rendered(units.SYSTEM_TEMPLATE)
    instance = path.with_name("opencode-watchdogd@alice.service")  # loaded from the template beside it
    check_verify(analyze("verify", "--man=no", str(instance)), "opencode-watchdogd@alice.service")
    check_verify(analyze("verify", "--man=no", str(path)), units.SYSTEM_TEMPLATE)


def test_exec_start_quoting_is_what_systemd_reads(rendered, runtime_dir, tmp_path):
    """A path with a space and a '%' reaches systemd as the same file (verify checks it is executable)."""
    exe = tmp_path / "d i r" / "50%off" / "opencode-watchdogd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    path = rendered(units.USER_UNIT, [str(exe)])
    proc = analyze("verify", "--man=no", "--user", str(path), env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    check_verify(proc, units.USER_UNIT)
    exe.unlink()  # and the check has teeth: a missing ExecStart= binary is reported
    proc = analyze("verify", "--man=no", "--user", str(path), env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    assert proc.returncode != 0 and "is not executable" in proc.stderr
    assert "d i r/50%off/opencode-watchdogd" in proc.stderr


def test_verify_catches_a_bad_directive(rendered, runtime_dir):
    """Guard for check_verify: systemd-analyze exits 0 here, the printed line must still fail us."""
    path = rendered(units.USER_UNIT)
    path.write_text(path.read_text().replace("Type=notify", "Type=notifyy"))
    proc = analyze("verify", "--man=no", "--user", str(path), env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    with pytest.raises(AssertionError):
        check_verify(proc, units.USER_UNIT)


# --- security ----------------------------------------------------------------------------------


def test_system_template_exposure_is_ok_or_better(rendered):
    require_offline_security()
    path = rendered(units.SYSTEM_TEMPLATE)
    proc = analyze("security", "--offline=true", str(path.with_name("opencode-watchdogd@alice.service")))
    score, level = exposure(proc)
    print(f"systemd-analyze security --offline=true opencode-watchdogd@alice.service: {score} {level}")
    assert level in OK_OR_BETTER and score < OK_LIMIT, proc.stdout


def test_user_unit_exposure_does_not_regress(rendered):
    require_offline_security()
    path = rendered(units.USER_UNIT)
    proc = analyze("security", "--offline=true", str(path))
    score, level = exposure(proc)
    print(f"systemd-analyze security --offline=true opencode-watchdogd.service: {score} {level}")
    assert score <= USER_UNIT_CEILING, proc.stdout
