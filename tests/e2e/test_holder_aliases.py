"""A live opencode that opened the DB under another name (a hard link, a container's bind mount) is still its
owner: its fresh question is never written by the DB-repair route while it lives, exactly as for a holder by
the plain path; once it is killed, the same daemon repairs the orphan (so the check above could fail)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.support.opencode import PINNED_VERSIONS, OpencodeServer
from tests.support.watchdog import FIRST_PASS_S, candidate, daemon_for, start_stuck

pytestmark = pytest.mark.e2e

NEWEST = PINNED_VERSIONS[-1]
GRACE_S = 1
PASSES_PAST_GRACE = 4


def db_fd_targets(pid: int) -> list[str]:
    """What opencode's open DB files are called in its own view (the text of its /proc/PID/fd links)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if os.path.basename(target).startswith("opencode.db"):
            out.append(target)
    return out


def restart_under_another_name(server: OpencodeServer, alias: str, tmp_path: Path) -> Path:
    """Kill -9 (opencode.db, -wal and -shm stay), then start opencode on the same files under another path."""
    server.kill()
    if alias == "hard-link":
        linked = tmp_path / "linked-data"
        (linked / "opencode").mkdir(parents=True)
        for path in server.db_path.parent.glob("opencode.db*"):  # all three, or SQLite would split the WAL
            os.link(path, linked / "opencode" / path.name)
        server.data_home = linked
        seen_as = linked
    else:
        server.bind_data_at = seen_as = tmp_path / "container-data"
    server.start()
    return seen_as / "opencode" / "opencode.db"


def passes(daemon) -> int:
    return sum(1 for line in daemon.log_lines() if line.get("event") == "pass")


@pytest.mark.parametrize("alias", ["plain-path", "hard-link", "bind-mount"])
def test_a_live_holder_under_any_name_is_never_written_while_it_lives(
    opencode_factory, alias, tmp_path
) -> None:
    if alias == "bind-mount":
        require_root("a private mount namespace (unshare --mount) and mount --bind")
    server = opencode_factory(NEWEST)
    seen_as = server.db_path if alias == "plain-path" else restart_under_another_name(server, alias, tmp_path)
    assert str(seen_as) in db_fd_targets(server.server_pid)
    assert alias == "plain-path" or str(server.db_path) not in db_fd_targets(server.server_pid)

    # -v: one log line per pass; a 1 s poll, since a hard link's writes raise no event on the watched dir.
    settings = {"POLICY__ORPHAN_GRACE": f"{GRACE_S}s", "WATCH__POLL_INTERVAL": "1s"}
    with daemon_for(tmp_path, server, settings, args=["-v"]) as daemon:
        session, part = start_stuck(server)
        status = daemon.wait_status(
            lambda s: candidate(s, part.part_id), timeout=FIRST_PASS_S, what="the fresh question listed"
        )
        listed, listed_at = passes(daemon), time.monotonic()
        # Several passes, well past the orphan grace, while the holder lives.
        daemon.wait_status(
            lambda s: (
                passes(daemon) >= listed + PASSES_PAST_GRACE and time.monotonic() - listed_at > GRACE_S + 1
            ),
            timeout=FIRST_PASS_S,
            what=f"{PASSES_PAST_GRACE} more passes",
        )
        record = candidate(daemon.status(), part.part_id)
        assert record is not None, f"no longer a candidate; actions: {daemon.actions()}"
        assert (record["owner"], record["verdict"]) == (f"live:{server.url}", "keep"), record
        [row] = [p for p in server.tool_parts(session["id"]) if p["id"] == part.part_id]
        assert row["data"] == part.data
        assert "completed" not in server.db_message(part.message_id)["data"]["time"]
        assert daemon.actions() == []
        assert server.session_status(session["directory"]) == {session["id"]: {"type": "busy"}}

        server.kill()  # now it is an orphan, and the same daemon repairs it
        repaired = daemon.wait_action(part.part_id, "db-repair", timeout=FIRST_PASS_S)
        assert repaired["outcome"] == "done", repaired
    assert status["databases"][0]["path"] == str(server.db_path)
