"""Hundreds of DBs against the open-file limit: raised to the hard limit at start, said in one line when hit."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

import pytest

from tests import dbfactory
from tests.integration.daemonproc import wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, clean_env, pair_states

pytestmark = pytest.mark.integration

COUNT = 120


def many_dbs(tmp_path, count: int = COUNT):
    folder = tmp_path / "dbs"
    folder.mkdir()
    out = []
    for index in range(count):
        db = dbfactory.make_db(folder / f"opencode-{index:03d}.db")
        out.append((db, add_orphans(db, 1)))
    return out


def daemon_with_limit(tmp_path, dbs, soft: int, hard: int) -> subprocess.Popen:
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    args = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "watchdogd",
        "run",
        "--state-dir",
        str(tmp_path / "state"),
        "--log-format",
        "json",
    ]
    for db, _ in dbs:
        args += ["--db", str(db)]
    env = clean_env(
        tmp_path,
        {**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "2s", "OPENCODE_WATCHDOGD_BACKUP__KEEP": "0"},
    )
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 (the child holds it; closed when the test ends)
    return subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=limit
    )  # noqa: PLW1509 (sets a limit only; no locks involved)


def status(tmp_path) -> dict | None:
    try:
        return json.loads((tmp_path / "state" / "status.json").read_text())
    except (OSError, ValueError):
        return None


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack into the log
        return proc.wait()


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048, reason="needs a hard nofile limit ≥ 2048"
)
@scenario(
    "resources",
    f"the daemon watches {COUNT} DBs, each with an orphan, started with a soft open-file limit "
    "of 64 (hard limit 2048), as systemd's default soft limit is far below what hundreds of DBs need",
    "the soft limit is raised to the hard limit at start: every orphan in every DB is repaired",
)
def test_soft_limit_is_raised_to_the_hard_limit(tmp_path, observe):
    dbs = many_dbs(tmp_path)
    proc = daemon_with_limit(tmp_path, dbs, 64, 2048)
    try:
        wait_until(
            lambda: all(set(pair_states(db, orphans).values()) == {"repaired"} for db, orphans in dbs),
            timeout=240,
            interval=1,
            what=f"all {COUNT} DBs repaired",
        )
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    observe(f"{COUNT} of {COUNT} DBs repaired under a starting soft limit of 64")


@scenario(
    "resources",
    f"the daemon watches {COUNT} DBs with a hard open-file limit of 64 (cannot be raised)",
    "the DBs it cannot open are reported with one line naming the limit and the fix (LimitNOFILE= / "
    "`ulimit -n`); the daemon keeps running and repairs the DBs it could open",
)
def test_hard_limit_hit_is_said_with_the_fix(tmp_path, observe):
    dbs = many_dbs(tmp_path)
    proc = daemon_with_limit(tmp_path, dbs, 64, 64)
    try:
        shown = wait_until(
            lambda: (s := status(tmp_path)) and s["passes"] >= 1 and s,
            timeout=240,
            interval=1,
            what="a status after the first pass",
        )
        errors = [d["error"] for d in shown["databases"] if d.get("error")]
        assert errors and all("open-file limit reached" in e and "LimitNOFILE=" in e for e in errors), errors[
            :3
        ]
        repaired = [db for db, orphans in dbs if set(pair_states(db, orphans).values()) == {"repaired"}]
        assert repaired, "no DB was repaired"
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    observe(
        "DBs over the limit: 'cannot open: open-file limit reached (N files open, limit 64): "
        "raise it with LimitNOFILE= …'",
        "the DBs that fit were repaired; daemon alive",
    )
