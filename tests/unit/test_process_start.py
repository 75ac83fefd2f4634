"""A process's start on the wall clock of its moment, across wall-clock steps (watchdogd/opencode/process_start.py)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from tests import dbfactory as f
from watchdogd import clock_steps
from watchdogd.clock_steps import recall, remember
from watchdogd.models import OwnerKind
from watchdogd.opencode.holders import find_holders
from watchdogd.opencode.process_start import Epoch, WallClockSteps, start_ticks
from watchdogd.policy import ownership_from_holders

BTIME = 1_790_000_000.0  # wall clock minus boot clock before the step
HOUR = 3600.0


class Script:
    """The (boot clock, wall clock) readings a WallClockSteps sees, one per observe()."""

    def __init__(self, *readings: tuple[float, float]):
        self.readings = list(readings)

    def __call__(self) -> tuple[float, float]:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def stepped(step: float) -> WallClockSteps:
    """Seen at boot seconds 100 and 200 on one offset, then at 300 after a step of `step` seconds."""
    clock = WallClockSteps(Script((100, BTIME + 100), (200, BTIME + 200), (300, BTIME + 300 + step)))
    for _ in range(3):
        clock.observe()
    return clock


def test_without_a_step_a_start_is_btime_plus_its_boot_seconds():
    clock = WallClockSteps(Script((100, BTIME + 100)))
    clock.observe()
    assert clock.wall_time(50) == BTIME + 50
    assert clock.wall_time(150) == BTIME + 150


def test_a_start_before_a_forward_step_keeps_the_wall_clock_of_then():
    clock = stepped(HOUR)
    assert [len(clock.epochs), clock.epochs[-1].offset] == [2, BTIME + HOUR]
    assert clock.wall_time(150) == BTIME + 150  # not an hour later: it did not start after its parts
    assert clock.wall_time(50) == BTIME + 50  # before the first sighting: the first offset known


def test_a_start_after_a_step_is_on_the_new_wall_clock():
    assert stepped(HOUR).wall_time(300) == BTIME + 300 + HOUR
    assert stepped(-HOUR).wall_time(300) == BTIME + 300 - HOUR


def test_a_start_between_the_sightings_around_a_step_takes_the_earlier_wall_time():
    assert stepped(HOUR).wall_time(250) == BTIME + 250  # earlier: still a possible owner
    assert stepped(-HOUR).wall_time(250) == BTIME + 250 - HOUR


def test_jitter_below_the_step_threshold_is_one_epoch():
    clock = WallClockSteps(Script((100, BTIME + 100), (200, BTIME + 200.2), (300, BTIME + 299.9)))
    for _ in range(3):
        clock.observe()
    assert len(clock.epochs) == 1 and clock.epochs[0].last == 300


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_live_holder_is_not_restarted_after_a_forward_step(tmp_path):
    """The real holder, its real start ticks; only the clock readings are scripted (+1 h after the part)."""
    db = f.make_db(tmp_path / "opencode.db")
    boot, wall = time.clock_gettime(time.CLOCK_BOOTTIME), time.clock_gettime(time.CLOCK_REALTIME)
    with f.holder_process(db) as proc:
        stuck = f.stuck_question(db, age_s=0)
        assert start_ticks(proc.pid) is not None
        now_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        clock = WallClockSteps(Script((boot, wall), (now_boot, wall - boot + now_boot + HOUR)))
        clock.observe()
        [holder] = [h for h in find_holders([db], clock=clock)[db] if h.pid == proc.pid]
    assert len(clock.epochs) == 2
    assert holder.started_at <= stuck.start_ms / 1000 + 1
    assert ownership_from_holders(stuck.start_ms, [holder]).kind is OwnerKind.HELD


def test_merge_joins_the_same_offset_and_keeps_steps_in_boot_clock_order():
    clock = WallClockSteps(Script((500, BTIME + 500 + HOUR)))
    clock.observe()
    clock.merge([Epoch(100, 200, BTIME), Epoch(300, 400, BTIME + HOUR)])
    assert [(e.first, e.last, e.offset) for e in clock.epochs] == [
        (100, 200, BTIME),
        (300, 500, BTIME + HOUR),
    ]
    assert clock.wall_time(150) == BTIME + 150


def test_a_later_process_of_the_boot_sees_the_step_an_earlier_one_saw(tmp_path):
    """The daemon saw the step; a `reap` started after it recalls it from the state dir."""
    clock_steps._saved.clear()
    remember(tmp_path, stepped(HOUR))
    path = tmp_path / "clock-steps.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    later = WallClockSteps(Script((400, BTIME + 400 + HOUR)))
    later.observe()
    assert later.wall_time(150) == BTIME + 150 + HOUR  # alone, it cannot know
    recall(tmp_path, later)
    assert later.wall_time(150) == BTIME + 150


def test_steps_of_another_boot_or_a_damaged_file_are_not_used(tmp_path):
    clock_steps._saved.clear()
    remember(tmp_path, stepped(HOUR))
    path = tmp_path / "clock-steps.json"
    saved = json.loads(path.read_text())
    for text in (json.dumps({**saved, "boot_id": "another-boot"}), "{not json", '{"boot_id": 1}', "[]"):
        path.write_text(text)
        later = WallClockSteps(Script((400, BTIME + 400 + HOUR)))
        later.observe()
        recall(tmp_path, later)
        assert len(later.epochs) == 1, text


def test_a_symlinked_steps_file_is_neither_followed_nor_written_through(tmp_path):
    clock_steps._saved.clear()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("theirs")
    state = tmp_path / "state"
    state.mkdir()
    (state / "clock-steps.json").symlink_to(elsewhere)
    later = WallClockSteps(Script((400, BTIME + 400)))
    later.observe()
    recall(state, later)
    remember(state, stepped(HOUR))
    assert elsewhere.read_text() == "theirs"
    assert not (state / "clock-steps.json").is_symlink()
