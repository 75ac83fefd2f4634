"""Hundreds of DBs against the open-file limit: raised to the hard limit at start, said in one line when hit."""

from __future__ import annotations

import json
import os
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
        wait_until(
            lambda: (s := status(tmp_path)) and s["passes"] >= shown["passes"] + 4,
            timeout=240,
            interval=0.5,
            what="four more passes",
        )
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    said = [
        line for line in (tmp_path / "daemon.log").read_text().splitlines() if "database unreadable" in line
    ]
    # Once per DB and change of reason (a DB opened in between says it again when it fails again), not once
    # per DB per pass: 537 lines here before (12,308 in 45 s for 300 DBs), 134 after.
    assert 0 < len([line for line in said if '"warning"' in line]) <= 2 * COUNT, len(said)
    observe(
        "DBs over the limit: 'cannot open: open-file limit reached (N files open, limit 64): "
        "raise it with LimitNOFILE= …', said once per DB (not at every pass)",
        "the DBs that fit were repaired; daemon alive",
    )


IDLE_COUNT = 200
WAVE = 25
FD_LIMIT = 256  # soft and hard: far below what 200 DBs held open all the time would need (4 fds each)
IDLE_FD_BOUND = 64  # stdio, the journal, the lock, the inotify fd, the log: a few dozen at most


def open_fds(proc: subprocess.Popen) -> int:
    return len(os.listdir(f"/proc/{proc.pid}/fd"))


@scenario(
    "resources",
    f"the daemon watches {IDLE_COUNT} DBs with nothing running, under an open-file limit of {FD_LIMIT} "
    f"(soft and hard); then orphans appear in them, {WAVE} DBs at a time",
    "a DB with nothing running holds no file open between passes (its file events still wake the daemon): "
    f"fewer than {IDLE_FD_BOUND} fds open while idle, never the limit reached, every orphan in every DB repaired",
)
def test_idle_dbs_hold_no_files(tmp_path, observe):
    folder = tmp_path / "dbs"
    folder.mkdir()
    dbs = [dbfactory.make_db(folder / f"opencode-{index:03d}.db") for index in range(IDLE_COUNT)]
    proc = daemon_with_limit(tmp_path, [(db, []) for db in dbs], FD_LIMIT, FD_LIMIT)
    try:
        wait_until(
            lambda: (s := status(tmp_path)) and s["passes"] >= 1,
            timeout=240,
            interval=1,
            what="a status after the first pass",
        )
        idle = open_fds(proc)
        assert idle < IDLE_FD_BOUND, f"{idle} fds open while {IDLE_COUNT} DBs have nothing running"
        most = idle
        for start in range(0, IDLE_COUNT, WAVE):
            wave = [(db, add_orphans(db, 1)) for db in dbs[start : start + WAVE]]

            def repaired(wave=wave) -> bool:
                nonlocal most
                most = max(most, open_fds(proc))
                return all(set(pair_states(db, orphans).values()) == {"repaired"} for db, orphans in wave)

            wait_until(
                repaired,
                timeout=240,
                interval=0.5,
                what=f"the orphans of DBs {start}-{start + WAVE - 1} repaired",
            )
        passes = status(tmp_path)[
            "passes"
        ]  # the DBs are idle again once a pass has read them after the repair
        shown = wait_until(
            lambda: (s := status(tmp_path)) and s["passes"] >= passes + 2 and s,
            timeout=240,
            interval=0.5,
            what="two passes after the last repair",
        )
        after = open_fds(proc)
        assert after < IDLE_FD_BOUND, f"{after} fds open once every DB is idle again"
        assert not [d["error"] for d in shown["databases"] if d.get("error")]
        assert "open-file limit" not in (tmp_path / "daemon.log").read_text()
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    print(f"fds: {idle} idle at start, at most {most} while repairing waves of {WAVE}, {after} idle after")
    observe(
        f"fewer than {IDLE_FD_BOUND} fds open while the {IDLE_COUNT} DBs were idle, before and after the repairs",
        f"{IDLE_COUNT} of {IDLE_COUNT} orphans repaired; no 'open-file limit' line; daemon alive",
    )
