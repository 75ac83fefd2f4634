"""The first one-shot command a user runs on a DB with week-old orphans acts at once (README's exit codes).

The week-old rows are real opencode's own: opencode ran with its wall clock a week back (an LD_PRELOAD shim
on CLOCK_REALTIME of that process only), asked a question and was killed with SIGKILL. Nothing is edited by
hand; `scan` and `reap` run at the real time, with a state dir that never saw these parts. A second orphan,
left a moment ago at the real time, still waits the grace (an hour here, so that a slow machine cannot
let it pass during the test; a week-old orphan is due at once whatever the grace).
"""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.support.opencode import PINNED_VERSIONS
from tests.support.watchdog import Watchdog, abandoned, start_stuck

pytestmark = pytest.mark.e2e

WEEK_S = 7 * 24 * 3600


def scan(watchdog: Watchdog) -> tuple[int, dict[str, dict]]:
    done = watchdog.cli("scan", "--json")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, {record["part_id"]: record for record in json.loads(done.stdout)}


@pytest.mark.parametrize("opencode_version", [PINNED_VERSIONS[0], PINNED_VERSIONS[-1]])
def test_week_old_orphans_are_due_at_once_and_a_fresh_one_waits(
    opencode_factory, opencode_version, clock_shim, tmp_path
) -> None:
    offset = tmp_path / "clock-offset"
    offset.write_bytes(struct.pack("q", -WEEK_S * 10**9))
    server = opencode_factory(
        opencode_version, extra_env={"LD_PRELOAD": str(clock_shim), "FAKECLOCK_FILE": str(offset)}
    )
    old_session, old = start_stuck(server)
    assert (
        time.time() - old.data["state"]["time"]["start"] / 1000 > WEEK_S - 3600
    )  # opencode wrote a week back
    server.kill()
    server.extra_env = {}
    server.start()
    fresh_session, fresh = start_stuck(server)
    server.kill()

    watchdog = Watchdog(tmp_path, server.db_path, policy={"orphan_grace": "1h"})  # never saw either part
    code, records = scan(watchdog)
    assert code == 1  # something expired
    assert (
        records[old.part_id]["owner"],
        records[old.part_id]["verdict"],
        records[old.part_id]["route"],
    ) == ("none", "expired", "db-repair"), records[old.part_id]
    assert (records[fresh.part_id]["owner"], records[fresh.part_id]["verdict"]) == ("none", "keep"), records
    assert "orphan_grace" in records[fresh.part_id]["reason"]

    reap = watchdog.cli("reap")
    assert reap.returncode == 0, reap.stdout + reap.stderr  # all done
    [action] = watchdog.actions()
    assert (action["part_id"], action["route"], action["outcome"]) == (old.part_id, "db-repair", "done")
    assert abandoned(next(p for p in server.tool_parts(old_session["id"]) if p["id"] == old.part_id)["data"])
    assert server.db_message(old.message_id)["data"]["time"].get("completed")
    [fresh_row] = [p for p in server.tool_parts(fresh_session["id"]) if p["id"] == fresh.part_id]
    assert fresh_row["data"] == fresh.data  # died moments ago: it waits the grace

    code, records = scan(watchdog)
    assert code == 0 and list(records) == [fresh.part_id]  # nothing expired
    again = watchdog.cli("reap")
    assert again.returncode == 0 and "nothing due" in again.stdout, again.stdout + again.stderr
