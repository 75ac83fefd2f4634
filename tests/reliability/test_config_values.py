"""Config values that used to pass `config check` and then crash or silently disable the daemon."""

from __future__ import annotations

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from tests.reliability.conftest import scenario
from tests.reliability.helpers import cli
from watchdogd.config import Settings
from watchdogd.daemon import Daemon
from watchdogd.file_events import DBWatcher

pytestmark = pytest.mark.integration

VALUES = {  # env name tail, value, the range `config check` must name
    "watch.debounce=never": ("WATCH__DEBOUNCE", "never", "accepted: from 0s to 10m"),
    "watch.debounce=1000d": ("WATCH__DEBOUNCE", "1000d", "accepted: from 0s to 10m"),
    "watch.poll_interval=never": ("WATCH__POLL_INTERVAL", "never", "accepted: from 1s to 1d"),
    "watch.poll_interval=0": ("WATCH__POLL_INTERVAL", "0", "accepted: from 1s to 1d"),
    "watch.full_rescan_interval=never": ("WATCH__FULL_RESCAN_INTERVAL", "never", "accepted: from 1m to 7d"),
    "live.timeout=never": ("LIVE__TIMEOUT", "never", "accepted: from 0.1s to 10m"),
    "policy.default=99999999999999": (
        "POLICY__DEFAULT",
        "99999999999999",
        "accepted: from 0s to 3650d, or never",
    ),
    "policy.orphan_grace=never": ("POLICY__ORPHAN_GRACE", "never", "accepted: from 0s to 30d"),
    "policy.tools.bash=1e6w": (
        "POLICY__TOOLS",
        '{"bash": "1000000w"}',
        "accepted: from 0s to 3650d, or never",
    ),
}


@pytest.mark.parametrize("case", sorted(VALUES))
@scenario(
    "config",
    "a duration that used to pass `config check` and then crashed or silently disabled the daemon: "
    "`never` or huge `watch.debounce` (the file-watcher thread died), `watch.poll_interval` never/0 "
    "(traceback at start), `live.timeout` never, policy durations past what a datetime holds",
    "`config check` exits 2 with one line naming the key, the value and the accepted range; `run` refuses "
    "to start the same way",
)
def test_out_of_range_durations_are_rejected(tmp_path, case, observe):
    name, value, accepted = VALUES[case]
    env = {f"OPENCODE_WATCHDOGD_{name}": value}
    check = cli(tmp_path, "config", "check", env=env)
    assert check.returncode == 2 and "Traceback" not in check.stderr, check.stdout + check.stderr
    [line] = check.stderr.strip().splitlines()
    key = case.split("=")[0]
    assert f"{key}: " in line and "out of range" in line and accepted in line, line
    run = cli(tmp_path, "run", "--db", str(tmp_path / "none.db"), env=env, timeout=60)
    assert run.returncode == 2 and run.stderr.strip() == line, run.stderr
    observe(f"config check and run: exit 2, '{line.split(': ', 2)[2]}'")


@scenario(
    "config",
    '`policy.tools.bash = "never"` and `policy.default = "3650d"` (the largest finite value)',
    "accepted: a tool that is never expired stays possible",
)
def test_never_stays_possible_for_thresholds(tmp_path, observe):
    env = {
        "OPENCODE_WATCHDOGD_POLICY__TOOLS": '{"bash": "never"}',
        "OPENCODE_WATCHDOGD_POLICY__DEFAULT": "3650d",
    }
    check = cli(tmp_path, "config", "check", env=env)
    assert check.returncode == 0, check.stderr
    observe("config check exit 0")


@scenario(
    "config",
    "the file watcher's thread is dead while the scheduler still runs",
    "the daemon stops feeding systemd's watchdog (no WATCHDOG=1), so systemd restarts it instead of "
    "leaving a daemon that never sees a file event",
)
def test_watchdog_is_fed_only_while_the_watcher_runs(tmp_path, observe):
    daemon = Daemon(Settings(state_dir=tmp_path / "state"), None, [tmp_path / "x.db"], {})
    daemon.scheduler = BackgroundScheduler()
    daemon.scheduler.start()
    daemon.watcher = DBWatcher(lambda db, kind: None)
    try:
        daemon.watcher.sync([tmp_path / "x.db"])
        assert daemon._alive()
        daemon.watcher._inotify.stop()  # the reader thread ends, as when an error escaped it
        assert not daemon.watcher.alive()
        assert not daemon._alive()
    finally:
        daemon.scheduler.shutdown(wait=False)
    observe("watcher thread running: alive; watcher thread ended: not alive (no WATCHDOG=1)")
