"""Logs where they are read: a real journald-style stderr, a real terminal, cron (pipes)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import dbfactory as f
from tests.integration.daemonproc import REPO, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("hermetic_env")]

ANSI = "\x1b["


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "JOURNAL_STREAM", "TERM")}
    return env | {"PYTHONPATH": str(REPO), "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s"} | extra


def daemon(tmp_path: Path, stderr, env: dict[str, str], *extra: str) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "watchdogd",
        "run",
        "--db",
        str(tmp_path / "opencode.db"),
        "--state-dir",
        str(tmp_path / "state"),
        *extra,
    ]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_daemon_under_journald_prefixes_every_line_with_its_priority(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[policy]\npending = "10m"\n')
    stderr_path = tmp_path / "journal-stream"
    stderr_path.touch()
    st = os.stat(stderr_path)
    env = env_with(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    with open(stderr_path, "a") as stderr:
        proc = daemon(tmp_path, stderr, env, "--config", str(config), "-v")
        try:
            wait_until(lambda: "ready:" in stderr_path.read_text(), timeout=60, what="ready line")
            config.write_text('[policy]\npending = "soon"\n')
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload failed" in stderr_path.read_text(), timeout=60, what="reload failure")
        finally:
            assert stop(proc) == 0
    lines = stderr_path.read_text().splitlines()
    assert lines and all(re.match(r"<[2-7]>", line) for line in lines), lines
    by_event = {line.split("] ", 1)[1].split(" ")[0]: line[:3] for line in lines}
    assert by_event["starting"] == "<6>" and by_event["pass"] == "<7>" and by_event["reload"] == "<3>"
    assert f"config={config}" in next(line for line in lines if "starting" in line)


def test_config_from_the_environment_is_named_at_start(tmp_path):
    config = tmp_path / "from-env.toml"
    config.write_text('log_level = "info"\n')
    log = tmp_path / "stderr"
    with open(log, "w") as stderr:
        proc = daemon(tmp_path, stderr, env_with(OPENCODE_WATCHDOGD_CONFIG=str(config)))
        try:
            wait_until(lambda: "ready:" in log.read_text(), timeout=60, what="ready line")
        finally:
            stop(proc)
    text = log.read_text()
    assert f"config={config}" in text
    ready = next(line for line in text.splitlines() if "ready:" in line)
    assert "watching 0 DB(s), waiting for 1 to appear, next deadline none; polling every 1m" in ready


def read_terminal(master: int, until: str, timeout: float = 60) -> str:
    got, deadline = b"", time.monotonic() + timeout
    while until.encode() not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                got += os.read(master, 65536)
            except OSError:  # the other side closed
                break
    return got.decode(errors="replace")


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_on_a_terminal_unless_no_color(tmp_path, no_color):
    master, slave = os.openpty()
    env = env_with(TERM="xterm", **({"NO_COLOR": "1"} if no_color else {}))
    try:
        proc = daemon(tmp_path, slave, env)
        os.close(slave)
        try:
            text = read_terminal(master, "ready")
        finally:
            stop(proc)
    finally:
        os.close(master)
    assert "ready" in text
    assert (ANSI in text) is not no_color


def test_one_shot_verbs_in_cron_print_results_on_stdout_only(tmp_path):
    db = f.make_db(tmp_path / "opencode.db")
    stuck = [f.stuck_question(db, age_s=86400) for _ in range(2)]
    cli = [sys.executable, "-m", "watchdogd"]
    common = ["--db", str(db), "--state-dir", str(tmp_path / "state")]
    dry = subprocess.run(
        [*cli, "reap", "--dry-run", *common],
        capture_output=True,
        text=True,
        check=False,
        env=env_with(),
        timeout=120,
    )
    assert dry.returncode == 0 and dry.stderr == ""
    for s in stuck:
        assert sum(s.part_id in line for line in dry.stdout.splitlines()) == 1  # each item reported once
    again = subprocess.run(
        [*cli, "reap", "--dry-run", "-v", *common],
        capture_output=True,
        text=True,
        check=False,
        env=env_with(),
        timeout=120,
    )
    # -v brings the log back, as readable text (JSON lines only when asked)
    assert again.stderr and all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in again.stderr.splitlines())
    reap = subprocess.run(
        [*cli, "reap", *common], capture_output=True, text=True, check=False, env=env_with(), timeout=120
    )
    assert reap.returncode == 0 and reap.stderr == "", reap.stderr
    assert [line.split()[1] for line in reap.stdout.splitlines()] == ["done", "done"]
