"""The presentation layer over a real pass: one status schema, filled in one place, and the route shown is
the plan the pass made."""

from __future__ import annotations

import json
import os
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests import dbfactory as f
from tests.passes import context, one_pass, open_dbs
from tests.unit.helpers import make_settings
from watchdogd.models import Outcome, Route
from watchdogd.pipeline import PassOptions, run_pass
from watchdogd.present.candidates import CandidateRecord, candidate_record
from watchdogd.present.status import (
    DaemonFacts,
    DatabaseStatus,
    StatusDocument,
    last_action_text,
    status_document,
    status_line,
    status_text,
)
from watchdogd.status_file import read_status, write_status


def scanned(db: Path, tmp_path: Path, journal, **policy):
    """A `scan` pass over the DB with no process holding it: the watched DBs as the daemon keeps them."""
    settings = make_settings(tmp_path, **policy)
    dbs = open_dbs(db, settings)
    run_pass(context(settings, journal), dbs, PassOptions(act=False))
    return dbs


def keys(schema) -> set[str]:
    return set(typing.get_type_hints(schema))


def test_the_status_document_is_its_schema_and_survives_the_file(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=7200)
    dbs = scanned(db, tmp_path, journal)
    deadline = datetime.now(UTC) + timedelta(minutes=5)
    facts = DaemonFacts(Path("/etc/x.toml"), 3, ("poll", "file-event"), (("repaired", 1), ("failed", 0)))
    try:
        document = status_document(dbs.values(), "the line", deadline, facts)
    finally:
        dbs.close()
    assert set(document) == keys(StatusDocument)
    assert [set(d) for d in document["databases"]] == [keys(DatabaseStatus)]
    [record] = document["candidates"]
    assert set(record) == keys(CandidateRecord)
    assert record["part_id"] == stuck.part_id and record["verdict"] == "expired"
    assert document["pid"] == os.getpid() and document["passes"] == 3 and document["config"] == "/etc/x.toml"
    assert document["last_pass"]["reasons"] == ["file-event", "poll"]
    assert document["counts"] == {"repaired": 1, "failed": 0}
    write_status(tmp_path / "state", document)
    assert read_status(tmp_path / "state") == json.loads(json.dumps(document))


def test_the_route_shown_is_the_plan_the_pass_made(tmp_path, db, journal):
    due = f.stuck_question(db, age_s=7200)
    kept = f.stuck_question(db, age_s=0)  # its row changed just now: the orphan grace has not passed
    dbs = scanned(db, tmp_path, journal, orphan_grace="30m")
    try:
        [watched] = dbs.values()
        items = {a.candidate.part_id: a for a in watched.report.assessments}
        line = status_line(dbs.values(), None, "")
    finally:
        dbs.close()
    assert items[due.part_id].plan.route is Route.DB_REPAIR
    assert candidate_record(items[due.part_id])["route"] == items[due.part_id].plan.label == "db-repair"
    assert items[kept.part_id].plan is None and candidate_record(items[kept.part_id])["route"] is None
    assert line == "watching 1 DB; 2 candidates (1 expired)"


def test_status_text_reads_what_the_daemon_wrote(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=7200)
    dbs = scanned(db, tmp_path, journal)
    try:
        line = status_line(dbs.values(), None, "")
        document = status_document(dbs.values(), line, None, DaemonFacts(None, 1, ("start",), ()))
    finally:
        dbs.close()
    write_status(tmp_path / "state", document)
    text = status_text(read_status(tmp_path / "state"), True, [])
    assert text.startswith(f"opencode-watchdogd running (pid {os.getpid()}), version ")
    assert f"  status:      {line}" in text.splitlines()
    [row] = [r for r in text.splitlines() if stuck.part_id in r and "db-repair" in r]
    assert row.split()[:3] == [stuck.session_id, stuck.part_id, "question"]


def test_status_text_of_an_older_status_file_with_few_keys():
    text = status_text({"pid": 7}, False, [])
    assert text.splitlines()[0] == "opencode-watchdogd not running (last pid 7), version None"
    assert "  next due:    -" in text.splitlines()


def test_the_last_action_of_the_status_line_is_the_write_done(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=7200)
    result = one_pass(db, journal, make_settings(tmp_path))
    [done] = [o for o in result.outcomes if o.outcome is Outcome.DONE]
    text = last_action_text(done, datetime(2026, 12, 1, 14, 3, 22))
    assert text == f"db-repair {stuck.part_id} at 14:03:22"
