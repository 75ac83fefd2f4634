"""Shell completion scripts generated from the parser, read by the real shells (bash, zsh, fish)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemonproc import REPO

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("hermetic_env")]

PARSE_ONLY = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}


def script(tmp_path: Path, shell: str) -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "watchdogd", "completion", shell],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert (out.returncode, out.stderr) == (0, "")
    path = tmp_path / f"completion.{shell}"
    path.write_text(out.stdout)
    return path


def need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{shell} is not installed (.ci/run installs it)")
        pytest.skip(f"{shell} is not installed here (.ci/run installs it for CI)")
    return found


@pytest.mark.parametrize("shell", sorted(PARSE_ONLY))
def test_the_shell_parses_the_script(tmp_path, shell):
    need(shell)
    path = script(tmp_path, shell)
    result = subprocess.run(
        [*PARSE_ONLY[shell], str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_bash_completes_verbs_and_each_verbs_own_options(tmp_path):
    need("bash")
    path = script(tmp_path, "bash")
    probe = (
        f"source {path}\n"
        'complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; '
        'COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _shtab_opencode_watchdogd; echo "${COMPREPLY[*]}"; }\n'
        "complete_words opencode-watchdogd sc\n"
        "complete_words opencode-watchdogd history --\n"
        "complete_words opencode-watchdogd service in\n"
    )
    lines = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, check=False, timeout=60
    ).stdout.splitlines()
    assert lines[0] == "scan"
    assert set(lines[1].split()) == {
        "--help",
        "--config",
        "--state-dir",
        "--limit",
        "--json",
        "--with-content",
    }
    assert lines[2] == "install"


def test_fish_completes_with_descriptions(tmp_path):
    need("fish")
    path = script(tmp_path, "fish")
    result = subprocess.run(
        ["fish", "--no-config", "-c", f"source {path}; complete -C 'opencode-watchdogd re'"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.stdout.splitlines() == [
        "reap\tFree every expired tool part once: repair orphans in the DB, free live ones by API."
    ]
