"""The SMS bot: pages through the real twilio client to a fake Twilio over HTTP, signed replies."""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from bot.sms.channel import TwilioChannel
from bot.sms.replies import Command, Instruction, parse_reply
from portal.audit.models import AuditEvent
from portal.cases.models import Case
from portal.cases.states import State
from portal.extensions import db
from portal.notifications.channels import DeliveryError, LogChannel, build_channels
from portal.notifications.models import (
    EarlyDeliveryReport,
    InboundMessage,
    Notification,
    Status,
)
from portal.oncall.models import PagingProfile
from portal.studies.models import Patient
from tests import case_support as cs
from tests import harness
from tests.fakes.twilio import FROM_NUMBER
from tests.paging_support import drain, make_profile, outbox

MOBILE_1, MOBILE_2, STRANGER = "+15551230001", "+15551230002", "+15557654321"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@pytest.fixture
def app(paged_app):
    """The app wired to the fake Twilio; ``create_user`` and the other fixtures use it too."""
    return paged_app


@pytest.fixture
def people(create_user, paged_app):
    class People:
        physician = create_user("physician")
        rad1 = create_user("radiologist", name="Dr Rad One")
        rad2 = create_user("radiologist", name="Dr Rad Two")

    make_profile(paged_app, People.rad1, mobile=MOBILE_1, page_via="sms")
    make_profile(paged_app, People.rad2, mobile=MOBILE_2, page_via="sms")
    return People


def new_case(app, people) -> Case:
    """Submit a case naming a patient; only the offers a test makes page anyone.

    The escalation steps that submission queues are cancelled, so the
    on-call escalator pages nobody the test did not choose.
    """
    case = cs.submit(
        app, people.physician, subject_name="Jane Roe", subject_birth_date=date(1970, 5, 17)
    )
    with app.app_context():
        db.session.execute(
            update(Notification)
            .where(Notification.case_id == case.id, Notification.channel == "escalation")
            .values(status=Status.CANCELLED)
        )
        db.session.commit()
    return case


def paged_case(app, people, *radiologists) -> Case:
    """A new case offered to ``radiologists`` (rad1 by default), with the pages sent."""
    case = cs.offer(app, new_case(app, people), *(radiologists or (people.rad1,)))
    drain(app)
    return case


def texts_to(fake, number: str) -> list[str]:
    return [message["Body"] for message in fake.sent() if message["To"] == number]


def reply_of(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/xml"
    found = re.search(r"<Message>(.*)</Message>", response.get_data(as_text=True))
    return found.group(1) if found else ""


def state_of(app, case: Case) -> str:
    return cs.load(app, case).state


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        db.session.expunge_all()
        return rows


# --- the page -----------------------------------------------------------------------
def test_a_page_is_one_short_sms_without_patient_data(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)

    [sent] = [m for m in fake_twilio.sent() if m["To"] == MOBILE_1]
    n = case.number
    assert sent["Body"] == (
        f"Overread Urgent CT, case {n}. Reply YES {n} to accept, NO {n} to decline."
    )
    assert len(sent["Body"]) <= 160 and set(sent["Body"]) <= GSM7_BASIC  # one GSM-7 segment
    assert sent["From"] == FROM_NUMBER
    assert sent["StatusCallback"] == "http://127.0.0.1:5000/sms/status"
    [page] = outbox(paged_app, kind="case.page", user_id=people.rad1.id)
    assert (page.status, page.delivered_via) == (Status.SENT, "sms")
    assert (page.provider_message_id, page.provider_status) == (sent["Sid"], "queued")
    with paged_app.app_context():
        patient = db.session.scalars(select(Patient)).one()
        phi = {*re.split(r"[\^ ]+", patient.name), patient.patient_id, "Jane", "Roe", "1970"}
        if patient.birth_date:
            phi |= {patient.birth_date.isoformat(), patient.birth_date.strftime("%Y%m%d")}
    for message in fake_twilio.sent():
        for secret in filter(None, phi):
            assert secret not in message["Body"]


def test_without_twilio_settings_sms_stay_on_the_log_channel(make_app, fake_twilio):
    app = make_app()
    with app.test_request_context():
        assert isinstance(build_channels(app.config)["sms"], LogChannel)
    response = fake_twilio.inbound(app, MOBILE_1, "HELP")
    assert response.status_code == 403  # no token to check a signature with


def test_the_channel_is_the_twilio_one_when_configured(paged_app):
    with paged_app.test_request_context():
        assert isinstance(build_channels(paged_app.config)["sms"], TwilioChannel)


def test_the_fake_checks_credentials_and_serves_what_was_sent(paged_app, fake_twilio):
    channel = TwilioChannel(paged_app.config)
    row = Notification(id=1, recipient=MOBILE_1, body="Overread test")

    delivery = channel.send(row)

    fetched = channel.client.messages(delivery.provider_message_id).fetch()
    assert (fetched.to, fetched.body, fetched.status) == (MOBILE_1, "Overread test", "queued")
    assert re.fullmatch(r"SM[0-9a-f]{32}", delivery.provider_message_id)
    wrong = TwilioChannel({**paged_app.config, "TWILIO_AUTH_TOKEN": "f" * 32})
    with pytest.raises(DeliveryError, match="HTTP 401, error 20003"):
        wrong.send(row)
    assert len(fake_twilio.sent()) == 1


# --- replies: parsing ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("YES K7Q2XM", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("yes k7q2xm", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("Yes, K7Q2XM!", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("  YES K7Q2 XM ", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("y-k7q2xm", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("Accept: K7Q2XM.", Instruction(Command.ACCEPT, "K7Q2XM")),
        ("yes", Instruction(Command.ACCEPT)),
        ("No K7Q2XM", Instruction(Command.DECLINE, "K7Q2XM")),
        ("n k7q2xm", Instruction(Command.DECLINE, "K7Q2XM")),
        ("DECLINE", Instruction(Command.DECLINE)),
        ("link k7q2xm", Instruction(Command.LINK, "K7Q2XM")),
        ("Status? K7Q2XM", Instruction(Command.STATUS, "K7Q2XM")),
        ("help", Instruction(Command.HELP, carrier_keyword=True)),
        ("STOP", Instruction(Command.STOP, carrier_keyword=True)),
        ("stop.", Instruction(Command.STOP, carrier_keyword=True)),
        ("Unsubscribe", Instruction(Command.STOP, carrier_keyword=True)),
        ("stopall", Instruction(Command.STOP, carrier_keyword=True)),
        ("cancel", Instruction(Command.STOP, carrier_keyword=True)),
        ("end", Instruction(Command.STOP, carrier_keyword=True)),
        ("quit", Instruction(Command.STOP, carrier_keyword=True)),
        ("stop please", Instruction(Command.STOP, "PLEASE")),
        ("START", Instruction(Command.START, carrier_keyword=True)),
        ("unstop", Instruction(Command.START, carrier_keyword=True)),
        ("maybe later", Instruction(Command.UNKNOWN)),
        ("", Instruction(Command.UNKNOWN)),
        ("?!", Instruction(Command.UNKNOWN)),
        ("yes I will take the chest one thanks", Instruction(Command.UNKNOWN)),
    ],
)
def test_replies_are_read_tolerantly(body, expected):
    assert parse_reply(body) == expected


# --- replies: acting ----------------------------------------------------------------
def test_yes_accepts_and_the_viewing_link_follows_by_sms(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)

    response = fake_twilio.inbound(paged_app, MOBILE_1, f"Yes, {case.number.lower()}!")

    assert reply_of(response) == f"Accepted case {case.number}. Your viewing link follows."
    loaded = cs.load(paged_app, case)
    assert (loaded.state, loaded.assignee_id) == (State.ACCEPTED, people.rad1.id)
    drain(paged_app)
    [link_text] = [t for t in texts_to(fake_twilio, MOBILE_1) if "viewing link" in t]
    url = re.search(r"http://127\.0\.0\.1:5000(/l/\S+)", link_text)
    assert url, link_text
    if any(rule.rule == "/l/<code>" for rule in paged_app.url_map.iter_rules()):
        assert paged_app.test_client().get(url.group(1)).status_code == 200


def test_a_bare_yes_takes_the_one_case_offered(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)

    assert reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "Y")).startswith("Accepted case")
    assert cs.load(paged_app, case).assignee_id == people.rad1.id


def test_a_bare_yes_with_several_offers_asks_which(paged_app, fake_twilio, people):
    first, second = paged_case(paged_app, people), paged_case(paged_app, people)

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "yes"))

    assert answer.startswith("Which case? Reply YES and the case code:")
    assert first.number in answer and second.number in answer
    assert state_of(paged_app, first) == state_of(paged_app, second) == State.OFFERED


def test_no_declines(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people, people.rad1, people.rad2)

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"no {case.number}"))

    assert answer == f"Declined case {case.number}. Thank you."
    offers = {o.radiologist_id: o.status for o in cs.load(paged_app, case).offers}
    assert offers == {people.rad1.id: "declined", people.rad2.id: "open"}


def test_a_second_no_is_told_it_was_declined(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people, people.rad1, people.rad2)
    fake_twilio.inbound(paged_app, MOBILE_1, f"NO {case.number}")

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"NO {case.number}"))

    assert answer == f"You declined case {case.number}."
    assert audit_rows(paged_app, "sms.refused") == []


def test_help_and_unknown_words_get_the_commands(paged_app, fake_twilio, people):
    help_text = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "HELP"))
    puzzled = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "maybe later"))

    assert "YES &lt;case&gt; to accept" in help_text
    assert puzzled.startswith("Sorry, that reply was not understood.")


def test_link_reissues_a_viewing_link(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)
    fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}")

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"LINK {case.number}"))

    assert answer == f"A new viewing link for case {case.number} follows."
    links = outbox(paged_app, kind="case.link", user_id=people.rad1.id)
    assert [row.channel for row in links] == ["sms", "sms"]
    assert "LINK" in reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}"))


@pytest.mark.parametrize(
    ("paged_at", "due"),
    [("2026-11-23T09:15:00", "13:15 UTC"), ("2026-11-23T21:15:00", "24 Nov 01:15 UTC")],
    ids=["due-today", "due-tomorrow"],
)
def test_status_tells_state_urgency_and_deadline(
    paged_app, fake_twilio, people, frozen_clock, paged_at, due
):
    frozen_clock.set(datetime.fromisoformat(paged_at).replace(tzinfo=UTC))
    case = paged_case(paged_app, people)

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"status {case.number}"))

    assert answer == (f"Case {case.number}: offered, Urgent CT. Report due {due} (in 4 h 0 min).")


def test_a_second_yes_is_told_the_case_was_taken(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people, people.rad1, people.rad2)
    fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}")

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_2, f"YES {case.number}"))

    assert answer == f"Case {case.number} was already taken by another radiologist."
    drain(paged_app)
    assert any("was taken by another" in text for text in texts_to(fake_twilio, MOBILE_2))


# --- refusals -----------------------------------------------------------------------
def test_an_unknown_number_is_refused_and_audited(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)

    answer = reply_of(fake_twilio.inbound(paged_app, STRANGER, f"YES {case.number}"))

    assert answer == "This number cannot act on that case."
    assert state_of(paged_app, case) == State.OFFERED
    [row] = audit_rows(paged_app, "sms.refused")
    details = json.loads(row.details)
    assert details == {"command": "accept", "number": "***21", "reason": "unknown number"}
    assert STRANGER not in row.details + (row.target or "")


def test_a_case_not_offered_to_that_number_is_refused(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)  # offered to rad1 only

    for body in (f"YES {case.number}", f"STATUS {case.number}", f"LINK {case.number}"):
        answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_2, body))
        assert answer == "This number cannot act on that case."

    assert state_of(paged_app, case) == State.OFFERED
    rows = audit_rows(paged_app, "sms.refused")
    assert [(r.actor_id, r.target, json.loads(r.details)["number"]) for r in rows] == [
        (people.rad2.id, case.number, "***02")
    ] * 3


def test_an_unverified_number_is_refused(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)
    with paged_app.app_context():
        db.session.get(PagingProfile, people.rad1.id).mobile_verified_at = None
        db.session.commit()

    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}"))

    assert answer == "This number cannot act on that case."
    assert json.loads(audit_rows(paged_app, "sms.refused")[0].details)["reason"] == (
        "unverified number"
    )


@pytest.mark.parametrize(
    "forgery",
    [
        {"token": "not-the-auth-token"},
        {"url": "http://localhost/sms/inbound"},  # the Host the request came to, not BASE_URL
        {"url": "http://127.0.0.1:5000/sms/status"},
    ],
)
def test_a_badly_signed_reply_is_refused_and_nothing_happens(
    paged_app, fake_twilio, people, forgery
):
    case = paged_case(paged_app, people)

    response = fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}", **forgery)

    assert response.status_code == 403
    assert state_of(paged_app, case) == State.OFFERED
    with paged_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(InboundMessage)) == 0


def test_an_unsigned_reply_is_refused(paged_app, people):
    response = paged_app.test_client().post(
        "/sms/inbound", data={"MessageSid": "SM" + "0" * 32, "From": MOBILE_1, "Body": "YES"}
    )
    assert response.status_code == 403


def test_a_repeated_message_sid_is_handled_once(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)
    sid = "SM" + "ab" * 16

    first = fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}", sid=sid)
    again = fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}", sid=sid)

    assert reply_of(first).startswith("Accepted case")
    assert again.get_data(as_text=True) == EMPTY_TWIML
    assert len(outbox(paged_app, kind="case.link")) == 1


# --- STOP and START -----------------------------------------------------------------
def test_stop_ends_sms_pages_and_start_resumes_them(paged_app, fake_twilio, people):
    make_profile(paged_app, people.rad1, mobile=MOBILE_1, slack="U0RAD1", page_via="sms")

    response = fake_twilio.inbound(paged_app, MOBILE_1, "STOP")

    assert response.get_data(as_text=True) == EMPTY_TWIML  # Twilio answers STOP itself
    assert [r.actor_id for r in audit_rows(paged_app, "sms.stopped")] == [people.rad1.id]
    case = paged_case(paged_app, people)
    assert texts_to(fake_twilio, MOBILE_1) == []
    assert [row.channel for row in outbox(paged_app, kind="case.page")] == ["slack"]

    assert reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "START")) == ""  # Twilio answers
    assert [r.actor_id for r in audit_rows(paged_app, "sms.started")] == [people.rad1.id]
    later = paged_case(paged_app, people)
    assert texts_to(fake_twilio, MOBILE_1) == [
        f"Overread Urgent CT, case {later.number}. "
        f"Reply YES {later.number} to accept, NO {later.number} to decline."
    ]
    assert case.number != later.number


def test_stop_without_slack_means_no_sms_page_at_all(paged_app, fake_twilio, people):
    fake_twilio.inbound(paged_app, MOBILE_1, "stop")

    paged_case(paged_app, people)

    assert texts_to(fake_twilio, MOBILE_1) == []
    assert outbox(paged_app, kind="case.page", user_id=people.rad1.id) == []


def test_stop_with_more_words_is_confirmed_by_us(paged_app, fake_twilio, people):
    answer = reply_of(fake_twilio.inbound(paged_app, MOBILE_1, "Stop please"))

    assert answer == "Overread will send no more SMS pages to this number. Reply START to resume."
    with paged_app.app_context():
        assert db.session.get(PagingProfile, people.rad1.id).sms_stopped_at is not None


# --- delivery reports ---------------------------------------------------------------
def test_delivery_reports_move_forward_only(paged_app, fake_twilio, people):
    paged_case(paged_app, people)
    [page] = outbox(paged_app, kind="case.page")
    sid = page.provider_message_id

    def status_now() -> str:
        return outbox(paged_app, id=page.id)[0].provider_status

    assert fake_twilio.status_callback(paged_app, sid, "sent").status_code == 200
    assert status_now() == "sent"
    fake_twilio.status_callback(paged_app, sid, "delivered")
    assert status_now() == "delivered"
    fake_twilio.status_callback(paged_app, sid, "sent")  # late
    fake_twilio.status_callback(paged_app, sid, "queued")
    assert status_now() == "delivered"


def test_an_undelivered_report_keeps_the_error_code(paged_app, fake_twilio, people):
    paged_case(paged_app, people)
    [page] = outbox(paged_app, kind="case.page")

    fake_twilio.status_callback(
        paged_app, page.provider_message_id, "undelivered", error_code=30003
    )

    row = outbox(paged_app, id=page.id)[0]
    assert row.provider_status == "undelivered"
    assert "30003" in row.last_error


def test_an_undelivered_page_goes_again_by_slack_while_the_offer_is_open(
    paged_app, fake_twilio, people
):
    make_profile(paged_app, people.rad1, mobile=MOBILE_1, slack="U0RAD1", page_via="sms")
    make_profile(paged_app, people.rad2, mobile=MOBILE_2, slack="U0RAD2", page_via="sms")
    case = paged_case(paged_app, people, people.rad1, people.rad2)
    first, second = outbox(paged_app, kind="case.page", case_id=case.id)
    fake_twilio.status_callback(
        paged_app, first.provider_message_id, "undelivered", error_code=30005
    )
    cs.accept(paged_app, case, people.rad1)  # rad2's page is no longer wanted
    fake_twilio.status_callback(paged_app, second.provider_message_id, "failed", error_code=30005)
    pages = outbox(paged_app, kind="case.page", case_id=case.id)
    assert [(row.channel, row.recipient) for row in pages] == [
        ("sms", MOBILE_1),
        ("sms", MOBILE_2),
        ("slack", "U0RAD1"),
    ]
    assert pages[0].status == Status.FAILED and "fell back to slack" in pages[0].last_error
    assert pages[1].provider_status == "failed"


def test_a_recipient_twilio_refuses_for_good_is_not_retried(paged_app, fake_twilio, people):
    fake_twilio.fail_next(1, status=400, code=21610)
    paged_case(paged_app, people)
    [page] = outbox(paged_app, kind="case.page")
    assert (page.status, page.attempts) == (Status.FAILED, 1)


def early_reports(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(EarlyDeliveryReport).order_by(EarlyDeliveryReport.id))
        return [(row.provider_message_id, row.status) for row in rows]


def test_delivery_reports_for_unknown_sids_or_badly_signed_change_no_row(
    paged_app, fake_twilio, people
):
    paged_case(paged_app, people)
    [page] = outbox(paged_app, kind="case.page")

    unknown = fake_twilio.status_callback(paged_app, "SM" + "f" * 32, "delivered")
    forged = fake_twilio.status_callback(
        paged_app, page.provider_message_id, "failed", token="not-the-auth-token"
    )

    assert unknown.status_code == 200 and forged.status_code == 403
    assert outbox(paged_app, id=page.id)[0].provider_status == "queued"
    assert early_reports(paged_app) == [("SM" + "f" * 32, "delivered")]  # may be early: kept


def test_a_failure_reported_before_the_sid_is_saved_still_falls_back(
    paged_app, fake_twilio, people
):
    make_profile(paged_app, people.rad1, mobile=MOBILE_1, slack="U0RAD1", page_via="sms")
    fake_twilio.report_next(paged_app, "failed", error_code=30005)

    case = paged_case(paged_app, people)  # Twilio reports the page before its send answers
    [page] = outbox(paged_app, kind="case.page", case_id=case.id)
    assert page.provider_status == "queued"
    assert early_reports(paged_app) == [(page.provider_message_id, "failed")]

    drain(paged_app)  # the dispatcher's next pass applies it

    pages = outbox(paged_app, kind="case.page", case_id=case.id)
    assert [(row.channel, row.recipient) for row in pages] == [
        ("sms", MOBILE_1),
        ("slack", "U0RAD1"),
    ]
    assert (pages[0].status, pages[0].provider_status) == (Status.FAILED, "failed")
    assert "30005" in pages[0].last_error and "fell back to slack" in pages[0].last_error
    assert early_reports(paged_app) == []


def test_early_reports_apply_in_order_and_forward_only(paged_app, fake_twilio, people):
    paged_case(paged_app, people)
    [page] = outbox(paged_app, kind="case.page")
    sid = page.provider_message_id
    with paged_app.app_context():  # as if none of these had found the sid saved yet
        db.session.execute(
            update(Notification).where(Notification.id == page.id).values(provider_message_id=None)
        )
        db.session.commit()
    for status in ("sent", "delivered", "queued"):
        fake_twilio.status_callback(paged_app, sid, status)
    assert [status for _, status in early_reports(paged_app)] == ["sent", "delivered", "queued"]
    with paged_app.app_context():
        db.session.execute(
            update(Notification).where(Notification.id == page.id).values(provider_message_id=sid)
        )
        db.session.commit()

    drain(paged_app)

    assert outbox(paged_app, id=page.id)[0].provider_status == "delivered"
    assert early_reports(paged_app) == []


def test_early_reports_that_never_find_their_message_are_dropped_after_an_hour(
    paged_app, fake_twilio, people, frozen_clock, caplog
):
    fake_twilio.status_callback(paged_app, "SM" + "e" * 32, "failed", error_code=30005)
    drain(paged_app)
    assert len(early_reports(paged_app)) == 1

    frozen_clock.advance(timedelta(minutes=61))
    with caplog.at_level(logging.WARNING):
        drain(paged_app)

    assert early_reports(paged_app) == []
    assert "1 SMS delivery reports named no recorded message; dropped" in caplog.text


# --- Twilio failing -----------------------------------------------------------------
def test_a_twilio_500_is_retried_after_the_backoff(paged_app, fake_twilio, people, frozen_clock):
    fake_twilio.fail_next(1, status=500)

    paged_case(paged_app, people)

    [page] = outbox(paged_app, kind="case.page")
    assert (page.status, page.attempts) == (Status.PENDING, 1)
    assert "HTTP 500" in page.last_error
    frozen_clock.advance(timedelta(seconds=31))
    drain(paged_app)
    [page] = outbox(paged_app, kind="case.page")
    assert (page.status, page.attempts) == (Status.SENT, 2)
    assert len(texts_to(fake_twilio, MOBILE_1)) == 1


def test_a_hanging_twilio_times_out_and_the_row_is_retried(
    paged_app, fake_twilio, people, frozen_clock
):
    fake_twilio.hang_next(1)

    paged_case(paged_app, people)

    [page] = outbox(paged_app, kind="case.page")
    assert (page.status, page.attempts) == (Status.PENDING, 1)
    assert "Timeout" in page.last_error
    frozen_clock.advance(timedelta(seconds=31))
    drain(paged_app)
    assert outbox(paged_app, kind="case.page")[0].status == Status.SENT


def test_a_refused_recipient_is_described_without_the_number(paged_app, fake_twilio, people):
    fake_twilio.fail_next(1, status=400, code=21610)

    paged_case(paged_app, people)

    [page] = outbox(paged_app, kind="case.page")
    assert "error 21610" in page.last_error and "***01" in page.last_error
    assert MOBILE_1 not in page.last_error


def test_twilio_down_falls_back_to_slack(paged_app, fake_twilio, people, frozen_clock):
    make_profile(paged_app, people.rad1, mobile=MOBILE_1, slack="U0RAD1", page_via="sms")
    fake_twilio.fail_next(10, status=503)

    case = paged_case(paged_app, people)
    frozen_clock.advance(timedelta(seconds=31))
    drain(paged_app)

    pages = outbox(paged_app, kind="case.page", case_id=case.id)
    assert [(row.channel, row.status) for row in pages] == [
        ("sms", Status.FAILED),
        ("slack", Status.SENT),
    ]
    assert texts_to(fake_twilio, MOBILE_1) == []


# --- privacy in logs ----------------------------------------------------------------
def test_logs_hold_no_full_number_nor_message_body(paged_app, fake_twilio, people, caplog):
    caplog.set_level(logging.DEBUG)
    case = paged_case(paged_app, people)
    fake_twilio.inbound(paged_app, MOBILE_1, f"YES {case.number}")
    fake_twilio.inbound(paged_app, STRANGER, f"YES {case.number}")
    drain(paged_app)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "***01" in logged
    for secret in (MOBILE_1, STRANGER, *fake_twilio.sent()[0]["Body"].split(". ")):
        assert secret not in logged


# --- over real HTTP -----------------------------------------------------------------
def test_a_reply_over_http_to_a_live_server(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people)
    with harness.live_server(paged_app) as url:
        paged_app.config["BASE_URL"] = url  # the public URL Twilio signs

        response = fake_twilio.inbound(url, MOBILE_1, f"YES {case.number}")
        forged = fake_twilio.inbound(url, MOBILE_1, f"YES {case.number}", url=url + "/x")

    assert response.status_code == 200 and forged.status_code == 403
    assert f"Accepted case {case.number}." in response.text
    assert response.headers["Content-Type"].startswith("application/xml")
    assert cs.load(paged_app, case).assignee_id == people.rad1.id


# --- a race on PostgreSQL -----------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("paged_app", ["postgresql"], indirect=True)
def test_two_yes_at_once_one_wins_the_other_is_told(paged_app, fake_twilio, people):
    case = paged_case(paged_app, people, people.rad1, people.rad2)
    start = threading.Barrier(2)
    answers: dict[str, str] = {}

    def reply(number: str) -> None:
        start.wait()
        answers[number] = reply_of(fake_twilio.inbound(paged_app, number, f"YES {case.number}"))

    threads = [threading.Thread(target=reply, args=(n,)) for n in (MOBILE_1, MOBILE_2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    accepted = [n for n, text in answers.items() if text.startswith("Accepted case")]
    taken = [n for n, text in answers.items() if "already taken" in text]
    assert len(accepted) == 1 and len(taken) == 1, answers
    winner = people.rad1 if accepted == [MOBILE_1] else people.rad2
    assert cs.load(paged_app, case).assignee_id == winner.id
    assert len(outbox(paged_app, kind="case.link")) == 1
