"""Reading a cue's time expression as a window of time (``retrieval.when``)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from iai_mcp.retrieval.when import TimeWindow, time_window, window_match

#: A Tuesday afternoon.
NOW = datetime(2023, 4, 18, 16, 50, tzinfo=timezone.utc)


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=timezone.utc)


def span(cue: str) -> tuple[datetime, datetime] | None:
    w = time_window(cue, NOW)
    return None if w is None else (w.start, w.end)


def test_a_cue_without_a_time_has_no_window():
    for cue in ("When did Caroline go to the support group?", "You may want to check the deploy notes",
                "What time do I wake up on Saturday mornings?", "any documentary for tonight?",
                "How many days had passed between Holi and the Sunday mass?", ""):
        assert span(cue) is None, cue


def test_relative_expressions_are_read_against_the_time_asked():
    assert span("what did I do last week?") == (day(2023, 4, 11), NOW + timedelta(seconds=1))
    assert span("plants I bought in the past month") == (day(2023, 3, 19), NOW + timedelta(seconds=1))
    assert span("the last 3 days") == (day(2023, 4, 15), NOW + timedelta(seconds=1))
    assert span("what did we decide yesterday") == (day(2023, 4, 17), day(2023, 4, 18))
    assert span("what did I note today") == (day(2023, 4, 18), NOW + timedelta(seconds=1))
    assert span("anything this week?") == (day(2023, 4, 17), NOW + timedelta(seconds=1))  # from Monday
    assert span("anything this month?") == (day(2023, 4, 1), NOW + timedelta(seconds=1))


def test_n_units_ago_is_a_window_around_that_point():
    assert span("the gym I joined 3 weeks ago") == (day(2023, 3, 28) - timedelta(days=3), day(2023, 3, 28) + timedelta(days=4))
    assert span("a book I read two days ago") == (day(2023, 4, 15), day(2023, 4, 18))
    start, end = span("a few months ago")
    assert start < day(2023, 1, 18) < end


def test_weekdays_with_last_or_this():
    assert span("Who did I meet during the lunch last Tuesday?") == (day(2023, 4, 11), day(2023, 4, 12))
    assert span("the call last Monday") == (day(2023, 4, 17), day(2023, 4, 18))
    assert span("this Tuesday's standup") == (day(2023, 4, 18), day(2023, 4, 19))


def test_months_dates_and_years():
    assert span("what happened in May") == (day(2022, 5, 1), day(2022, 6, 1))  # the last May that has begun
    assert span("what happened in April") == (day(2023, 4, 1), day(2023, 5, 1))
    assert span("What did I eat in May 2022?") == (day(2022, 5, 1), day(2022, 6, 1))
    assert span("Which airline did I fly most in March and April?") == (day(2023, 3, 1), day(2023, 5, 1))
    assert span("trip in December") == (day(2022, 12, 1), day(2023, 1, 1))
    assert span("What did Gina find on 1 February, 2023?") == (day(2023, 2, 1), day(2023, 2, 2))
    assert span("the event on May 25, 2023") == (day(2023, 5, 25), day(2023, 5, 26))
    assert span("the 31 June, 2023 party") == (day(2023, 6, 1), day(2023, 7, 1))  # no such day: the month
    assert span("how often did I swim in 2022?") == (day(2022, 1, 1), day(2023, 1, 1))


def test_the_window_keeps_its_phrase_and_refuses_to_be_empty():
    assert time_window("what did I do last week", NOW).phrase == "last week"
    with pytest.raises(ValueError):
        TimeWindow(NOW, NOW, "now")


def test_window_match_is_one_inside_and_fades_outside():
    w = TimeWindow(day(2023, 4, 10), day(2023, 4, 17), "last week")  # 7 days
    times = np.array([day(2023, 4, 12).timestamp(), day(2023, 4, 20).timestamp() + 0.5 * 86400,
                      day(2023, 3, 1).timestamp(), day(2023, 4, 9).timestamp()])
    match = window_match(times, w)
    assert match[0] == 1.0
    assert 0.0 < match[1] < 1.0
    assert match[2] == 0.0
    assert abs(match[3] - 6 / 7) < 0.01  # a day before a 7-day window
    assert match.dtype == np.float32
