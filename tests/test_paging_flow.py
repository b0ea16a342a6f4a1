"""Paging end to end, across both channels: the real slack_sdk/Bolt and twilio clients
against the local fakes of Slack and Twilio over HTTP, the real outbox and dispatcher,
the escalation engine driven by the on-call schedule, and the viewing link redeemed.

The channel-specific behaviour lives in test_slack_bot.py and test_sms_bot.py; this
file covers what crosses them: page -> accept -> link -> redeem on each channel, a
Slack Accept racing an SMS YES, a provider down (the other channel takes over and
nothing is lost), two dispatchers on PostgreSQL, and a scan of every message sent.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import date, time, timedelta

import pytest
from sqlalchemy import select

import bot.slack
from bot.slack.messages import ACCEPT_ACTION, DECLINE_ACTION
from portal import clock
from portal.auth.models import User
from portal.cases.models import Case
from portal.cases.states import State, Urgency
from portal.extensions import db
from portal.notifications.dispatcher import dispatch_once
from portal.notifications.models import Notification, Status
from portal.oncall.pages import ESCALATE_KIND, LINK_KIND, PAGE_KIND, TAKEN_KIND
from portal.oncall.schedule_edits import (
    LayerSpec,
    add_layer,
    create_schedule,
    set_layer_members,
)
from portal.studies.models import Patient
from tests import case_support as cs
from tests.conftest import csrf_token
from tests.paging_support import PIN, drain, make_profile, outbox

SLACK_1, SLACK_2 = "U0RADONE1", "U0RADTWO2"
MOBILE_1, MOBILE_2 = "+15551230001", "+15551230002"
SUBJECT = {"subject_name": "Jane Roe", "subject_birth_date": date(1970, 5, 17)}
QUESTION = "Is there a pulmonary embolism?"
LINK = re.compile(r"https?://\S+/l/([\w-]+)")


@pytest.fixture
def app(paged_app):
    return paged_app


@pytest.fixture
def team(app, create_user):
    """An admin, two radiologists reachable on Slack and SMS, and a requesting physician."""

    class Team:
        admin = create_user("admin", name="Ada Admin")
        rad1 = create_user("radiologist", name="Dr Rad One")
        rad2 = create_user("radiologist", name="Dr Rad Two")
        physician = create_user("physician", name="Dr Phil")

    make_profile(app, Team.rad1, slack=SLACK_1, mobile=MOBILE_1, page_via="both")
    make_profile(app, Team.rad2, slack=SLACK_2, mobile=MOBILE_2, page_via="both")
    make_profile(app, Team.admin, slack="U0ADMIN01")
    return Team


def put_on_call(app, admin: User, *layers: list[User]) -> None:
    """A general schedule whose layer N has ``layers[N-1]`` on call now."""
    with app.app_context():
        actor = db.session.get(User, admin.id)
        schedule = create_schedule(actor, "General", "general", "UTC")
        today = clock.now().date() - timedelta(days=1)
        for position, members in enumerate(layers, start=1):
            spec = LayerSpec(f"Layer {position}", position, 7, today, time(0, 0))
            layer = add_layer(actor, schedule, spec)
            set_layer_members(actor, layer, [user.id for user in members])
        db.session.commit()


def submit(app, team, **fields) -> Case:
    fields = {"urgency": Urgency.STAT, "clinical_question": QUESTION, **SUBJECT, **fields}
    return cs.submit(app, team.physician, **fields)


def settle(app) -> None:
    assert bot.slack.wait_idle(app, timeout=15), "lazy Slack work did not finish"


def dm(slack_id: str) -> str:
    return "D" + slack_id[1:]


def slack_page(fake, slack_id: str) -> tuple[str, str]:
    (post,) = [c for c in fake.calls("chat.postMessage") if c.params["channel"] == dm(slack_id)]
    return post.answer["channel"], post.answer["ts"]


def texts_to(fake, number: str) -> list[str]:
    return [message["Body"] for message in fake.sent() if message["To"] == number]


def sms_reply(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    found = re.search(r"<Message>(.*)</Message>", response.get_data(as_text=True))
    return found.group(1) if found else ""


def redeem(app, url: str) -> object:
    """Open a viewing link in a fresh browser, type the PIN; return the browser at the viewer."""
    browser = app.test_client()
    path = url.removeprefix(app.config["BASE_URL"])
    opened = browser.get(path)
    assert opened.status_code == 200 and opened.headers["Referrer-Policy"] == "no-referrer"
    answer = browser.post(path, data={"factor": PIN, "csrf_token": csrf_token(browser, path)})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return browser, answer.headers["Location"]


def phi_of(app) -> list[str]:
    """Every form of the sample patient's name, ID and birth date, and the free text."""
    found = [QUESTION, SUBJECT["subject_name"], *SUBJECT["subject_name"].split()]
    birth = SUBJECT["subject_birth_date"]
    found += [birth.isoformat(), birth.strftime("%Y%m%d"), birth.strftime("%d/%m/%Y")]
    with app.app_context():
        for patient in db.session.scalars(select(Patient)).all():
            found += [patient.name, patient.patient_id, *re.split(r"[\^ ]+", patient.name)]
            if patient.birth_date:
                found += [patient.birth_date.isoformat(), patient.birth_date.strftime("%Y%m%d")]
    return [value for value in found if value and len(value) > 2]


# --- page -> accept -> link -> redeem, on each channel ------------------------------------
def test_on_call_is_paged_on_both_channels_accepts_in_slack_and_reads(
    app, team, fake_slack, fake_twilio
):
    put_on_call(app, team.admin, [team.rad1], [team.rad2])
    case = submit(app, team)
    drain(app)  # the first escalation step offers the case to layer 1; its pages go out

    channel, ts = slack_page(fake_slack, SLACK_1)
    assert texts_to(fake_twilio, MOBILE_1) == [
        f"Overread STAT CT, case {case.number}. "
        f"Reply YES {case.number} to accept, NO {case.number} to decline."
    ]
    assert not texts_to(fake_twilio, MOBILE_2)  # layer 2 waits its turn

    client = app.test_client()
    assert fake_slack.click(client, SLACK_1, ACCEPT_ACTION, channel=channel, ts=ts).status == 200
    settle(app)
    assert cs.load(app, case).state == State.ACCEPTED
    drain(app)
    (ephemeral,) = fake_slack.calls("chat.postEphemeral")
    browser, location = redeem(app, LINK.search(ephemeral.text).group(0))
    assert location == f"/viewer/{case.number}"
    viewer = browser.get(location)
    assert viewer.status_code == 200 and QUESTION in viewer.get_data(as_text=True)
    assert len(outbox(app, kind=ESCALATE_KIND, status=Status.CANCELLED)) == 1  # no layer 2


def test_a_decline_by_sms_pages_the_next_layer_at_once_who_accepts_by_sms(
    app, team, fake_slack, fake_twilio
):
    put_on_call(app, team.admin, [team.rad1], [team.rad2])
    case = submit(app, team)
    drain(app)

    declined = fake_twilio.inbound(app, MOBILE_1, f"no {case.number.lower()}")
    assert case.number in sms_reply(declined)
    drain(app)  # the decline made the next step due now: layer 2 is paged
    assert len(texts_to(fake_twilio, MOBILE_2)) == 1

    accepted = fake_twilio.inbound(app, MOBILE_2, f"Yes, {case.number}!")
    assert sms_reply(accepted) == f"Accepted case {case.number}. Your viewing link follows."
    drain(app)
    link_text = texts_to(fake_twilio, MOBILE_2)[-1]
    assert link_text.startswith(f"Overread case {case.number}, single-use viewing link: ")
    assert len(link_text) <= 160
    browser, location = redeem(app, LINK.search(link_text).group(0))
    assert browser.get(location).status_code == 200
    path = LINK.search(link_text).group(0).removeprefix(app.config["BASE_URL"])
    assert app.test_client().get(path).status_code == 410  # single use


# --- the race ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "paged_app", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_slack_accept_racing_sms_yes_claims_the_case_once(app, team, fake_slack, fake_twilio):
    make_profile(app, team.rad1, slack=SLACK_1, page_via="slack")
    make_profile(app, team.rad2, mobile=MOBILE_2, page_via="sms")
    put_on_call(app, team.admin, [team.rad1])
    case = submit(app, team)
    drain(app)  # rad1 is paged as on call; an admin offers the case to rad2 as well
    cs.offer(app, case, team.rad2, by=team.admin)
    drain(app)
    channel, ts = slack_page(fake_slack, SLACK_1)
    start, answers = threading.Barrier(2), {}

    def slack_accept() -> None:
        client = app.test_client()
        start.wait()
        answers["slack"] = fake_slack.click(client, SLACK_1, ACCEPT_ACTION, channel=channel, ts=ts)

    def sms_yes() -> None:
        start.wait()
        answers["sms"] = fake_twilio.inbound(app, MOBILE_2, f"YES {case.number}")

    threads = [threading.Thread(target=slack_accept), threading.Thread(target=sms_yes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    settle(app)
    drain(app)

    winner = cs.load(app, case).assignee_id
    assert winner in (team.rad1.id, team.rad2.id)
    assert answers["slack"].status == 200
    sms_answer = sms_reply(answers["sms"])
    (taken,) = outbox(app, kind=TAKEN_KIND)
    assert taken.status == Status.SENT
    links = outbox(app, kind=LINK_KIND)
    if winner == team.rad2.id:  # SMS won: Slack's page is edited to say so
        assert sms_answer.startswith(f"Accepted case {case.number}")
        assert [(row.channel, row.user_id) for row in links] == [("sms", team.rad2.id)]
        assert (taken.channel, taken.recipient) == ("slack", SLACK_1)
        page = json.dumps(fake_slack.message(channel, ts)["blocks"])
        assert "taken by another radiologist" in page
    else:  # Slack won: the SMS answer says it was taken, and so does a text
        assert "taken" in sms_answer or "cannot act" in sms_answer
        assert [(row.channel, row.user_id) for row in links] == [("slack", team.rad1.id)]
        assert (taken.channel, taken.recipient) == ("sms", MOBILE_2)


# --- a provider down: retried, then the other channel -------------------------------------
@pytest.mark.parametrize("fault", ["500", "timeout"])
def test_slack_down_the_page_goes_by_sms_and_the_answer_still_works(
    app, team, fake_slack, fake_twilio, frozen_clock, fault
):
    make_profile(app, team.rad1, slack=SLACK_1, mobile=MOBILE_1, page_via="slack")
    put_on_call(app, team.admin, [team.rad1])
    if fault == "500":
        fake_slack.fail_next(20, status=500)
    else:
        fake_slack.hang_next(2, method="conversations.open")
    case = submit(app, team)
    drain(app)
    (page,) = outbox(app, kind=PAGE_KIND)
    assert (page.channel, page.status, page.attempts) == ("slack", Status.PENDING, 1)
    assert not texts_to(fake_twilio, MOBILE_1)

    frozen_clock.advance(timedelta(seconds=31))
    drain(app)  # the second failure: the page moves to SMS at once
    slack_row, sms_row = outbox(app, kind=PAGE_KIND)
    assert slack_row.status == Status.FAILED and "fell back to sms" in slack_row.last_error
    assert (sms_row.channel, sms_row.status) == ("sms", Status.SENT)
    assert len(texts_to(fake_twilio, MOBILE_1)) == 1

    accepted = fake_twilio.inbound(app, MOBILE_1, f"YES {case.number}")
    assert sms_reply(accepted).startswith(f"Accepted case {case.number}")
    drain(app)
    assert LINK.search(texts_to(fake_twilio, MOBILE_1)[-1])


# --- two dispatchers ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "paged_app", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_dispatchers_on_postgresql_page_each_radiologist_once(
    app, team, fake_slack, fake_twilio
):
    app.config["DISPATCH_BATCH"] = 3
    put_on_call(app, team.admin, [team.rad1])
    cases = [submit(app, team) for _ in range(12)]
    start, handled = threading.Barrier(2), []

    def dispatcher() -> None:
        with app.app_context():
            start.wait()
            handled.append(dispatch_once())
            handled.append(dispatch_once())  # what the other one's steps queued meanwhile
            db.session.remove()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    drain(app)

    posts = [c for c in fake_slack.calls("chat.postMessage") if c.params["channel"] == dm(SLACK_1)]
    assert len(posts) == len(cases)
    texts = texts_to(fake_twilio, MOBILE_1)
    assert sorted(texts) == sorted(set(texts)) and len(texts) == len(cases)
    for case in cases:
        assert sum(case.number in text for text in texts) == 1
    with app.app_context():
        sent = db.session.scalars(select(Notification.status).where(Notification.kind == PAGE_KIND))
        assert set(sent) == {Status.SENT}


# --- privacy ------------------------------------------------------------------------------
def test_no_message_sent_anywhere_names_the_patient(
    app, team, fake_slack, fake_twilio, frozen_clock
):
    put_on_call(app, team.admin, [team.rad1], [team.rad2])
    taken = submit(app, team)
    unanswered = submit(app, team, urgency=Urgency.URGENT)
    drain(app)
    client = app.test_client()
    replies = []

    (page,) = [  # rad1 declines the other case in Slack
        call
        for call in fake_slack.calls("chat.postMessage")
        if call.params["channel"] == dm(SLACK_1) and unanswered.number in json.dumps(call.params)
    ]
    channel, ts = page.answer["channel"], page.answer["ts"]
    fake_slack.click(client, SLACK_1, DECLINE_ACTION, channel=channel, ts=ts)
    settle(app)
    drain(app)
    replies.append(sms_reply(fake_twilio.inbound(app, MOBILE_1, f"STATUS {taken.number}")))
    replies.append(sms_reply(fake_twilio.inbound(app, MOBILE_1, f"YES {taken.number}")))
    replies.append(sms_reply(fake_twilio.inbound(app, MOBILE_1, f"LINK {taken.number}")))
    replies.append(sms_reply(fake_twilio.inbound(app, MOBILE_2, f"YES {taken.number}")))
    for text in ("mine", "oncall", f"status {taken.number}", f"status {unanswered.number}"):
        replies.append(fake_slack.command(client, SLACK_1, text).text)
    settle(app)
    for _ in range(8):  # let every escalation round of the other case run out
        frozen_clock.advance(timedelta(minutes=16))
        drain(app)
    assert cs.load(app, unanswered).state == State.UNASSIGNED
    assert cs.load(app, taken).state == State.ACCEPTED

    with app.app_context():
        outbox_rows = db.session.scalars(select(Notification)).all()
        bodies = [(row.kind, row.subject, row.body) for row in outbox_rows]
    sent = json.dumps(
        {
            "slack": [call.params for call in fake_slack.calls()],
            "sms": fake_twilio.sent(),
            "replies": replies,
            "slack_or_sms_outbox": [b for b in bodies if b[0].startswith("case.")],
        },
        ensure_ascii=False,
    )
    assert "admin_page" in sent or any(k == "case.admin_page" for k, _, _ in bodies)
    for value in phi_of(app):
        assert value not in sent, f"{value!r} was sent"
