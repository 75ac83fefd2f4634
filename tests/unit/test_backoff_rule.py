"""The per-part back-off: a pure value and pure functions (watchdogd/backoff.py), on a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from watchdogd.backoff import CAP_S, BackoffBook, after_attempt, delay_s, limits, reason_changed

T0 = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
RUN = ("ses_1", "msg_1")


def attempt(prior, reason="still busy", row="row-1", plan="abort", action_id=None, sent=False):
    return after_attempt(
        prior,
        row=row,
        plan=plan,
        run=RUN,
        reason=reason,
        action_id=action_id,
        sent=sent,
        now=datetime.now(UTC),
        first_s=1.0,
        cap_s=60.0,
    )


def test_delays_double_from_the_first_and_stop_at_the_cap():
    assert [delay_s(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert delay_s(10_000, 0.5, 3600.0) == 3600.0  # no overflow after months of retries


def test_limits_start_at_the_debounce_or_a_second_and_cap_at_an_hour_or_the_poll():
    assert limits(0.2, 60.0) == (1.0, CAP_S)
    assert limits(5.0, 60.0) == (5.0, CAP_S)
    assert limits(0.5, 7200.0) == (1.0, 7200.0)


def test_each_attempt_waits_longer_and_keeps_what_was_sent():
    with freeze_time(T0) as frozen:
        first = attempt(None, action_id=7, sent=True)
        assert (first.attempts, first.retry_at, first.action_id, first.sent) == (
            1,
            T0 + timedelta(seconds=1),
            7,
            True,
        )
        assert first.waiting(datetime.now(UTC))
        frozen.tick(1.0)
        assert not first.waiting(datetime.now(UTC))
        second = attempt(first, reason="still busy after #7")
        assert second.attempts == 2 and second.retry_at == T0 + timedelta(seconds=3)
        assert (second.action_id, second.sent) == (
            7,
            True,
        )  # the abort is never sent again inside the back-off


def test_a_reason_is_news_once():
    with freeze_time(T0):
        first = attempt(None)
    assert reason_changed(None, "still busy")
    assert not reason_changed(first, "still busy")
    assert reason_changed(first, "its server is no longer known")


def test_a_changed_row_or_plan_resets_the_back_off():
    book = BackoffBook()
    with freeze_time(T0):
        book.record("db", "prt_1", attempt(None))
        assert book.current("db", "prt_1", "row-1", "abort", RUN).attempts == 1
        assert book.current("db", "prt_1", "row-1", "db-repair", RUN) is None  # another plan
        book.record("db", "prt_1", attempt(None))
        assert book.current("db", "prt_1", "row-2", "abort", RUN) is None  # the row changed
        assert len(book) == 0  # the stale entry is dropped


def test_another_part_of_an_aborted_run_is_not_aborted_again():
    book = BackoffBook()
    with freeze_time(T0):
        book.record("db", "prt_1", attempt(None, action_id=3, sent=True))
        sibling = book.current("db", "prt_2", "row-9", "abort", RUN)
        assert sibling is not None and sibling.sent and sibling.action_id == 3 and sibling.attempts == 0
        assert book.current("db", "prt_3", "row-9", "abort", ("ses_1", "msg_2")) is None  # another run
        assert (
            book.current("db", "prt_4", "row-9", "reject-question", RUN) is None
        )  # its own question: rejected


def test_only_retries_ahead_are_deadlines_and_gone_parts_are_forgotten():
    book = BackoffBook()
    with freeze_time(T0) as frozen:
        book.record("db", "prt_1", attempt(None))
        book.record("db", "prt_2", attempt(attempt(None)))
        book.record("other", "prt_1", attempt(None))
        assert book.next_retry(datetime.now(UTC)) == T0 + timedelta(seconds=1)
        frozen.tick(1.5)
        assert book.next_retry(datetime.now(UTC)) == T0 + timedelta(seconds=2)
        frozen.tick(1.0)
        assert book.next_retry(datetime.now(UTC)) is None  # a retry already due never schedules a pass again
    book.keep_only("db", {"prt_2"})
    assert len(book) == 2 and book.current("db", "prt_1", "row-1", "abort", RUN) is None
