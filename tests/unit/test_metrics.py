"""Metrics from pass results: snapshot gauges, counters that count an action once, the textfile."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests import dbfactory, passes
from tests.unit.helpers import make_settings
from watchdogd.config import MetricsConfig
from watchdogd.models import DBReport, Holder
from watchdogd.notifiers.metrics import Metrics
from watchdogd.notifiers.result import PassResult, ServerSeen


def one_pass(db, journal, settings, holders=None, **more) -> PassResult:
    return replace(passes.one_pass(db, journal, settings, holders), **more)


def read(metrics: Metrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_pass_sets_gauges_and_counts_actions(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=7200)  # an orphan: repaired
    held = dbfactory.make_db(tmp_path / "held.db")
    dbfactory.stuck_question(held, age_s=0, tool="bash")  # its opencode may still run it: kept for an hour
    holder = Holder(os.getpid(), time.time() - 86400, "opencode")
    metrics = Metrics(MetricsConfig(), tmp_path / "state")
    deadline = datetime.now(UTC) + timedelta(hours=1)
    result = one_pass(
        db,
        journal,
        make_settings(tmp_path),
        next_deadline=deadline,
        servers=(ServerSeen("http://127.0.0.1:4096", "1.15.3"),),
    )
    kept = one_pass(held, journal, make_settings(tmp_path), [holder])
    metrics.publish(replace(result, reports=result.reports + kept.reports))
    found = read(metrics)
    assert found[("opencode_watchdogd_candidates", (("tool", "question"), ("verdict", "expired")))] == 1
    assert found[("opencode_watchdogd_candidates", (("tool", "bash"), ("verdict", "keep")))] == 1
    assert found[("opencode_watchdogd_actions_total", (("outcome", "done"), ("route", "db-repair")))] == 1
    assert found[("opencode_watchdogd_databases", (("state", "watched"),))] == 2
    assert found[("opencode_watchdogd_live_servers", ())] == 1
    assert found[("opencode_watchdogd_next_deadline_timestamp_seconds", ())] == deadline.timestamp()
    build = [k for k in found if k[0] == "opencode_watchdogd_build_info"]
    assert dict(build[0][1])["opencode_versions"] == "1.15.3"
    assert found[("opencode_watchdogd_journal_size_bytes", ())] > 0
    assert found[("opencode_watchdogd_pass_duration_seconds_count", ())] == 1

    # The next pass judged again: the repaired question is gone from the gauge, not left at a stale 1.
    metrics.publish(one_pass(db, journal, make_settings(tmp_path)))
    found = read(metrics)
    assert ("opencode_watchdogd_candidates", (("tool", "question"), ("verdict", "expired"))) not in found
    assert ("opencode_watchdogd_next_deadline_timestamp_seconds", ()) not in found
    assert (
        dict([k for k in found if k[0] == "opencode_watchdogd_build_info"][0][1])["opencode_versions"]
        == "1.15.3"
    )


def test_a_part_reported_at_every_pass_counts_once(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=7200)
    metrics = Metrics(MetricsConfig(), tmp_path / "state")
    holder = Holder(os.getpid(), time.time() - 86400, "opencode")
    for _ in range(3):
        result = one_pass(db, journal, make_settings(tmp_path), [holder])
        assert [o.outcome for o in result.outcomes] == ["reported"]
        metrics.publish(result)
    assert (
        read(metrics)[("opencode_watchdogd_actions_total", (("outcome", "reported"), ("route", "report")))]
        == 1
    )


def test_db_states(tmp_path):
    metrics = Metrics(MetricsConfig(), tmp_path / "state")
    missing = DBReport(tmp_path / "gone.db", error="database does not exist (yet)")
    broken = tmp_path / "broken.db"
    broken.write_text("not sqlite")
    unreadable = DBReport(broken, error="file is not a database")
    metrics.publish(PassResult(datetime.now(UTC), 0.01, False, True, (missing, unreadable)))
    found = read(metrics)
    assert [
        found[("opencode_watchdogd_databases", (("state", s),))]
        for s in ("watched", "read-only", "unreadable", "missing")
    ] == [0, 0, 1, 1]
    assert found[("opencode_watchdogd_passes_total", (("result", "failed"),))] == 1
    assert ("opencode_watchdogd_last_successful_pass_timestamp_seconds", ()) not in found


def test_the_textfile_is_replaced_and_a_failure_never_raises(tmp_path, capsys):
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "w.prom"
    metrics = Metrics(MetricsConfig(textfile=target), tmp_path / "state")
    metrics.publish(PassResult(datetime.now(UTC), 0.01, True, False))
    assert "opencode_watchdogd_passes_total" in target.read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["w.prom"]
    target.unlink()
    folder.rmdir()  # gone after the config was checked: each pass goes on, one warning
    for _ in range(3):
        metrics.publish(PassResult(datetime.now(UTC), 0.01, True, False))
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("cannot write the metrics textfile") == 1
    Path(folder).mkdir()
    metrics.publish(PassResult(datetime.now(UTC), 0.01, True, False))
    assert 'opencode_watchdogd_passes_total{result="ok"} 5.0' in target.read_text()
