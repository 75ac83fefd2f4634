"""What people are told after a pass (pure): kinds, once-only for stuck parts, coalescing, neutralising."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime

from tests import dbfactory, passes
from tests.unit.helpers import make_settings
from watchdogd.models import Holder, Outcome, OwnerKind, Plan, ProcessKind, Route
from watchdogd.notifiers.notices import Event, NoticeKind, events, render, rough_age
from watchdogd.notifiers.result import PassResult


def one_pass(db, journal, settings, holders=None) -> PassResult:
    return passes.one_pass(db, journal, settings, holders)


def old_holder() -> Holder:
    return Holder(os.getpid(), time.time() - 10 * 86400, "opencode")  # started before any part: may own it


def test_a_repaired_orphan_is_told_only_when_asked(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=7200)
    result = one_pass(db, journal, make_settings(tmp_path))
    assert [o.outcome for o in result.outcomes] == ["done"]
    assert events(result, orphans=False, told=set()) == []
    [event] = events(result, orphans=True, told=set())
    assert (event.kind, event.title, event.directory, event.age) == (
        NoticeKind.ORPHANS,
        "Fake session title",
        "/home/user/proj",
        "question unanswered for 2h",
    )


def test_a_stuck_part_is_told_once_until_it_is_gone(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    stuck = dbfactory.stuck_question(db, age_s=3 * 3600, tool="bash")
    settings = make_settings(tmp_path)
    told: set = set()
    first = one_pass(db, journal, settings, [old_holder()])
    assert [o.outcome for o in first.outcomes] == ["reported"]
    [event] = events(first, orphans=False, told=told)
    assert event.kind is NoticeKind.STUCK and event.age == "bash running for 3h without a result"
    assert f"pid {os.getpid()}" in event.advice and "quit that process" in event.advice
    assert events(one_pass(db, journal, settings, [old_holder()]), orphans=False, told=told) == []
    # Once the part is no longer listed (repaired by hand, say), a new stuck run of it is told again.
    gone = PassResult(datetime.now(UTC), 0.01, True, True, ())
    assert events(gone, orphans=False, told=told) == [] and told == set()
    assert len(events(first, orphans=False, told=told)) == 1
    assert (str(db), stuck.part_id) in told


def test_a_freed_live_session_reads_like_the_issue_says(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=7200)
    result = one_pass(db, journal, make_settings(tmp_path))
    freed = replace(
        result, outcomes=tuple(replace(o, plan=Plan(Route.REJECT_QUESTION)) for o in result.outcomes)
    )
    [event] = events(freed, orphans=False, told=set())
    rendered = render(event.kind, [event])
    assert rendered.summary == "opencode session freed" and rendered.urgency == 1
    assert (
        rendered.body == "Freed session “Fake session title” in /home/user/proj: question unanswered for 2h"
    )


def test_a_busy_with_a_newer_run_report_is_not_told(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=7200)
    result = one_pass(db, journal, make_settings(tmp_path))
    [done] = result.outcomes
    live = replace(done.item, ownership=replace(done.item.ownership, kind=OwnerKind.LIVE))
    plan = Plan(Route.REPORT, "the session is busy with a newer run")
    newer = replace(result, outcomes=(replace(done, item=live, plan=plan, outcome=Outcome.REPORTED),))
    assert events(newer, orphans=True, told=set()) == []


def event(n: int, kind=NoticeKind.ORPHANS, title="T", directory="/d") -> Event:
    return Event(kind, f"ses_{n}", f"prt_{n}", title, directory, "question", "question unanswered for 2h")


def test_a_burst_is_one_notification_naming_three_sessions():
    rendered = render(NoticeKind.ORPHANS, [event(i, title=f"S{i}") for i in range(10)])
    assert rendered.summary == "opencode: 10 abandoned tool calls repaired"
    assert rendered.body.splitlines() == [
        "in 10 sessions:",
        "“S0” in /d",
        "“S1” in /d",
        "“S2” in /d",
        "and 7 more",
    ]
    two_in_one = render(NoticeKind.FREED, [event(1), replace(event(2), session_id="ses_1")])
    assert two_in_one.summary == "opencode: 2 stuck tool calls freed" and "in 1 session:" in two_in_one.body
    same_titles = render(NoticeKind.FREED, [event(1), event(2), event(3, title="U")])
    assert same_titles.body.splitlines() == ["in 3 sessions:", "“T” in /d (2 sessions)", "“U” in /d"]
    stuck = render(NoticeKind.STUCK, [event(1, NoticeKind.STUCK), event(2, NoticeKind.STUCK)])
    assert stuck.urgency == 2 and "opencode-watchdogd scan" in stuck.body


def test_titles_and_directories_are_neutralised_and_escaped(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    sid = dbfactory.add_session(db, title="a\u202eb <i>x</i> & \x07" + "y" * 300, directory="/p/<d>")
    dbfactory.stuck_question(db, age_s=7200, session=sid, directory="/p/<d>")
    [found] = events(one_pass(db, journal, make_settings(tmp_path)), orphans=True, told=set())
    body = render(found.kind, [found]).body
    assert "\u202e" not in body and "\\x202e" in body and "\\x07" in body
    assert "&lt;i&gt;x&lt;/i&gt; &amp;" in body and "/p/&lt;d&gt;" in body
    assert len(found.title) == 80 and found.title.endswith("…")


def test_rough_ages():
    assert [rough_age(s) for s in (5, 59, 60, 89, 7200, 7260, 7290, 90000)] == [
        "5s",
        "59s",
        "1m",
        "1m",
        "2h",
        "2h1m",
        "2h2m",
        "1d1h",
    ]


def test_a_tui_without_an_api_gets_the_keys_that_free_it(tmp_path, journal):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=3 * 3600)
    result = one_pass(db, journal, make_settings(tmp_path), [old_holder()])
    [reported] = result.outcomes
    tui = replace(
        reported.item.ownership,
        kind=OwnerKind.UNREACHABLE,
        process=ProcessKind.TUI,
        pids=(4242,),
        detail="opencode TUI, pid 4242, no HTTP API",
    )
    stuck = replace(result, outcomes=(replace(reported, item=replace(reported.item, ownership=tui)),))
    [event] = events(stuck, orphans=False, told=set())
    assert event.advice.startswith(
        "opencode TUI, pid 4242, no HTTP API: press Esc on the question in that TUI"
    )
    body = render(event.kind, [event]).body
    assert body.startswith(
        "Session “Fake session title” in /home/user/proj is stuck (question unanswered for 3h): "
        "opencode TUI, pid 4242"
    )
