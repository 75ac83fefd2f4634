"""Bad input on the command line, in the config and in the environment: one line, exit 2, never a hang."""

from __future__ import annotations

import os

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, pair_states

pytestmark = pytest.mark.integration


def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


SPECIAL = {"fifo": (fifo, "a FIFO"), "device": (lambda _tmp: "/dev/null", "a character device")}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
@scenario(
    "corrupt_inputs",
    "a FIFO or a device given as `--db` (scan, reap, run), or as `--config`",
    "one line naming it, exit 2, at once (opening a FIFO read-only would wait for a writer for ever)",
)
def test_special_files_as_db_or_config(tmp_path, kind, observe):
    make, said = SPECIAL[kind]
    path = str(make(tmp_path))
    for verb in ("scan", "reap", "run"):
        result = cli(tmp_path, verb, "--db", path, timeout=30)
        assert result.returncode == 2, result.stdout + result.stderr
        assert (
            result.stderr.strip() == f"opencode-watchdogd: error: --db {path}: is {said}, not a database file"
        )
    config = cli(tmp_path, "config", "check", "--config", path, timeout=30)
    assert config.returncode == 2 and "it is not a regular file" in config.stderr, config.stderr
    assert len(config.stderr.strip().splitlines()) == 1
    observe(
        f"scan/reap/run --db: exit 2, '--db …: is {said}, not a database file'",
        "config check --config: exit 2, '…: cannot read config file: it is not a regular file …'",
    )


@scenario(
    "corrupt_inputs",
    "the running daemon's `watch.databases` names a FIFO, next to a real DB with an orphan",
    "the FIFO is reported as not a database file; the daemon does not hang and repairs the other DB",
)
def test_daemon_with_a_fifo_among_its_databases(tmp_path, observe):
    pipe = fifo(tmp_path)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    env = {
        **GRACE0,
        "OPENCODE_WATCHDOGD_WATCH__DATABASES": f'["{pipe}", "{db}"]',
        "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
    }
    daemon = DaemonProcess(tmp_path, [], env=env)
    try:
        status = daemon.wait_status(
            lambda s: s["counts"]["repaired"] >= 1, timeout=60, what="the orphan repaired"
        )
        [shown] = [d for d in status["databases"] if d["path"] == str(pipe)]
        assert "it is a FIFO, not a database file" in shown["error"], shown
    finally:
        assert daemon.stop() == 0
    assert pair_states(db, orphans) == {orphans[0].part_id: "repaired"}
    observe("status: '…: cannot open: it is a FIFO, not a database file'", "the other DB's orphan repaired")


@scenario(
    "corrupt_inputs",
    "a config file of 2 MiB (and a directory given as `--config`)",
    "one line, exit 2: over the 1 MiB limit (a directory: 'it is a directory')",
)
def test_config_over_one_mebibyte(tmp_path, observe):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (210 * 1024))
    result = cli(tmp_path, "config", "check", "--config", str(big))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr.strip()
        == f"opencode-watchdogd: config error: {big}: config file is {big.stat().st_size} "
        "bytes, over the 1 MiB limit"
    )
    folder = cli(tmp_path, "config", "check", "--config", str(tmp_path))
    assert folder.returncode == 2 and folder.stderr.strip().endswith(
        "cannot read config file: it is a directory"
    )
    observe(
        "exit 2: '…: config file is 2150400 bytes, over the 1 MiB limit'",
        "directory: exit 2, 'it is a directory'",
    )


ENV = {  # variable, value, the JSON form the message must show
    "POLICY": ("OPENCODE_WATCHDOGD_POLICY", "x", "it takes a JSON object, e.g. OPENCODE_WATCHDOGD_POLICY="),
    "SERVERS": ("OPENCODE_WATCHDOGD_SERVERS", "http://127.0.0.1:4096", "it takes a JSON array, e.g. "),
    "WATCH__DATABASES": (
        "OPENCODE_WATCHDOGD_WATCH__DATABASES",
        "/a.db",
        (
            "it takes a JSON array, e.g. "
            "OPENCODE_WATCHDOGD_WATCH__DATABASES='[\"/home/me/.local/share/opencode/opencode.db\"]'"
        ),
    ),
}


@pytest.mark.parametrize("which", sorted(ENV))
@scenario(
    "corrupt_inputs",
    "garbage in a nested environment value: `OPENCODE_WATCHDOGD_POLICY=x`, "
    "`…_SERVERS=http://…`, `…_WATCH__DATABASES=/a.db`",
    "one line naming the variable and the JSON form it takes (object or array, with an example), exit 2, "
    "no traceback; `run` refuses the same way",
)
def test_garbage_in_nested_env_values(tmp_path, which, observe):
    name, value, form = ENV[which]
    for verb in (["config", "check"], ["run"]):
        result = cli(tmp_path, *verb, env={name: value}, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert (
            line.startswith(f"opencode-watchdogd: config error: env {name}: not valid JSON; ")
            and form in line
        )
    observe(f"config check and run: exit 2, '{line.split('config error: ', 1)[1][:110]}…'")


NUMBERS = {  # argv, what the one line names
    "undo-id-over-int64": (["undo", "99999999999999999999999"], "argument ID"),
    "undo-id-zero": (["undo", "0"], "argument ID"),
    "history-n-over-int64": (["history", "-n", "99999999999999999999"], "argument -n/--limit"),
    "history-n-negative": (["history", "-n", "-5"], "argument -n/--limit"),
    "history-n-zero": (["history", "-n", "0"], "argument -n/--limit"),
}


@pytest.mark.parametrize("kind", sorted(NUMBERS))
@scenario(
    "corrupt_inputs",
    "an action id or a `history -n` count past SQLite's 64-bit integers, zero or negative, against a journal "
    "that holds a repair",
    "one line naming the argument and the accepted range, exit 2 (not a traceback, nor 'journal …: datatype "
    "mismatch', nor every action for a negative count); the journal unchanged",
)
def test_out_of_range_numbers_on_the_command_line(tmp_path, kind, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    journal = dbfactory.table_rows(tmp_path / "state" / "journal.db", "actions")
    argv, names = NUMBERS[kind]
    result = cli(tmp_path, *argv)
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert names in last and "from 1 to" in last and "Traceback" not in result.stderr, result.stderr
    assert dbfactory.table_rows(tmp_path / "state" / "journal.db", "actions") == journal
    observe(f"exit 2: '{last}'")


@scenario(
    "corrupt_inputs",
    "`status.json` in the state dir replaced by a FIFO (nothing ever writes to it)",
    "`status` answers at once (not running, exit 1) instead of waiting for a writer for ever",
)
def test_status_file_that_is_a_fifo(tmp_path, observe):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.mkfifo(state / "status.json")
    result = cli(tmp_path, "status", timeout=30)  # a hang is a TimeoutExpired here
    assert result.returncode == 1 and "not running" in result.stdout, result.stdout + result.stderr
    # the row is compared with the committed doc: the temporary path differs at every run
    observe(f"exit 1: '{result.stdout.strip().replace(str(tmp_path), '…')}'")
