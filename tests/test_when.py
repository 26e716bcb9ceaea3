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


ODD_CUES = [
    "what happened 10000 years ago", "plans for December 9999", "31 December, 9999", "on 31 December, 9999",
    "December 31, 9999", "1 January, 0000", "in May 0000", "in May 9999", "the last 100000 years",
    "9" * 5000 + " days ago", "the past " + "9" * 5000 + " weeks", "99999999999999999999 months ago",
    "-3 days ago", "0 days ago", "last 0 days", "in 0000", "in 9999", "Jan 0", "Feb 30, 2023",
    "٣ days ago", "３ weeks ago", "last ٩٩٩٩٩٩ years", "in December ٩٩٩٩", "May 9999", "31 Dec 9999",
    "1 Jan 1", "12 May, 0001", "\u0000 May", "last\u00a0week", "🗓 in March ⏰", "December 10000",
]


@pytest.mark.parametrize("now", [NOW, datetime(9999, 12, 31, 23, 0), datetime(1, 1, 1, 1, 0),
                                 datetime(2023, 12, 31, 23, 59, tzinfo=timezone.utc)])
def test_no_cue_makes_time_window_raise(now):
    """Issue 10 finding 1: a time word must never make recall fail. Whatever
    the cue, the answer is no window or a valid one."""
    for cue in ODD_CUES:
        w = time_window(cue, now)
        assert w is None or (isinstance(w, TimeWindow) and w.start < w.end), cue


def test_absurd_times_are_not_read_as_windows():
    assert span("what happened 10000 years ago") is None
    assert span("plans for December 9999") is None
    assert span("31 December, 9999") is None
    assert span("٣ days ago") == span("3 days ago") is not None  # any script's digits


def test_ordinary_words_are_not_months_or_days():
    """Issue 10 finding 5: names, modal verbs and common words are not months;
    "the last day of X" is not the past day."""
    for cue in ("What did Jan say about the deploy?", "May I ask what we decided", "May we skip the retro?",
                "don't mar the design", "the march on the capital", "the oct tree",
                "the last day of the offsite", "my last day at the old job", "the last week of the course",
                "Did Jan's review land?", "we may march on"):
        assert span(cue) is None, cue


def test_true_month_and_day_expressions_still_parse():
    assert span("what happened in May") == (day(2022, 5, 1), day(2022, 6, 1))
    assert span("May 2023") == (day(2023, 5, 1), day(2023, 6, 1))
    assert span("on 7 July, 2023") == (day(2023, 7, 7), day(2023, 7, 8))
    assert span("last week") == (day(2023, 4, 11), NOW + timedelta(seconds=1))
    assert span("3 days ago") == (day(2023, 4, 14), day(2023, 4, 17))
    assert span("in March and April") == (day(2023, 3, 1), day(2023, 5, 1))
    assert span("Jan 5") == (day(2023, 1, 1), day(2023, 2, 1))
    assert span("what did we ship on 5 Jan") == (day(2023, 1, 1), day(2023, 2, 1))
    assert span("since Oct") == (day(2022, 10, 1), day(2022, 11, 1))
    assert span("the Mar 2022 offsite") == (day(2022, 3, 1), day(2022, 4, 1))
    assert span("what did I do in the last day?") == (day(2023, 4, 17), NOW + timedelta(seconds=1))
    assert span("May we meet in June?") == (day(2022, 6, 1), day(2022, 7, 1))
