"""On-call web pages: the board, schedules, policies, the iCalendar feed, paging profiles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.links.pin import pin_matches
from portal.notifications.channels import Delivery, register_channel
from portal.notifications.models import Status
from portal.oncall.models import EscalationPolicy, Layer, PagingProfile, Schedule
from portal.oncall.policies import policy_for
from tests.conftest import AuthActions, totp_now
from tests.paging_support import drain, make_profile, outbox
from tests.test_auth import audit_events, field_errors, location, post, text

MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # London on GMT, New York on EST
MOBILE = "+447700900123"
ADMIN_PAGES = ("/admin/schedules", "/admin/schedules/1", "/admin/escalation")
STAFF_PAGES = ("/oncall", "/profile/paging")


# --- helpers and fixtures -------------------------------------------------------------------
@pytest.fixture
def monday(frozen_clock):
    frozen_clock.set(MONDAY_NOON)
    return frozen_clock


@pytest.fixture
def people(create_user):
    return {
        "admin": create_user("admin", email="ada@example.org", name="Ada Admin"),
        "rose": create_user("radiologist", email="rose@example.org", name="Rose Reader"),
        "sam": create_user("radiologist", email="sam@example.org", name="Sam Scan"),
        "tia": create_user("radiologist", email="tia@example.org", name="Tia Tomo"),
        "pat": create_user("patient", email="pat@example.org", name="Pat Patient"),
        "phil": create_user("physician", email="phil@clinic.example", name="Phil Doc"),
    }


def signed_in(app, user):
    client = app.test_client()
    AuthActions(client).login(user)
    return client


@pytest.fixture
def admin_client(app, people, monday):
    return signed_in(app, people["admin"])


@pytest.fixture
def rose_client(app, people, monday):
    return signed_in(app, people["rose"])


def profile_of(app, user) -> PagingProfile | None:
    with app.app_context():
        profile = db.session.get(PagingProfile, user.id)
        if profile is not None:
            db.session.expunge(profile)
        return profile


def create_schedule(client, name="General on call", subspecialty="general", zone="Europe/London"):
    data = {"schedule-name": name, "schedule-subspecialty": subspecialty, "schedule-timezone": zone}
    return post(client, "/admin/schedules", data)


def schedule_id(response) -> int:
    return int(re.fullmatch(r"/admin/schedules/(\d+)", location(response)).group(1))


def add_layer(client, sid: int, **fields):
    data = {
        "layer-name": "Primary",
        "layer-position": "1",
        "layer-rotation_days": "7",
        "layer-starts_on": "2026-02-16",
        "layer-handoff_time": "08:00",
        "layer-window_start": "",
        "layer-window_end": "",
        **{f"layer-{key}": value for key, value in fields.items()},
    }
    return post(client, f"/admin/schedules/{sid}/layers", data, page=f"/admin/schedules/{sid}")


def layer_ids(app, sid: int) -> list[int]:
    with app.app_context():
        return [layer.id for layer in db.session.get(Schedule, sid).layers]


def set_members(client, sid: int, layer_id: int, users):
    data = {f"layer{layer_id}-members-{i}": str(user.id) for i, user in enumerate(users)}
    data[f"layer{layer_id}-members-{len(users)}"] = ""
    path = f"/admin/schedules/{sid}/layers/{layer_id}/members"
    return post(client, path, data, page=f"/admin/schedules/{sid}")


def add_override(
    client, sid: int, user, replaces=None, starts="2026-03-02T10:00", ends="", note=""
):
    data = {
        "override-user": str(user.id),
        "override-replaces": str(replaces.id) if replaces else "",
        "override-starts_at": starts,
        "override-ends_at": ends or "2026-03-02T18:00",
        "override-note": note,
    }
    return post(client, f"/admin/schedules/{sid}/overrides", data, page=f"/admin/schedules/{sid}")


@pytest.fixture
def weekly(app, admin_client, people):
    """A general schedule in London: Rose then Sam, weekly from Monday 16 February at 08:00."""
    sid = schedule_id(create_schedule(admin_client))
    assert location(add_layer(admin_client, sid)) == f"/admin/schedules/{sid}"
    (layer_id,) = layer_ids(app, sid)
    assert (
        set_members(admin_client, sid, layer_id, [people["rose"], people["sam"]]).status_code == 302
    )
    return sid


def board_section(html: str, heading: str) -> str:
    """The part of the board between ``<h3>heading</h3>`` and the next heading."""
    match = re.search(rf"<h3>{heading}</h3>(.*?)(?:<h3>|</section>)", html, re.S)
    assert match, html
    return match.group(1)


def names_in(fragment: str) -> list[str]:
    return re.findall(r"<strong>([^<]+)</strong>", fragment)


# --- who may see what ---------------------------------------------------------------------
@pytest.mark.parametrize("role", ["patient", "physician"])
@pytest.mark.parametrize("path", STAFF_PAGES + ADMIN_PAGES)
def test_patients_and_physicians_are_refused(app, people, role, path):
    client = signed_in(app, people["pat" if role == "patient" else "phil"])
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_radiologists_cannot_reach_the_admin_pages(rose_client, path):
    assert rose_client.get(path).status_code == 403


def test_radiologists_cannot_change_schedules_or_policies(app, rose_client, weekly):
    data = {"schedule-name": "Mine", "schedule-subspecialty": "neuro", "schedule-timezone": "UTC"}
    assert post(rose_client, "/admin/schedules", data, page="/oncall").status_code == 403
    policy = {"stat-wait_minutes": "1", "stat-rounds": "1"}
    assert post(rose_client, "/admin/escalation/stat", policy, page="/oncall").status_code == 403
    with app.app_context():
        assert db.session.scalars(select(EscalationPolicy)).all() == []


@pytest.mark.parametrize("path", STAFF_PAGES + ADMIN_PAGES)
def test_signed_out_visitors_are_sent_to_sign_in(client, path):
    assert location(client.get(path)) == "/login"


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_radiologists_and_admins_see_the_staff_pages(app, people, monday, path):
    for who in ("rose", "admin"):
        assert signed_in(app, people[who]).get(path).status_code == 200


def test_the_navigation_links_the_pages_by_role(app, people, monday):
    admin_nav = text(signed_in(app, people["admin"]).get("/"))
    for path in ("/oncall", "/profile/paging", "/admin/schedules", "/admin/escalation"):
        assert f'href="{path}"' in admin_nav
    rose_nav = text(signed_in(app, people["rose"]).get("/"))
    assert 'href="/oncall"' in rose_nav and 'href="/profile/paging"' in rose_nav
    assert 'href="/admin/schedules"' not in rose_nav
    assert 'href="/oncall"' not in text(signed_in(app, people["pat"]).get("/"))


# --- schedules, layers, members, overrides, the board -------------------------------------
def test_an_empty_board_says_so(rose_client):
    assert "no on-call schedules yet" in text(rose_client.get("/oncall"))


def test_the_board_shows_now_and_next_in_the_viewers_time_zone(app, people, weekly):
    make_profile(app, people["rose"], timezone="America/New_York")
    html = text(signed_in(app, people["rose"]).get("/oncall"))
    assert "America/New_York (EST)" in html
    assert names_in(board_section(html, "Now")) == ["Rose Reader"]
    assert "(you)" in board_section(html, "Now")
    next_up = board_section(html, "Next")
    assert names_in(next_up) == ["Sam Scan"]
    # 08:00 in London on 9 March is 04:00 in New York, on daylight time since 8 March.
    assert "Mon 09 Mar 04:00" in next_up


def test_the_schedule_page_lists_the_layers_and_previews_two_weeks(admin_client, weekly):
    html = text(admin_client.get(f"/admin/schedules/{weekly}"))
    assert "1. Primary" in html and "7 days, from 2026-02-16" in html
    assert "Europe/London (GMT)" in html
    preview = html.split('id="preview-heading"')[1].split("</table>")[0]
    assert preview.count("<tr>") - 1 == 3  # Rose until the 9th, Sam, Rose again from the 16th
    assert "Mon 02 Mar 08:00" in preview and "Mon 16 Mar 08:00" in preview
    assert re.search(r'<option selected value="\d+">Rose Reader', html)


def test_overrides_change_who_is_on_call(app, admin_client, people, weekly):
    assert location(add_override(admin_client, weekly, people["tia"], note="ad hoc")) == (
        f"/admin/schedules/{weekly}"
    )
    swap = add_override(
        admin_client, weekly, people["sam"], replaces=people["rose"], ends="2026-03-03T08:00"
    )
    assert swap.status_code == 302
    html = text(admin_client.get("/oncall"))
    assert sorted(names_in(board_section(html, "Now"))) == ["Sam Scan", "Tia Tomo"]
    page = text(admin_client.get(f"/admin/schedules/{weekly}"))
    assert "in place of Rose Reader" in page and "added on top" in page and "ad hoc" in page
    actions = [e["details"] for e in audit_events(app, "oncall.override_added")]
    assert [d["user"] for d in actions] == [people["tia"].id, people["sam"].id]
    # 10:00 in London (GMT) is stored as 10:00 UTC.
    assert actions[0]["starts_at"] == "2026-03-02T10:00:00+00:00"


def test_removing_an_override_and_a_layer(app, admin_client, people, weekly):
    add_override(admin_client, weekly, people["tia"])
    with app.app_context():
        schedule = db.session.get(Schedule, weekly)
        override_id, layer_id = schedule.overrides[0].id, schedule.layers[0].id
    page = f"/admin/schedules/{weekly}"
    post(admin_client, f"{page}/overrides/{override_id}/remove", {}, page=page)
    post(admin_client, f"{page}/layers/{layer_id}/remove", {}, page=page)
    assert names_in(board_section(text(admin_client.get("/oncall")), "Now")) == []
    with app.app_context():
        assert db.session.get(Layer, layer_id) is None
    assert audit_events(app, "oncall.override_removed")
    assert audit_events(app, "oncall.layer_removed")


def test_a_layer_of_another_schedule_is_not_found(app, admin_client, weekly):
    other = schedule_id(create_schedule(admin_client, "Neuro", "neuro"))
    (layer_id,) = layer_ids(app, weekly)
    path = f"/admin/schedules/{other}/layers/{layer_id}/remove"
    assert post(admin_client, path, {}, page=f"/admin/schedules/{other}").status_code == 404


def test_schedule_changes_are_audited(app, admin_client, people, weekly):
    created = audit_events(app, "oncall.schedule_created")[0]
    assert created["actor_id"] == people["admin"].id
    assert created["details"]["timezone"] == "Europe/London"
    assert audit_events(app, "oncall.layer_added")[0]["details"]["position"] == 1
    members = audit_events(app, "oncall.layer_members_set")[0]["details"]["members"]
    assert members == [people["rose"].id, people["sam"].id]
    data = {
        "schedule-name": "General",
        "schedule-subspecialty": "general",
        "schedule-timezone": "UTC",
    }
    assert (
        post(
            admin_client, f"/admin/schedules/{weekly}/edit", data, page="/admin/schedules"
        ).status_code
        == 302
    )
    assert audit_events(app, "oncall.schedule_changed")[0]["details"]["timezone"] == "UTC"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"schedule-name": ""}, "schedule-name", "Give the schedule a name."),
        ({"schedule-timezone": "Mars/Olympus"}, "schedule-timezone", "time zone name"),
    ],
)
def test_schedule_form_errors(admin_client, fields, field, message):
    data = {"schedule-name": "X", "schedule-subspecialty": "general", "schedule-timezone": "UTC"}
    response = post(admin_client, "/admin/schedules", {**data, **fields})
    assert response.status_code == 400
    assert message in field_errors(text(response), field)


def test_a_subspecialty_has_one_schedule(admin_client, weekly):
    response = create_schedule(admin_client, "General again")
    assert response.status_code == 400
    assert "General already has a schedule: General on call" in text(response)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"position": "1"}, "layer at position 1 already"),
        ({"position": "2", "window_start": "20:00"}, "both ends of the daily window"),
        ({"position": "2", "rotation_days": "0"}, "Between 1 and 366 days."),
        ({"position": "2", "starts_on": ""}, "Give the first day."),
    ],
)
def test_layer_form_errors(admin_client, weekly, fields, message):
    response = add_layer(admin_client, weekly, **fields)
    assert response.status_code == 400
    assert message in text(response)


def test_members_must_be_distinct_radiologists(app, admin_client, people, weekly):
    (layer_id,) = layer_ids(app, weekly)
    twice = set_members(admin_client, weekly, layer_id, [people["rose"], people["rose"]])
    assert twice.status_code == 400 and "only once" in text(twice)
    patient = set_members(admin_client, weekly, layer_id, [people["pat"]])
    assert patient.status_code == 400 and "Not a valid choice" in text(patient)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ends": "2026-03-02T09:00"}, "must end after it starts"),
        (
            {"starts": "2026-03-29T01:30", "ends": "2026-03-29T05:00"},
            "does not exist in Europe/London",
        ),
        ({"starts": ""}, "Give the start."),
        ({"replaces": "tia"}, "cannot replace themselves"),
    ],
)
def test_override_form_errors(admin_client, people, weekly, fields, message):
    if "replaces" in fields:
        fields = {"replaces": people[fields["replaces"]]}
    response = add_override(admin_client, weekly, people["tia"], **fields)
    assert response.status_code == 400
    assert message in text(response)


# --- the iCalendar feed ---------------------------------------------------------------------
def issue_feed(admin_client, sid: int) -> str:
    html = text(
        post(admin_client, f"/admin/schedules/{sid}/feed", {}, page=f"/admin/schedules/{sid}")
    )
    match = re.search(r'id="feed-url">([^<]+)<', html)
    assert match, html
    return match.group(1)


def test_the_feed_url_is_shown_once_and_serves_the_shifts(app, admin_client, client, weekly):
    url = issue_feed(admin_client, weekly)
    assert url.startswith("http://127.0.0.1:5000/oncall/feed/") and url.endswith(".ics")
    assert 'id="feed-url"' not in text(admin_client.get(f"/admin/schedules/{weekly}"))
    path = url.removeprefix("http://127.0.0.1:5000")
    response = client.get(path)  # no sign-in: the token is the credential
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    assert response.headers["Cache-Control"] == "private, no-store"
    events = Calendar.from_ical(response.data).walk("VEVENT")
    summaries = {str(event["summary"]) for event in events}
    assert any("Rose Reader" in s for s in summaries) and any("Sam Scan" in s for s in summaries)
    starts = sorted(event.decoded("dtstart") for event in events)
    # From a week back (Sam's turn from 23 February) to 60 days ahead (1 May), in UTC:
    # the hand-off stays at 08:00 in London, which is 07:00 UTC once summer time starts.
    assert starts[0] == datetime(2026, 2, 23, 8, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 4, 27, 7, tzinfo=UTC)
    read = audit_events(app, "oncall.feed_read")
    assert read and read[0]["target"] == f"schedule:{weekly}"
    token = path.split("/")[-1].removesuffix(".ics")
    with app.app_context():
        dumped = " ".join(
            e.details + (e.target or "") for e in db.session.scalars(select(AuditEvent))
        )
    assert token not in dumped


def test_unknown_and_replaced_feed_tokens_are_not_found(admin_client, client, weekly):
    assert client.get("/oncall/feed/not-a-token.ics").status_code == 404
    old = issue_feed(admin_client, weekly).removeprefix("http://127.0.0.1:5000")
    new = issue_feed(admin_client, weekly).removeprefix("http://127.0.0.1:5000")
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200


# --- escalation policies --------------------------------------------------------------------
def test_the_policy_page_shows_the_defaults(admin_client):
    html = text(admin_client.get("/admin/escalation"))
    assert 'id="stat-wait_minutes"' in html and 'value="5"' in html
    assert "The report is due within 1 hour." in html


def test_an_admin_changes_a_policy(app, admin_client, people):
    data = {"stat-wait_minutes": "7", "stat-rounds": "2"}  # page_pool unticked
    response = post(admin_client, "/admin/escalation/stat", data, page="/admin/escalation")
    assert location(response) == "/admin/escalation"
    with app.app_context():
        policy = policy_for("stat")
        assert (policy.wait_minutes, policy.rounds, policy.page_pool) == (7, 2, False)
        assert policy_for("routine").id is None  # the others keep their defaults
    event = audit_events(app, "escalation_policy.changed")[0]
    assert (
        event["actor_id"] == people["admin"].id and event["details"]["after"]["wait_minutes"] == 7
    )


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"urgent-wait_minutes": "0", "urgent-rounds": "2"},
            "urgent-wait_minutes",
            "Between 1 and 240",
        ),
        ({"urgent-wait_minutes": "5", "urgent-rounds": "11"}, "urgent-rounds", "Between 1 and 10"),
        (
            {"urgent-wait_minutes": "", "urgent-rounds": "2"},
            "urgent-wait_minutes",
            "Give the minutes",
        ),
    ],
)
def test_policy_errors(app, admin_client, data, field, message):
    response = post(admin_client, "/admin/escalation/urgent", data, page="/admin/escalation")
    assert response.status_code == 400
    assert message in field_errors(text(response), field)
    with app.app_context():
        assert db.session.scalars(select(EscalationPolicy)).all() == []


# --- the paging profile: preferences --------------------------------------------------------
def preferences(**fields) -> dict:
    data = {
        "prefs-subspecialties": ["neuro", "chest"],
        "prefs-timezone": "Europe/Paris",
        "prefs-slack_user_id": "U012AB3CD",
        "prefs-page_via": "slack",
        "prefs-quiet_start": "22:00",
        "prefs-quiet_end": "07:00",
    }
    data.update({f"prefs-{key}": value for key, value in fields.items()})
    return data


def save_preferences(client, **fields):
    return post(
        client, "/profile/paging/preferences", preferences(**fields), page="/profile/paging"
    )


def test_a_radiologist_saves_preferences(app, rose_client, people):
    assert location(save_preferences(rose_client)) == "/profile/paging"
    profile = profile_of(app, people["rose"])
    assert profile.subspecialty_list == ["neuro", "chest"]
    assert (profile.timezone, profile.slack_user_id, profile.page_via) == (
        "Europe/Paris",
        "U012AB3CD",
        "slack",
    )
    assert (profile.quiet_start, profile.quiet_end) == (time(22), time(7))
    html = text(rose_client.get("/profile/paging"))
    assert "U012AB3CD" in html and "07:00 (Europe/Paris)" in html
    checked = re.findall(r'<input checked [^>]*value="(\w+)"', html)
    assert checked == ["neuro", "chest", "slack"]
    event = audit_events(app, "paging.preferences_saved")[0]
    assert event["details"]["quiet_hours"] == "22:00-07:00"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"timezone": "Europe/Atlantis"}, "prefs-timezone", "time zone name"),
        ({"slack_user_id": "u012ab3cd"}, "prefs-slack_user_id", "looks like U012AB3CD"),
        ({"slack_user_id": "@rose"}, "prefs-slack_user_id", "looks like U012AB3CD"),
        ({"subspecialties": []}, "prefs-subspecialties", "at least one subspecialty"),
        ({"quiet_end": ""}, "prefs-quiet_end", "both ends of the quiet hours"),
        ({"page_via": "pigeon"}, "prefs-page_via", "Not a valid choice"),
    ],
)
def test_preference_errors(app, rose_client, people, fields, field, message):
    response = save_preferences(rose_client, **fields)
    assert response.status_code == 400
    assert message in field_errors(text(response), field)
    assert profile_of(app, people["rose"]) is None


def test_a_slack_id_belongs_to_one_account(app, rose_client, people):
    make_profile(app, people["sam"], slack="U012AB3CD")
    response = save_preferences(rose_client)
    assert response.status_code == 400
    assert "belongs to another Overread account" in text(response)


# --- the paging profile: the mobile number --------------------------------------------------
class RecordingSms:
    """An ``sms`` channel that keeps what it was handed to send."""

    name = "sms"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, notification) -> Delivery:
        self.sent.append((notification.recipient, notification.body))
        return Delivery(via=self.name, provider_message_id=f"SM{len(self.sent)}")


@pytest.fixture
def sms(app) -> RecordingSms:
    recorder = RecordingSms()
    register_channel(app, "sms", lambda config: recorder)
    return recorder


def ask_for_code(client, number: str = "+44 7700-900 123"):
    return post(client, "/profile/paging/mobile", {"mobile-number": number}, page="/profile/paging")


def confirm(client, code: str):
    return post(
        client, "/profile/paging/mobile/confirm", {"code-code": code}, page="/profile/paging"
    )


def sent_code(sms: RecordingSms) -> str:
    recipient, body = sms.sent[-1]
    assert recipient == MOBILE
    match = re.fullmatch(
        r"Overread verification code: (\d{6})\. It expires in 10 minutes\. "
        r"If you did not ask for it, ignore this message\.",
        body,
    )
    assert match, body
    return match.group(1)


def test_mobile_verification_end_to_end(app, rose_client, people, sms):
    assert location(ask_for_code(rose_client)) == "/profile/paging"
    (row,) = outbox(app, kind="mobile.verify")
    assert (row.channel, row.recipient, row.user_id) == ("sms", MOBILE, people["rose"].id)
    assert "{secret}" in row.body and not re.search(r"\d{6}", row.body)
    assert "not verified yet" in text(rose_client.get("/profile/paging"))

    assert drain(app) == 1
    code = sent_code(sms)
    (row,) = outbox(app, kind="mobile.verify")
    assert row.status == Status.SENT and code not in row.body and "{secret}" in row.body
    profile = profile_of(app, people["rose"])
    assert profile.mobile_code_hash and code not in profile.mobile_code_hash

    assert location(confirm(rose_client, code)) == "/profile/paging"
    profile = profile_of(app, people["rose"])
    assert profile.mobile_verified_at is not None and profile.sms_number == MOBILE
    assert profile.mobile_code_hash is None
    assert "verified" in text(rose_client.get("/profile/paging"))
    assert audit_events(app, "paging.mobile_verified")[0]["details"]["mobile"] == "…23"
    with app.app_context():
        dumped = " ".join(e.details for e in db.session.scalars(select(AuditEvent)))
    assert "900123" not in dumped and code not in dumped


def test_five_wrong_codes_void_the_code(app, rose_client, sms):
    ask_for_code(rose_client)
    drain(app)
    code = sent_code(sms)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1):
        response = confirm(rose_client, wrong)
        assert response.status_code == 400
        assert f"{left} {'try' if left == 1 else 'tries'} left" in field_errors(
            text(response), "code-code"
        )
    assert "Too many wrong codes" in text(confirm(rose_client, wrong))
    assert "No code is waiting" in text(confirm(rose_client, code))
    refusals = [e["details"]["reason"] for e in audit_events(app, "paging.mobile_code_refused")]
    assert refusals == ["wrong code"] * 4 + ["too many wrong codes"]


def test_an_expired_code_is_refused(app, rose_client, people, sms, monday):
    ask_for_code(rose_client)
    drain(app)
    code = sent_code(sms)
    monday.advance(timedelta(minutes=10, seconds=1))
    response = confirm(rose_client, code)
    assert response.status_code == 400
    assert "That code has expired. Ask for a new one." in text(response)
    assert profile_of(app, people["rose"]).mobile_verified_at is None


def test_one_code_a_minute_and_the_latest_number_wins(app, rose_client, people, sms, monday):
    ask_for_code(rose_client, "+1 (415) 555-0100")
    again = ask_for_code(rose_client)
    assert again.status_code == 400
    assert "Wait a minute" in field_errors(text(again), "mobile-number")
    monday.advance(timedelta(seconds=61))
    assert ask_for_code(rose_client).status_code == 302
    assert drain(app) == 2
    first, second = outbox(app, kind="mobile.verify")
    assert first.status == Status.FAILED and "no longer waiting" in first.last_error
    assert second.status == Status.SENT and len(sms.sent) == 1
    assert confirm(rose_client, sent_code(sms)).status_code == 302


@pytest.mark.parametrize(
    "number", ["07700 900123", "+44 77", "+44 7700 900123 ext 4", "+0447700900123"]
)
def test_a_number_must_be_international(rose_client, number):
    response = ask_for_code(rose_client, number)
    assert response.status_code == 400
    assert "international format" in field_errors(text(response), "mobile-number")


def test_a_number_verified_by_someone_else_is_refused(app, rose_client, people):
    make_profile(app, people["sam"], mobile=MOBILE)
    response = ask_for_code(rose_client)
    assert response.status_code == 400
    assert "verified on another Overread account" in text(response)
    assert outbox(app, kind="mobile.verify") == []


def test_an_unverified_claim_does_not_hold_a_number(app, people, rose_client, sms, monday):
    sam = signed_in(app, people["sam"])
    assert ask_for_code(sam).status_code == 302
    assert ask_for_code(rose_client).status_code == 302  # Rose holds the phone
    assert profile_of(app, people["sam"]).mobile is None
    drain(app)
    assert len(sms.sent) == 1  # Sam's code is never sent: the number moved on
    assert confirm(rose_client, sent_code(sms)).status_code == 302


def test_a_stop_reply_is_shown_and_cleared_by_a_new_verification(app, rose_client, people, sms):
    make_profile(app, people["rose"], mobile="+15550001111")
    with app.app_context():
        db.session.get(PagingProfile, people["rose"].id).sms_stopped_at = MONDAY_NOON
        db.session.commit()
    assert "you replied STOP" in text(rose_client.get("/profile/paging"))
    ask_for_code(rose_client)
    drain(app)
    confirm(rose_client, sent_code(sms))
    assert profile_of(app, people["rose"]).sms_stopped_at is None


# --- the paging profile: the viewer PIN -----------------------------------------------------
def set_pin(client, pin="482915", confirm_pin=None, password="", code=""):
    data = {
        "pin-pin": pin,
        "pin-confirm": confirm_pin or pin,
        "pin-password": password,
        "pin-code": code,
    }
    return post(client, "/profile/paging/pin", data, page="/profile/paging")


def test_setting_the_pin_needs_the_password_or_a_code(app, rose_client, people, monday):
    from tests.conftest import PASSWORD

    missing = set_pin(rose_client)
    assert missing.status_code == 400
    assert "either your password or the code" in field_errors(text(missing), "pin-password")
    wrong = set_pin(rose_client, password="not my password")
    assert wrong.status_code == 401
    assert "Wrong password." in field_errors(text(wrong), "pin-password")
    assert (
        audit_events(app, "login.failed")[-1]["details"]["reason"] == "wrong password at a re-check"
    )
    assert profile_of(app, people["rose"]) is None

    assert location(set_pin(rose_client, password=PASSWORD)) == "/profile/paging"
    assert "Your PIN is set" in text(rose_client.get("/profile/paging"))
    monday.advance(timedelta(seconds=30))
    assert set_pin(rose_client, pin="730164", code=totp_now(people["rose"])).status_code == 302
    with app.app_context():
        assert pin_matches(db.session.get(PagingProfile, people["rose"].id), "730164")
    events = [e["details"] for e in audit_events(app, "paging.pin_set")]
    assert events == [
        {"replaced": False, "checked_by": "password"},
        {"replaced": True, "checked_by": "totp"},
    ]


@pytest.mark.parametrize(
    ("pin", "confirm_pin", "message"),
    [
        ("123456", None, "not one digit repeated or a plain run"),
        ("12ab56", None, "6 to 12 digits"),
        ("482915", "482916", "The two PINs differ."),
    ],
)
def test_weak_or_mistyped_pins_are_refused(app, rose_client, people, pin, confirm_pin, message):
    from tests.conftest import PASSWORD

    response = set_pin(rose_client, pin, confirm_pin, password=PASSWORD)
    assert response.status_code == 400
    assert message in text(response)
    assert profile_of(app, people["rose"]) is None


# --- every page renders -----------------------------------------------------------------------
def test_every_page_renders_with_data(app, admin_client, people, weekly):
    make_profile(app, people["admin"], slack="U0ADMIN1", mobile=MOBILE, quiet=(time(23), time(6)))
    add_override(admin_client, weekly, people["tia"])
    for path in (
        "/oncall",
        "/profile/paging",
        "/admin/schedules",
        f"/admin/schedules/{weekly}",
        "/admin/escalation",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text(
            response
        )
    assert admin_client.get("/admin/schedules/999").status_code == 404


def test_pages_without_a_profile_use_utc(rose_client):
    assert "Times in UTC" in text(rose_client.get("/oncall"))
    html = text(rose_client.get("/profile/paging"))
    assert "Pages cannot reach you yet" in html and "not set" in html
    assert 'id="timezones"' in html
