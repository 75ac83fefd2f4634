"""Prometheus metrics of a real `opencode-watchdogd run`: scraped over HTTP, and read from its textfile,
both parsed with prometheus_client's own parser."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests import dbfactory
from tests.integration.daemonproc import REPO, DaemonProcess, Holder, wait_until
from tests.support.prometheus import free_port, samples, scrape, scraped, value

pytestmark = pytest.mark.integration

FAST = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s", "OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0.1s"}


@pytest.fixture
def daemon_factory(tmp_path):
    started: list[DaemonProcess] = []

    def start(dbs, env) -> DaemonProcess:
        started.append(DaemonProcess(tmp_path, dbs, env=env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def test_counters_move_with_a_repair_on_the_endpoint_and_in_the_textfile(tmp_path, daemon_factory):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    textfile = tmp_path / "textfile" / "opencode-watchdogd.prom"
    textfile.parent.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    daemon = daemon_factory(
        [db],
        FAST
        | {
            "OPENCODE_WATCHDOGD_METRICS__LISTEN": f"127.0.0.1:{port}",
            "OPENCODE_WATCHDOGD_METRICS__TEXTFILE": str(textfile),
        },
    )
    daemon.wait_status(lambda s: s["passes"] >= 1, what="first pass")
    before = wait_until(lambda: scraped(url), timeout=60, what="the endpoint")
    assert value(before, "opencode_watchdogd_actions_total", route="db-repair", outcome="done") == 0
    assert value(before, "opencode_watchdogd_databases", state="watched") == 1
    assert value(before, "opencode_watchdogd_passes_total", result="ok") >= 1
    assert value(before, "opencode_watchdogd_build_info", version=_version(), opencode_versions="") == 1

    stuck = dbfactory.stuck_question(db, age_s=7200)  # a real WAL write: the file event wakes the daemon
    wait_until(
        lambda: dbfactory.read_data(db, "part", stuck.part_id)["state"]["status"] == "error",
        timeout=60,
        what="repair",
    )
    after = wait_until(
        lambda: (
            (m := scrape(url))
            and value(m, "opencode_watchdogd_actions_total", route="db-repair", outcome="done") == 1
            and m
        ),
        timeout=60,
        what="the repair counted",
    )
    assert value(after, "opencode_watchdogd_pass_duration_seconds_count") > value(
        before, "opencode_watchdogd_pass_duration_seconds_count"
    )
    assert value(after, "opencode_watchdogd_last_successful_pass_timestamp_seconds") > value(
        before, "opencode_watchdogd_last_successful_pass_timestamp_seconds"
    )
    assert value(after, "opencode_watchdogd_journal_size_bytes") > 0

    written = wait_until(
        lambda: (
            (m := samples(textfile.read_text()))
            and value(m, "opencode_watchdogd_actions_total", route="db-repair", outcome="done") == 1
            and m
        ),
        timeout=60,
        what="the textfile",
    )
    assert value(written, "opencode_watchdogd_databases", state="watched") == 1
    assert oct(textfile.stat().st_mode & 0o777) == oct(0o644)  # node_exporter reads it as another user
    assert [p.name for p in textfile.parent.iterdir()] == [textfile.name]  # no temp files left


def _version() -> str:
    from watchdogd import __version__

    return __version__


def test_a_stuck_part_shows_as_expired_and_its_report_counts_once(tmp_path, daemon_factory):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    holder = Holder(db)
    try:
        dbfactory.stuck_question(db, age_s=0)
        dbfactory.stuck_question(db, age_s=0, tool="bash")
        port = free_port()
        daemon = daemon_factory(
            [db],
            FAST
            | {
                "OPENCODE_WATCHDOGD_METRICS__LISTEN": f"127.0.0.1:{port}",
                "OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION": "1s",
                "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s",
            },
        )
        url = f"http://127.0.0.1:{port}/metrics"
        found = wait_until(
            lambda: (
                (m := scraped(url))
                and value(m, "opencode_watchdogd_candidates", verdict="expired", tool="question") == 1
                and m
            ),
            timeout=60,
            what="the expired question",
        )
        passes = daemon.wait_status(lambda s: True)["passes"]
        daemon.wait_status(lambda s: s["passes"] >= passes + 4, timeout=30, what="four more passes")
        later = scrape(url)
    finally:
        holder.kill()
    assert value(found, "opencode_watchdogd_candidates", verdict="keep", tool="bash") == 1
    assert value(later, "opencode_watchdogd_actions_total", route="report", outcome="reported") == 1
    assert value(later, "opencode_watchdogd_next_deadline_timestamp_seconds") is not None  # the bash part's


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = dbfactory.make_db(tmp_path / "opencode.db")
        env = {
            "OPENCODE_WATCHDOGD_METRICS__LISTEN": f"127.0.0.1:{port}",
            "PYTHONPATH": str(REPO),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-m", "watchdogd", "run", "--db", str(db)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr == (
        f"opencode-watchdogd: error: metrics.listen 127.0.0.1:{port}: cannot listen: Address already in use\n"
    )


@pytest.mark.parametrize(
    "key, setting, problem",
    [
        ("LISTEN", "0.0.0.0:9464", "is not a loopback address"),
        ("LISTEN", "localhost", "expected HOST:PORT"),
        ("TEXTFILE", "/proc/self/x.prom", "directory is not writable"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, key, setting, problem):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    env = {
        f"OPENCODE_WATCHDOGD_METRICS__{key}": setting,
        "PYTHONPATH": str(REPO),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "watchdogd", "run", "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"opencode-watchdogd: config error: env OPENCODE_WATCHDOGD_METRICS__{key}: metrics"
    )
    assert problem in done.stderr


def test_a_reload_moves_the_endpoint_and_counters_carry_on(tmp_path):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first, second = free_port(), free_port()
    config = tmp_path / "watchdog.toml"
    config.write_text(f'[policy]\norphan_grace = "0s"\n[metrics]\nlisten = "127.0.0.1:{first}"\n')
    daemon = DaemonProcess(
        tmp_path,
        [db],
        env={"OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0.1s"},
        extra_args=["--config", str(config)],
    )
    try:
        stuck = dbfactory.stuck_question(db, age_s=7200)
        wait_until(
            lambda: dbfactory.read_data(db, "part", stuck.part_id)["state"]["status"] == "error",
            timeout=60,
            what="repair",
        )
        old_url, new_url = f"http://127.0.0.1:{first}/metrics", f"http://127.0.0.1:{second}/metrics"
        wait_until(
            lambda: (
                (m := scraped(old_url))
                and value(m, "opencode_watchdogd_actions_total", route="db-repair", outcome="done") == 1
            ),
            timeout=60,
            what="the repair on the first port",
        )
        config.write_text(f'[policy]\norphan_grace = "0s"\n[metrics]\nlisten = "127.0.0.1:{second}"\n')
        daemon.signal(signal.SIGHUP)
        moved = wait_until(lambda: scraped(new_url), timeout=60, what="the endpoint on the new port")
        assert value(moved, "opencode_watchdogd_actions_total", route="db-repair", outcome="done") == 1
        assert scraped(old_url) is None
    finally:
        daemon.stop()
