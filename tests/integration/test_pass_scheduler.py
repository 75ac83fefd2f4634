"""The pass job on a real APScheduler: a pass asked for while one runs is never lost."""

from __future__ import annotations

import threading
import time

from watchdogd.triggers import POLL, RELOAD, Triggers, arm_job, pass_scheduler

WAIT = 30.0  # generous: a loaded 2-core machine; the poll is an hour away, so only the armed pass can come


def test_a_pass_asked_for_during_a_pass_runs_after_it_even_when_the_job_is_slow_to_return():
    triggers = Triggers(lambda at, force: arm_job(scheduler, at, force))
    reasons: list[frozenset[str]] = []
    second = threading.Event()

    def run() -> None:
        due = triggers.begin()
        reasons.append(due.reasons)
        if len(reasons) == 1:
            triggers.wake(RELOAD)  # e.g. SIGHUP during the pass: due at once
            triggers.finish()
            # The rest of the job's return path does I/O (publishing): APScheduler still counts the job as
            # running, and skips (for good) a run that comes due in this moment.
            time.sleep(0.05)
        else:
            triggers.finish()
            second.set()

    scheduler = pass_scheduler(run, 3600.0, triggers)
    scheduler.start()
    try:
        assert second.wait(WAIT), "the pass asked for during the first one never ran"
    finally:
        scheduler.shutdown(wait=False)
    assert reasons[:2] == [{POLL}, {RELOAD}]
