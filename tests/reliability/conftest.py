"""Reliability tier: every test is one row of docs/reliability.md (scenario → expected → observed).

A test declares its row with ``@scenario(group, scenario, expected)`` and states what it saw with the
``observe`` fixture (plain, deterministic facts: no timings, no random values). After the run the
table is regenerated from the tests that passed and compared with the committed document; a
difference fails the run. Rows of tests that were skipped, failed or not selected keep their
committed text, and rows whose test no longer exists (in a collected file) are dropped.

Regenerate the table after changing a scenario:

    python -m pytest tests/reliability --update-reliability-doc
    (or UPDATE_RELIABILITY_DOC=1 python -m pytest tests/reliability)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from tests import dbfactory
from tests.isolation import private_env
from watchdogd.config import PolicyConfig, Settings
from watchdogd.journal import Journal

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
BEGIN = "<!-- BEGIN GENERATED TABLE: edit the tests in tests/reliability, then run the command above -->"
END = "<!-- END GENERATED TABLE -->"
UPDATE_CMD = "python -m pytest tests/reliability --update-reliability-doc"
HEADER = "| Group | Scenario | Expected | Observed | Test |\n| --- | --- | --- | --- | --- |"
# Groups in the order the document lists them; a file's position decides otherwise.
GROUP_ORDER = [
    "locks",
    "cas",
    "kill9",
    "state_dir",
    "backups",
    "corrupt_inputs",
    "hostile_strings",
    "paths",
    "root",
    "bad_servers",
    "signals_clock",
    "secrets",
]


def scenario(group: str, what: str, expected: str):
    """Declare the documented row of a test (a marker; the observed column comes from `observe`)."""
    return pytest.mark.reliability_scenario(group=group, scenario=what, expected=expected)


@dataclass
class Row:
    test: str  # file.py::test_name[param], the row's key
    group: str
    scenario: str
    expected: str
    observed: str
    order: tuple = ()

    def render(self) -> str:
        cells = [self.group, self.scenario, self.expected, self.observed, f"`{self.test}`"]
        return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().replace("|", "\\|")


@dataclass
class Registry:
    collected: dict[str, Row] = field(default_factory=dict)  # every scenario test collected
    files: set[str] = field(default_factory=set)  # files collected (whole)
    observed: dict[str, list[str]] = field(default_factory=dict)
    passed: set[str] = field(default_factory=set)
    ran: bool = False


_REGISTRY = Registry()


def _key(item: pytest.Item) -> str:
    return f"{Path(str(item.fspath)).name}::{item.name}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-reliability-doc",
        action="store_true",
        default=False,
        help="rewrite the generated table of docs/reliability.md from this run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability_scenario(group, scenario, expected): a row of docs/reliability.md"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Before -k/-m deselection: the full set of scenario tests of each collected file.
    for item in items:
        mark = item.get_closest_marker("reliability_scenario")
        if mark is None:
            continue
        path = Path(str(item.fspath))
        _REGISTRY.files.add(path.name)
        group = mark.kwargs["group"]
        rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
        _REGISTRY.collected[_key(item)] = Row(
            _key(item),
            group,
            mark.kwargs["scenario"],
            mark.kwargs["expected"],
            "",
            (rank, path.name, item.location[1] or 0, item.name),
        )


@pytest.fixture
def observe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """observe("fact", ...): what the test saw, for the Observed column (deterministic text only)."""
    key = _key(request.node)
    if request.node.get_closest_marker("reliability_scenario") is None:
        raise RuntimeError(f"{key} uses `observe` without @scenario(...)")
    _REGISTRY.observed[key] = []
    # A temporary path differs at every run, so the row would never match the committed doc again.
    temporary = str(tmp_path_factory.getbasetemp())

    def record(*facts: str) -> None:
        for fact in facts:
            assert temporary not in fact, f"observed text holds a temporary path (replace it): {fact}"
        _REGISTRY.observed[key].extend(facts)

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if item.get_closest_marker("reliability_scenario") is None:
        return
    _REGISTRY.ran = True
    key = _key(item)
    if report.when == "call" and report.passed:
        _REGISTRY.passed.add(key)
    elif report.failed:
        _REGISTRY.passed.discard(key)


def _committed_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        match = re.search(r"\| `([^`]+)` \|$", line)
        if line.startswith("| ") and match:
            rows[match.group(1)] = line
    return rows


def _committed_order(key: str, old: dict[str, str]) -> tuple:
    """Where a row not collected this run goes: its group's place, its file, its committed position (a run of
    a few files then rewrites only their rows, not the order of everyone else's)."""
    group = old[key].split(" | ")[0].removeprefix("| ").strip()
    rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
    return (rank, key.split("::")[0], list(old).index(key), key)


def render_table(committed: str) -> str:
    old = _committed_rows(committed)
    lines = []
    keys = set(_REGISTRY.collected) | {k for k in old if k.split("::")[0] not in _REGISTRY.files}
    ordered = sorted(
        keys,
        key=lambda k: _REGISTRY.collected[k].order if k in _REGISTRY.collected else _committed_order(k, old),
    )
    for key in ordered:
        row = _REGISTRY.collected.get(key)
        if row is not None and key in _REGISTRY.passed:
            observed = "; ".join(_REGISTRY.observed.get(key) or []) or "as expected"
            lines.append(Row(key, row.group, row.scenario, row.expected, observed).render())
        elif key in old:
            lines.append(old[key])  # not run (skipped, failed or deselected) this time: kept as committed
        else:
            lines.append(Row(key, row.group, row.scenario, row.expected, "NOT YET OBSERVED").render())
    return "\n".join([HEADER, *lines])


def _splice(doc: str, table: str) -> str:
    if BEGIN not in doc or END not in doc:
        return doc.rstrip("\n") + f"\n\n{BEGIN}\n{table}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _REGISTRY.ran:
        return
    committed = DOC.read_text() if DOC.exists() else ""
    updated = _splice(committed, render_table(committed))
    update = (
        session.config.getoption("--update-reliability-doc", default=False)
        or os.environ.get("UPDATE_RELIABILITY_DOC") == "1"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if updated == committed:
        return
    if update:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(updated)
        if reporter:
            reporter.write_line(f"reliability: rewrote the table in {DOC.relative_to(REPO)}")
        return
    old, new = _committed_rows(committed), _committed_rows(updated)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if reporter:
        reporter.write_line("")
        reporter.write_line(
            f"reliability: {DOC.relative_to(REPO)} is out of date with the tests "
            f"({len(changed)} row(s) differ: {', '.join(changed[:8])}{' …' if len(changed) > 8 else ''}).",
            red=True,
        )
        reporter.write_line(
            f"reliability: regenerate it with `{UPDATE_CMD}` and commit the result.", red=True
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- shared fixtures -------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path):
    """(db, settings, journal): an empty opencode DB and a journal, orphans repaired at once."""
    db = dbfactory.make_db(tmp_path / "opencode.db")
    settings = Settings(state_dir=tmp_path / "state", policy=PolicyConfig(orphan_grace=0))
    journal = Journal(settings.state_dir)
    yield db, settings, journal
    journal.close()


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Private XDG dirs, no OPENCODE_* settings from outside; structlog reset after in-process CLI runs."""
    dirs = private_env(
        tmp_path,
        monkeypatch,
        drop_prefix="OPENCODE_",
        drop=("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"),
    )
    yield dirs
    structlog.reset_defaults()
