"""On-call schedules: rotations, windows, overrides, the board and the iCalendar feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from icalendar import Calendar

from portal.auth.models import User
from portal.extensions import db
from portal.oncall.ical import feed, new_feed_token, schedule_for_feed_token
from portal.oncall.models import Layer, LayerMember, Override, Schedule
from portal.oncall.schedules import board, on_call, schedule_for, shifts

MONDAY = date(2026, 1, 5)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def layer(*members: User, starts_on: date = MONDAY, **columns) -> dict:
    """A layer's spec for :func:`make_schedule`: members in turn, then Layer columns."""
    return {"members": members, "starts_on": starts_on, **columns}


def override(user: User, starts_at: datetime, ends_at: datetime, replaces: User | None = None):
    return {
        "user_id": user.id,
        "replaces_user_id": getattr(replaces, "id", None),
        "starts_at": starts_at,
        "ends_at": ends_at,
    }


def make_schedule(
    app,
    *layers: dict,
    name: str = "General",
    subspecialty: str = "general",
    timezone: str = "UTC",
    overrides: tuple[dict, ...] = (),
) -> int:
    """Store a schedule with ``layers`` (positions 1, 2, ...) and ``overrides``; return its id."""
    with app.app_context():
        schedule = Schedule(name=name, subspecialty=subspecialty, timezone=timezone)
        for position, spec in enumerate(layers, start=1):
            columns = {key: value for key, value in spec.items() if key != "members"}
            added = Layer(position=position, **columns)
            added.members = [
                LayerMember(position=turn, user_id=user.id)
                for turn, user in enumerate(spec["members"])
            ]
            schedule.layers.append(added)
        schedule.overrides = [Override(**fields) for fields in overrides]
        db.session.add(schedule)
        db.session.commit()
        return schedule.id


def who(found) -> list[tuple]:
    return [(s.user.name, s.starts_at, s.ends_at, s.layer, s.position) for s in found]


def names(found) -> list[str]:
    return [shift.user.name for shift in found]


@pytest.fixture
def rads(create_user):
    """Radiologists named A, B, C and D."""
    return {n: create_user("radiologist", name=n) for n in "ABCD"}


# --- rotations ------------------------------------------------------------------
def test_members_take_turns_at_the_handoff(app, rads):
    sid = make_schedule(app, layer(rads["A"], rads["B"], handoff_time=time(8), rotation_days=7))
    with app.app_context():
        found = shifts(db.session.get(Schedule, sid), utc(2026, 1, 6), utc(2026, 1, 20))
        assert who(found) == [
            ("A", utc(2026, 1, 5, 8), utc(2026, 1, 12, 8), "Layer 1", 1),
            ("B", utc(2026, 1, 12, 8), utc(2026, 1, 19, 8), "Layer 1", 1),
            ("A", utc(2026, 1, 19, 8), utc(2026, 1, 26, 8), "Layer 1", 1),
        ]


def test_handoff_follows_the_local_clock_across_a_dst_change(app, rads):
    sid = make_schedule(
        app,
        layer(rads["A"], rads["B"], starts_on=date(2026, 3, 2), handoff_time=time(8), name="Days"),
        timezone="America/New_York",
    )
    with app.app_context():
        found = shifts(db.session.get(Schedule, sid), utc(2026, 3, 2), utc(2026, 3, 16))
        # 08:00 EST is 13:00 UTC; after 8 March, 08:00 EDT is 12:00 UTC.
        assert who(found) == [
            ("A", utc(2026, 3, 2, 13), utc(2026, 3, 9, 12), "Days", 1),
            ("B", utc(2026, 3, 9, 12), utc(2026, 3, 16, 12), "Days", 1),
        ]
        assert found[0].ends_at - found[0].starts_at == timedelta(days=7, hours=-1)


def test_a_layer_has_no_shifts_before_it_starts(app, rads):
    sid = make_schedule(app, layer(rads["A"], rads["B"], starts_on=date(2026, 2, 1)))
    with app.app_context():
        schedule = db.session.get(Schedule, sid)
        assert shifts(schedule, utc(2026, 1, 1), utc(2026, 2, 1)) == []
        assert on_call(schedule, utc(2026, 1, 31, 12)) == []
        first = shifts(schedule, utc(2026, 1, 25), utc(2026, 2, 3))
        assert who(first) == [("A", utc(2026, 2, 1, 8), utc(2026, 2, 8, 8), "Layer 1", 1)]


# --- windows --------------------------------------------------------------------
def test_a_window_crossing_midnight_covers_each_night(app, rads):
    sid = make_schedule(app, layer(rads["A"], window_start=time(20), window_end=time(8)))
    with app.app_context():
        found = shifts(db.session.get(Schedule, sid), utc(2026, 1, 6, 3), utc(2026, 1, 8))
        assert [(s.starts_at, s.ends_at) for s in found] == [
            (utc(2026, 1, 5, 20), utc(2026, 1, 6, 8)),
            (utc(2026, 1, 6, 20), utc(2026, 1, 7, 8)),
            (utc(2026, 1, 7, 20), utc(2026, 1, 8, 8)),
        ]


def test_members_hand_off_inside_a_window(app, rads):
    nights = layer(
        rads["A"],
        rads["B"],
        handoff_time=time(0),
        rotation_days=1,
        window_start=time(20),
        window_end=time(8),
    )
    sid = make_schedule(app, nights)
    with app.app_context():
        found = shifts(db.session.get(Schedule, sid), utc(2026, 1, 5, 20), utc(2026, 1, 6, 8))
        assert [(s.user.name, s.starts_at, s.ends_at) for s in found] == [
            ("A", utc(2026, 1, 5, 20), utc(2026, 1, 6)),
            ("B", utc(2026, 1, 6), utc(2026, 1, 6, 8)),
        ]


def test_follow_the_sun_two_layers_in_two_time_zones(app, rads):
    """Sydney covers London's night, London its day, on London's clock (GMT and BST)."""
    sydney = layer(rads["A"], name="Sydney", window_start=time(21), window_end=time(9))
    london = layer(rads["B"], name="London", window_start=time(9), window_end=time(21))
    sid = make_schedule(app, sydney, london, timezone="Europe/London")
    with app.app_context():
        schedule = db.session.get(Schedule, sid)
        for day in (utc(2026, 1, 14), utc(2026, 7, 1)):
            for hour in range(24):
                assert len(on_call(schedule, day + timedelta(hours=hour))) == 1
        assert names(on_call(schedule, utc(2026, 1, 14, 8, 30))) == ["A"]  # 08:30 GMT
        assert names(on_call(schedule, utc(2026, 7, 1, 8, 30))) == ["B"]  # 09:30 BST
        assert names(on_call(schedule, utc(2026, 7, 1, 20, 30))) == ["A"]  # 21:30 BST
        (night,) = on_call(schedule, utc(2026, 7, 1, 23))
        assert (night.layer, night.position) == ("Sydney", 1)
        assert (night.starts_at, night.ends_at) == (utc(2026, 7, 1, 20), utc(2026, 7, 2, 8))


# --- overrides and accounts -----------------------------------------------------
def test_a_swap_splits_the_replaced_shift(app, rads):
    a, b = rads["A"], rads["B"]
    swap = override(b, utc(2026, 1, 6, 12), utc(2026, 1, 7, 12), replaces=a)
    sid = make_schedule(app, layer(a, b, name="Primary"), overrides=(swap,))
    with app.app_context():
        found = shifts(db.session.get(Schedule, sid), utc(2026, 1, 5, 8), utc(2026, 1, 12, 8))
        assert who(found) == [
            ("A", utc(2026, 1, 5, 8), utc(2026, 1, 6, 12), "Primary", 1),
            ("B", utc(2026, 1, 6, 12), utc(2026, 1, 7, 12), "Primary", 1),
            ("A", utc(2026, 1, 7, 12), utc(2026, 1, 12, 8), "Primary", 1),
        ]


def test_an_ad_hoc_specialist_is_added_on_top(app, rads):
    extra = override(rads["C"], utc(2026, 1, 7, 9), utc(2026, 1, 7, 17))
    sid = make_schedule(app, layer(rads["A"], rads["B"]), overrides=(extra,))
    with app.app_context():
        schedule = db.session.get(Schedule, sid)
        assert who(on_call(schedule, utc(2026, 1, 7, 10))) == [
            ("C", utc(2026, 1, 7, 9), utc(2026, 1, 7, 17), "Override", 0),
            ("A", utc(2026, 1, 5, 8), utc(2026, 1, 12, 8), "Layer 1", 1),
        ]
        assert names(on_call(schedule, utc(2026, 1, 7, 17))) == ["A"]


def test_an_inactive_account_is_never_on_call(app, rads):
    a, b, c = rads["A"], rads["B"], rads["C"]
    cover = override(c, utc(2026, 1, 8), utc(2026, 1, 9), replaces=a)
    sid = make_schedule(app, layer(a, b), overrides=(cover,))
    with app.app_context():
        db.session.get(User, a.id).active = False
        db.session.commit()
        schedule = db.session.get(Schedule, sid)
        assert on_call(schedule, utc(2026, 1, 6)) == []  # nobody, rather than A
        assert names(on_call(schedule, utc(2026, 1, 8, 12))) == ["C"]  # C covers for A
        assert names(on_call(schedule, utc(2026, 1, 13))) == ["B"]


# --- finding schedules and the board ----------------------------------------------
def test_schedule_for_falls_back_to_general(app, rads):
    neuro = make_schedule(app, layer(rads["A"]), name="Neuro", subspecialty="neuro")
    with app.app_context():
        assert schedule_for("neuro").id == neuro
        assert schedule_for("chest") is None
    general = make_schedule(app, layer(rads["B"]))
    with app.app_context():
        assert schedule_for("chest").id == general


def test_the_board_shows_who_is_on_call_now_and_next(app, rads):
    make_schedule(app, layer(rads["C"]), name="Neuro", subspecialty="neuro")
    make_schedule(
        app,
        layer(rads["A"], rads["B"], name="Primary"),
        layer(rads["D"], starts_on=date(2026, 1, 12), name="Backup"),
    )
    with app.app_context():
        rows = board(utc(2026, 1, 7, 10))
        assert [row.schedule.name for row in rows] == ["General", "Neuro"]
        general, neuro = rows
        assert [(s.user.name, s.layer) for s in general.now] == [("A", "Primary")]
        assert [(s.user.name, s.layer, s.starts_at) for s in general.next] == [
            ("B", "Primary", utc(2026, 1, 12, 8)),
            ("D", "Backup", utc(2026, 1, 12, 8)),
        ]
        assert names(neuro.now) == ["C"] and names(neuro.next) == ["C"]


# --- the iCalendar feed -----------------------------------------------------------
def test_the_feed_lists_each_shift_in_utc(app, rads):
    sid = make_schedule(
        app,
        layer(rads["A"], rads["B"], starts_on=date(2026, 3, 2), name="Days"),
        name="Chest",
        timezone="America/New_York",
    )
    with app.app_context():
        schedule = db.session.get(Schedule, sid)
        raw = feed(schedule, utc(2026, 3, 2), utc(2026, 3, 16))
        calendar = Calendar.from_ical(raw)
        events = calendar.walk("VEVENT")
        assert str(calendar["X-WR-CALNAME"]) == "On call: Chest"
        assert [str(e["SUMMARY"]) for e in events] == [
            "On call: A (Chest, Days)",
            "On call: B (Chest, Days)",
        ]
        assert [(e.decoded("DTSTART"), e.decoded("DTEND")) for e in events] == [
            (utc(2026, 3, 2, 13), utc(2026, 3, 9, 12)),
            (utc(2026, 3, 9, 12), utc(2026, 3, 16, 12)),
        ]
        assert b"DTSTART:20260302T130000Z" in raw
        uids = [str(e["UID"]) for e in events]
        assert len(set(uids)) == 2
        again = Calendar.from_ical(feed(schedule, utc(2026, 3, 1), utc(2026, 3, 20)))
        assert set(uids) <= {str(e["UID"]) for e in again.walk("VEVENT")}


def test_a_feed_token_finds_its_schedule_until_replaced(app, rads):
    sid = make_schedule(app, layer(rads["A"]))
    with app.app_context():
        schedule = db.session.get(Schedule, sid)
        first = new_feed_token(schedule)
        db.session.commit()
        assert len(first) >= 43 and first not in schedule.feed_token_hash
        assert schedule_for_feed_token(first).id == sid
        second = new_feed_token(schedule)
        db.session.commit()
        assert schedule_for_feed_token(second).id == sid
        assert schedule_for_feed_token(first) is None
        assert schedule_for_feed_token("") is None
        assert schedule_for_feed_token(second[:-1]) is None
