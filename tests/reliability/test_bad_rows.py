"""One bad row blocks nothing: rows nested too deep or with impossible times are listed and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, pair_states
from watchdogd.models import Candidate
from watchdogd.opencode.rows import BadRow, parse_candidate

pytestmark = pytest.mark.integration

DEPTH = 5000


def deep_completed() -> str:
    """A completed todo call whose input nests 5000 deep and holds a todo saying "status":"pending"
    (a prefilter hit)."""
    nested = "[" * DEPTH + "]" * DEPTH
    return (
        '{"type":"tool","tool":"todowrite","callID":"call_1","state":{"status":"completed","input":{"todos":'
        '[{"content":"x","status":"pending"}],"deep":' + nested + '},"output":"ok","title":"t","metadata":{},'
        '"time":{"start":1700000000000,"end":1700000001000}}}'
    )


def running_with_start(start: str) -> str:
    return (
        '{"type":"tool","tool":"bash","callID":"call_2","state":{"status":"running","input":{"command":"x"},'
        '"title":"x","metadata":{},"time":{"start":' + start + "}}}"
    )


BAD = {  # how the row looks, what scan says about it
    "nested-5000-deep": (deep_completed(), "part data is JSON nested too deep to parse"),
    "start-NaN": (running_with_start("NaN"), "state.time.start is nan, not a time"),
    "start-1e999": (running_with_start("1e999"), "state.time.start is inf, not a time"),
    "start-year-3e6": (
        running_with_start("99999999999999999"),
        "state.time.start is 99999999999999999, not a time",
    ),
    "start-negative": (running_with_start("-5"), "state.time.start is -5, not a time"),
}


def db_with_bad_row(tmp_path: Path, kind: str):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [good] = add_orphans(db, 1)
    stuck = dbfactory.stuck_question(db)
    with dbfactory.connection(db) as conn:  # the carrier part's own call finished: only the odd row is left
        done = dbfactory.read_data(conn, "part", stuck.part_id)
        done["state"]["status"] = "completed"
        conn.execute("UPDATE part SET data=? WHERE id=?", (dbfactory.compact(done), stuck.part_id))
    bad = dbfactory.add_tool_part(db, stuck.session_id, stuck.message_id, data=BAD[kind][0])
    return db, good, bad


@pytest.mark.parametrize("kind", sorted(BAD))
@scenario(
    "corrupt_inputs",
    'one part row nested 5000 deep (a *completed* call whose todo says "pending"), or with '
    "`state.time.start` NaN, 1e999, 99999999999999999 or negative, next to a normal orphan in the same DB",
    "scan lists it as a bad row with its reason (no traceback); reap repairs the normal orphan and leaves the "
    "bad row byte-for-byte as it was",
)
def test_bad_row_is_skipped(tmp_path, kind, observe):
    db, good, bad = db_with_bad_row(tmp_path, kind)
    before = dbfactory.read_text(db, "part", bad)
    scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
    assert "Traceback" not in scan.stderr, scan.stderr
    assert f"part {bad} skipped: {BAD[kind][1]}" in scan.stderr, scan.stderr
    assert scan.returncode == 1 and good.part_id in scan.stdout, scan.stdout  # the good orphan is expired
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert reap.returncode == 0 and "Traceback" not in reap.stderr, reap.stdout + reap.stderr
    assert pair_states(db, [good]) == {good.part_id: "repaired"}
    assert dbfactory.read_text(db, "part", bad) == before
    observe(
        f"scan: 'part … skipped: {BAD[kind][1]}', exit 1",
        "reap exit 0: the normal orphan repaired, the bad row unchanged",
    )


@scenario(
    "corrupt_inputs",
    "the running daemon watches a DB holding a part nested 5000 deep and a normal orphan",
    "the orphan is repaired at the first pass; the daemon stays up and its status counts the bad row",
)
def test_daemon_passes_over_a_bad_row(tmp_path, observe):
    db, good, _bad = db_with_bad_row(tmp_path, "nested-5000-deep")
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        status = daemon.wait_status(
            lambda s: s["passes"] >= 1 and s["counts"]["repaired"] >= 1,
            timeout=60,
            what="the orphan repaired",
        )
        assert [d["bad_rows"] for d in status["databases"]] == [1], status["databases"]
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    assert pair_states(db, [good]) == {good.part_id: "repaired"}
    assert not any("pass failed" in str(line.get("event")) for line in daemon.log_lines())
    observe("orphan repaired; status: bad_rows 1; no 'pass failed' in the log; exit 0 on SIGTERM")


# -- the row parser under fuzz ---------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
TIME_VALUE = st.one_of(
    JSON_ANY,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -0.0]),
)


@st.composite
def real_shaped_rows(draw) -> tuple:
    """A row shaped like opencode's tool parts (tests/dbfactory.py), with any field replaced by anything."""
    state = {
        "status": draw(st.sampled_from(["running", "pending", "completed", "error"]) | JSON_ANY),
        "input": draw(st.just({"command": "ls"}) | JSON_ANY),
        "time": draw(st.fixed_dictionaries({"start": TIME_VALUE}) | JSON_ANY),
        "metadata": draw(st.just({}) | st.fixed_dictionaries({"sessionId": JSON_ANY}) | JSON_ANY),
    }
    part = {
        "type": draw(st.just("tool") | JSON_ANY),
        "tool": draw(st.just("bash") | JSON_ANY),
        "callID": draw(st.just("call_1") | JSON_ANY),
        "state": draw(st.just(state) | JSON_ANY),
    }
    data = json.dumps(draw(st.just(part) | JSON_ANY), separators=(",", ":"))
    if draw(st.booleans()):
        cut = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:cut] + draw(st.sampled_from(["", "[" * 3000, "\udcff", "NaN", "}"]))
    created = draw(
        st.one_of(
            st.integers(min_value=-(10**20), max_value=10**20),
            st.none(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=4),
        )
    )
    return (1, "prt_1", "msg_1", "ses_1", created, data)


@scenario(
    "corrupt_inputs",
    "the row parser fuzzed (hypothesis, 400 rows) over opencode-shaped tool parts with any "
    "field replaced by any JSON value, times out of range, cut-off JSON, deep nesting, lone surrogates",
    "every row is a candidate with a usable start time, nothing, or a bad row with a reason: never an "
    "exception",
)
def test_row_parser_fuzz(observe):
    kinds: set[str] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(real_shaped_rows())
    def parse(row):
        item = parse_candidate(Path("/x/opencode.db"), row)
        assert item is None or isinstance(item, (Candidate, BadRow))
        if isinstance(item, Candidate) and item.start_ms is not None:
            assert 0 <= item.start_ms <= 253_402_300_799_999
        if isinstance(item, BadRow):
            assert item.problem
        kinds.add(type(item).__name__)

    parse()
    assert {"Candidate", "BadRow", "NoneType"} <= kinds, kinds
    observe("400 rows: candidates, non-candidates and bad rows all produced; no exception")


# -- lone surrogates: JSON.stringify writes a lone UTF-16 surrogate as an escape (`\ud83d`) --------

LONE = {  # where the escape sits in an orphan's part row (a model's tool input cut inside an emoji is realistic)
    "input": lambda part: part["state"]["input"].update(questions="\ud83d cut"),
    "tool-name": lambda part: part.update(tool="ask\udfff"),
    "call-id": lambda part: part.update(callID="call_\ud800"),
}


@pytest.mark.parametrize("where", sorted(LONE))
@scenario(
    "corrupt_inputs",
    "an orphan whose part row holds a lone UTF-16 surrogate, escaped as JSON.stringify writes it "
    "(`\\ud83d`), in `state.input`, the tool name or the callID, next to a normal orphan",
    "reap repairs both (the escape kept as an escape, no traceback) and `undo --last` puts the row back "
    "byte for byte",
)
def test_lone_surrogate_in_a_row_is_repaired(tmp_path, where, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    good, odd = add_orphans(db, 2)
    with dbfactory.connection(db) as conn:
        part = json.loads(odd.part_before)
        LONE[where](part)
        # ensure_ascii=True escapes the lone surrogate as JSON.stringify does (and every other non-ASCII char)
        written = json.dumps(part, separators=(",", ":"))
        conn.execute("UPDATE part SET data=? WHERE id=?", (written, odd.part_id))
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert "Traceback" not in reap.stderr and reap.returncode == 0, reap.stdout + reap.stderr
    assert pair_states(db, [good, odd]) == {good.part_id: "repaired", odd.part_id: "repaired"}
    repaired = dbfactory.read_text(db, "part", odd.part_id)
    assert "\\u" in repaired and json.loads(repaired)["state"]["status"] == "error", repaired
    assert {k: v for k, v in json.loads(repaired).items() if k != "state"} == {
        k: v for k, v in part.items() if k != "state"
    }
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 0 and "Traceback" not in undo.stderr, undo.stdout + undo.stderr
    assert dbfactory.read_text(db, "part", odd.part_id) == written
    observe("reap exit 0: both orphans repaired, the escape kept; undo --last: the row back byte for byte")
