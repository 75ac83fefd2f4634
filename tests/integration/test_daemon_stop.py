"""SIGTERM as a pass job starts: the daemon still exits (interpreter exit joins the job's thread)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests import dbfactory
from tests.integration.daemonproc import wait_until
from tests.reliability.helpers import clean_env

pytestmark = pytest.mark.integration

# The real `run`, with the moment between a pass job's start and its taking of the pass lock held open until
# the test has sent SIGTERM: the window a loaded machine opens now and then, made certain.
SLOW_START = """
import os, sys, time
from pathlib import Path
from watchdogd import daemon
from watchdogd.cli import main

started, signalled = Path(os.environ["JOB_STARTED"]), Path(os.environ["SIGNALLED"])
run_pass = daemon.Daemon.run_pass

def late_job(self):
    if self.counters.passes >= 1:  # the first pass is start-up's; the next one comes from the 1 s poll
        started.touch()
        while not signalled.exists():
            time.sleep(0.01)
        time.sleep(0.5)  # shutdown now holds the pass lock
    run_pass(self)

daemon.Daemon.run_pass = late_job
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_as_a_pass_job_starts_still_exits(tmp_path):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    started, signalled = tmp_path / "job-started", tmp_path / "signalled"
    env = clean_env(
        tmp_path,
        {
            "JOB_STARTED": str(started),
            "SIGNALLED": str(signalled),
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s",
        },
    )
    args = ["run", "--db", str(db), "--state-dir", str(tmp_path / "state"), "--log-format", "json"]
    with open(tmp_path / "daemon.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-c", SLOW_START, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            wait_until(started.exists, timeout=60, what="a pass job after the first pass")
            proc.send_signal(signal.SIGTERM)
            signalled.touch()
            code = proc.wait(timeout=60)
        except BaseException:
            proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack into the log
            proc.wait()
            raise
    output = (tmp_path / "daemon.log").read_text()
    assert code == 0, output
    assert '"stopped after 1 passes' in output  # the late job did not run a pass after the stop
