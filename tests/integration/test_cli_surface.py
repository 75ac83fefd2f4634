"""The command line as a shell user meets it: real processes, real pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemonproc import REPO

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("hermetic_env")]


def cli(*argv: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdogd", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})),
        **kwargs,
    )


def test_config_show_is_a_file_config_check_accepts(tmp_path: Path):
    source = tmp_path / "mine.toml"
    source.write_text(
        '[policy]\norphan_grace = "2h15m10s"\n[policy.tools]\n"🦊_*" = "45m"\n'
        '[backup]\nmax_db_size = "512KiB"\n'
    )
    shown = cli(
        "config", "show", "--config", str(source), env={"OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "750ms"}
    )
    assert shown.returncode == 0, shown.stderr
    copy = tmp_path / "copy.toml"
    copy.write_bytes(shown.stdout.encode())
    check = cli("config", "check", "--config", str(copy))
    assert (check.returncode, check.stderr) == (0, ""), check.stderr
    assert check.stdout.startswith("config ok\n")
    again = cli("config", "show", "--config", str(copy))
    # the same values, apart from the header naming the sources
    body = [line for line in shown.stdout.splitlines() if not line.startswith("#")]
    assert [line for line in again.stdout.splitlines() if not line.startswith("#")] == body
    assert 'debounce = "0.75s"' in body and 'max_db_size = "512KiB"' in body and '"🦊_*" = "45m"' in body


@pytest.mark.parametrize(
    "argv",
    [["config", "show", "--json"], ["config", "show"], ["--help"], ["scan", "--help"], ["history", "--json"]],
)
def test_a_closed_pipe_ends_quietly(argv):
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdogd", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    proc.stdout.close()  # the reader is gone before the first write, as with `| head -0`
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    # argparse drops what --help cannot write and exits 0; a verb's output ends like `ls | head`: 141
    assert err == "" and code == (0 if "--help" in argv else 141)
