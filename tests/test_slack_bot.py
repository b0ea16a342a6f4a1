"""The Slack bot end to end: the real slack_sdk and Bolt against the local fake Slack.

Pages go out through the outbox and the ``slack`` channel to the fake Web API;
clicks and slash commands come back signed as Slack signs them. Lazy listeners
run on threads after the acknowledgement; :func:`bot.slack.wait_idle` waits
for them.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

import bot.slack
from bot.slack.messages import (
    ACCEPT_ACTION,
    DECLINE_ACTION,
    LINK_ACTION,
    page_message,
    settled_page,
)
from portal.audit.models import AuditEvent
from portal.cases.models import Case
from portal.cases.operations import CaseTaken
from portal.cases.states import State, Urgency
from portal.cases.summary import CaseSummary
from portal.extensions import db
from portal.notifications.channels import LogChannel, build_channels
from portal.notifications.models import InboundMessage, Status
from portal.oncall import answers
from portal.oncall.models import Layer, LayerMember, Schedule
from portal.oncall.pages import LINK_KIND, PAGE_KIND, TAKEN_KIND, stop_paging
from portal.studies.models import Patient
from tests import harness
from tests.case_support import load, offer, submit
from tests.paging_support import drain, make_profile, outbox

ALICE, BOB, STRANGER = "U0ALICE01", "U0BOB0002", "U0NOBODY9"
BOTH_DATABASES = pytest.mark.parametrize(
    "paged_app", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
SUBJECT_BIRTH_DATE = date(1961, 3, 14)
QUESTION = "Is there a pulmonary embolism?"


# --- helpers --------------------------------------------------------------------
def radiologist(app, create_user, slack_id: str, name: str):
    user = create_user("radiologist", name=name)
    make_profile(app, user, slack=slack_id, page_via="slack")
    return user


def dm(slack_id: str) -> str:
    """The DM channel the fake opens with ``slack_id``."""
    return "D" + slack_id[1:]


def page_of(fake, slack_id: str) -> tuple[str, str]:
    """The channel and ts of the page posted to ``slack_id``."""
    (post,) = [c for c in fake.calls("chat.postMessage") if c.params["channel"] == dm(slack_id)]
    return post.answer["channel"], post.answer["ts"]


def settle(app) -> None:
    assert bot.slack.wait_idle(app, timeout=15), "lazy Slack work did not finish"


def responses(fake) -> list[dict]:
    """What the app answered through ``response_url`` (ephemeral replies)."""
    return [call.params for call in fake.calls("response_url")]


def all_text(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def phi_of(app, case: Case) -> list[str]:
    """The sample patient's name (and its parts), ID and birth dates, and the free text."""
    with app.app_context():
        patients = db.session.scalars(select(Patient)).all()
        found = [QUESTION, case.subject_name]
        for patient in patients:
            found += [patient.name, patient.patient_id, *patient.name.split("^")]
            if patient.birth_date:
                found += [patient.birth_date.isoformat(), patient.birth_date.strftime("%Y%m%d")]
    birth = SUBJECT_BIRTH_DATE
    found += [birth.isoformat(), birth.strftime("%Y%m%d"), birth.strftime("%d/%m/%Y")]
    return [value for value in found if value]


def assert_no_phi(app, fake, case: Case) -> None:
    sent = all_text([call.params for call in fake.calls()])
    for value in phi_of(app, case):
        assert value not in sent, f"{value!r} reached Slack"


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def app(paged_app):
    """Every fixture built on ``app`` (users, the test client) uses the paged app."""
    return paged_app


@pytest.fixture
def paged_case(app, create_user):
    """Factory: a STAT case offered by hand to the radiologists given, its pages sent."""

    def page(*radiologists, sample: str = "CT_small.dcm") -> Case:
        physician = create_user("physician")
        case = submit(
            app,
            physician,
            sample=sample,
            urgency=Urgency.STAT,
            subject_birth_date=SUBJECT_BIRTH_DATE,
            clinical_question=QUESTION,
        )
        with app.app_context():  # the escalation engine would page a pool; offer by hand
            stop_paging(db.session.get(Case, case.id), "the test offers by hand")
            db.session.commit()
        case = offer(app, case, *radiologists)
        drain(app)
        return case

    return page


@pytest.fixture
def alice(app, create_user):
    return radiologist(app, create_user, ALICE, "Alice Reader")


@pytest.fixture
def bob(app, create_user):
    return radiologist(app, create_user, BOB, "Bob Second")


# --- the page -------------------------------------------------------------------
def test_page_is_a_dm_with_the_facts_and_buttons_and_no_patient_data(
    app, fake_slack, alice, paged_case
):
    case = paged_case(alice)

    (opened,) = fake_slack.calls("conversations.open")
    assert opened.params["users"] == ALICE
    (post,) = fake_slack.calls("chat.postMessage")
    assert post.params["channel"] == dm(ALICE)
    assert post.params["unfurl_links"] is False
    header, facts, buttons = post.blocks
    assert header["text"]["text"] == f"Overread STAT case {case.number}"
    shown = [field["text"] for field in facts["fields"]]
    assert shown[:3] == ["*Urgency*\nSTAT", "*Modality*\nCT", "*Body part*\nnot stated"]
    assert "*Subspecialty*\nGeneral" in shown
    assert "*Age band*\n60-69" in shown
    with app.app_context():
        due = db.session.get(Case, case.id).sla_due_at
    assert f"*SLA deadline*\n{due:%Y-%m-%d %H:%M} UTC" in shown
    assert "*Purpose*\nRead" in shown
    accept, decline = buttons["elements"]
    assert (accept["action_id"], accept["value"], accept["style"]) == (
        ACCEPT_ACTION,
        case.number,
        "primary",
    )
    assert (decline["action_id"], decline["value"]) == (DECLINE_ACTION, case.number)
    assert case.number in post.text and "STAT CT" in post.text

    (row,) = outbox(app, kind=PAGE_KIND)
    assert (row.status, row.delivered_via) == (Status.SENT, "slack")
    assert row.provider_message_id == "{}:{}".format(*page_of(fake_slack, ALICE))
    assert_no_phi(app, fake_slack, case)


def leaves(value) -> list[str]:
    """Every string value (not key) inside a message."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in leaves(item)]
    return []


@pytest.mark.parametrize("outcome", [None, "Declined by you at 14:05 UTC"])
def test_page_blocks_hold_only_the_summary_facts(outcome):
    summary = CaseSummary(
        number="K7Q2XM",
        urgency="STAT",
        subspecialty="Chest",
        modalities=("CT",),
        body_parts=("CHEST",),
        age_band="40-49",
        sla_due_at=datetime(2025, 3, 1, 14, 5, tzinfo=UTC),
    )
    facts = ["K7Q2XM", "STAT", "Chest", "CT", "chest", "40-49", "2025-03-01 14:05 UTC"]
    words = [
        "Overread", "case", "Urgency", "Modality", "Body part", "Subspecialty", "Age band",
        "SLA deadline", "Purpose", "Read", "read", "needed by", "Accept", "Decline",
        "Declined by you at 14:05 UTC",
    ]  # fmt: skip
    structure = [
        "plain_text", "mrkdwn", "header", "section", "actions", "button", "primary",
        ACCEPT_ACTION, DECLINE_ACTION, "case_actions", "case_outcome",
    ]  # fmt: skip
    known = sorted(facts + words + structure, key=len, reverse=True)
    for leaf in leaves(page_message(summary, "read", outcome)):
        for word in known:
            leaf = leaf.replace(word, "")
        assert re.fullmatch(r"[\s*,.:]*", leaf), f"unexpected text in the page: {leaf!r}"


# --- Accept, Decline, taken -----------------------------------------------------------
@BOTH_DATABASES
def test_accept_claims_the_case_edits_the_page_and_posts_the_link(
    app, fake_slack, alice, client, frozen_clock, paged_case
):
    case = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)

    answer = fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=channel, ts=ts)
    assert (answer.status, answer.text) == (200, "")
    settle(app)

    accepted = load(app, case)
    assert (accepted.state, accepted.assignee_id) == (State.ACCEPTED, alice.id)
    (update,) = fake_slack.calls("chat.update")
    assert (update.params["channel"], update.params["ts"]) == (channel, ts)
    page = fake_slack.message(channel, ts)
    assert [block["type"] for block in page["blocks"]] == ["header", "section", "section"]
    assert f"Accepted by you at {frozen_clock.moment:%H:%M} UTC" in all_text(page["blocks"])

    (link_row,) = outbox(app, kind=LINK_KIND)
    assert (link_row.channel, link_row.recipient) == ("slack", ALICE)
    drain(app)
    (ephemeral,) = fake_slack.calls("chat.postEphemeral")
    assert (ephemeral.params["channel"], ephemeral.params["user"]) == (channel, ALICE)
    assert ephemeral.params["unfurl_links"] is False
    url = re.search(r"https?://\S+/l/[\w-]+", ephemeral.text).group(0)
    assert url.startswith(app.config["BASE_URL"] + "/l/")
    assert client.get(url.removeprefix(app.config["BASE_URL"])).status_code == 200
    assert outbox(app, kind=LINK_KIND)[0].status == Status.SENT
    assert_no_phi(app, fake_slack, case)


def test_decline_edits_the_page(app, fake_slack, alice, bob, client, paged_case):
    case = paged_case(alice, bob)
    channel, ts = page_of(fake_slack, ALICE)

    fake_slack.click(client, ALICE, DECLINE_ACTION, channel=channel, ts=ts)
    settle(app)

    offers = {offer.radiologist_id: offer.status for offer in load(app, case).offers}
    assert offers == {alice.id: "declined", bob.id: "open"}
    page = fake_slack.message(channel, ts)
    assert "Declined by you at" in all_text(page["blocks"])
    assert not [block for block in page["blocks"] if block["type"] == "actions"]


@BOTH_DATABASES
def test_first_accept_wins_and_the_other_page_says_taken(
    app, fake_slack, alice, bob, client, paged_case
):
    case = paged_case(alice, bob)
    alice_page, bob_page = page_of(fake_slack, ALICE), page_of(fake_slack, BOB)

    fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=alice_page[0], ts=alice_page[1])
    settle(app)
    fake_slack.click(client, BOB, ACCEPT_ACTION, channel=bob_page[0], ts=bob_page[1])
    settle(app)

    assert load(app, case).assignee_id == alice.id
    (refusal,) = responses(fake_slack)
    assert refusal["response_type"] == "ephemeral"
    assert refusal["text"] == f"No case {case.number} is offered to you."

    drain(app)  # the link for Alice, and "taken" for Bob
    (taken_row,) = outbox(app, kind=TAKEN_KIND)
    assert (taken_row.status, taken_row.recipient) == (Status.SENT, BOB)
    (update,) = [c for c in fake_slack.calls("chat.update") if c.params["channel"] == dm(BOB)]
    assert update.params["ts"] == bob_page[1]
    page = fake_slack.message(*bob_page)
    assert f"Case {case.number} was taken by another radiologist" in all_text(page["blocks"])
    assert "*Urgency*" in all_text(page["blocks"])  # the facts stay
    assert not [block for block in page["blocks"] if block["type"] == "actions"]


def test_losing_a_race_marks_the_page_taken(
    app, fake_slack, alice, client, monkeypatch, paged_case
):
    case = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)

    def lose(user, number, via):
        raise CaseTaken(f"Case {number} was already accepted by another radiologist.")

    monkeypatch.setattr(answers, "accept_page", lose)
    fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=channel, ts=ts)
    settle(app)
    page = fake_slack.message(channel, ts)
    assert f"Case {case.number} was taken by another radiologist" in all_text(page["blocks"])


def test_taken_news_for_a_deleted_page_goes_as_a_new_dm(
    app, fake_slack, alice, bob, client, paged_case
):
    paged_case(alice, bob)
    alice_page, bob_page = page_of(fake_slack, ALICE), page_of(fake_slack, BOB)
    fake_slack.delete_message(*bob_page)  # Bob deleted the page

    fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=alice_page[0], ts=alice_page[1])
    settle(app)
    drain(app)

    (taken_row,) = outbox(app, kind=TAKEN_KIND)
    assert taken_row.status == Status.SENT
    (update,) = [c for c in fake_slack.calls("chat.update") if c.params["channel"] == dm(BOB)]
    assert update.error == "message_not_found"
    news = [c for c in fake_slack.calls("chat.postMessage") if c.params["channel"] == dm(BOB)]
    assert "was taken by another radiologist" in news[-1].text


# --- what Slack sends us: signatures, retries, strangers --------------------------------
@pytest.mark.parametrize(
    "tamper",
    [{"signature": "v0=" + "0" * 64}, {"timestamp": int(time.time()) - 10 * 60}],
    ids=["bad signature", "stale timestamp"],
)
def test_unsigned_or_stale_requests_are_refused(app, fake_slack, alice, client, tamper, paged_case):
    case = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)
    payload = fake_slack.button_payload(ALICE, ACCEPT_ACTION, channel=channel, ts=ts)

    answer = fake_slack.post(client, payload, **tamper)
    settle(app)

    assert answer.status == 401
    assert load(app, case).state == State.OFFERED
    assert count(app, InboundMessage) == 0
    assert not fake_slack.calls("chat.update") and not responses(fake_slack)


@BOTH_DATABASES
def test_a_retry_of_a_handled_click_is_ignored(app, fake_slack, alice, client, paged_case):
    paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)
    payload = fake_slack.button_payload(ALICE, ACCEPT_ACTION, channel=channel, ts=ts)

    assert fake_slack.post(client, payload).status == 200
    settle(app)
    retried = fake_slack.post(client, payload, retry_num=1)
    settle(app)

    assert (retried.status, retried.text) == (200, "")
    assert len(fake_slack.calls("chat.update")) == 1
    assert not responses(fake_slack)  # no "cannot be accepted" for the repeat
    assert len(outbox(app, kind=LINK_KIND)) == 1
    assert count(app, InboundMessage, InboundMessage.provider == "slack") == 1


def test_an_unknown_slack_user_is_refused_and_audited(app, fake_slack, alice, client, paged_case):
    case = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)

    fake_slack.click(client, STRANGER, ACCEPT_ACTION, channel=channel, ts=ts)
    settle(app)

    assert load(app, case).state == State.OFFERED
    (refusal,) = responses(fake_slack)
    assert refusal["response_type"] == "ephemeral"
    assert "not linked to an Overread radiologist" in refusal["text"]
    assert not fake_slack.calls("chat.update")
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "slack.refused")
        ).all()
        assert event.target == f"slack:{STRANGER}"
        assert json.loads(event.details)["case"] == case.number


def test_the_answer_does_not_wait_for_slow_work(app, fake_slack, alice, paged_case):
    """Over real HTTP: the ack comes back while chat.update is still being slow."""
    paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)
    fake_slack.command(app.test_client(), ALICE, "help")  # Bolt's one auth.test is done here
    settle(app)
    fake_slack.delay_next(1, 1.8, method="chat.update")  # slow, within the client's 2 s

    with harness.live_server(app) as url:
        answer = fake_slack.click(url, ALICE, ACCEPT_ACTION, channel=channel, ts=ts)
        assert answer.status == 200
        assert answer.seconds < 1.0, f"acknowledged after {answer.seconds:.2f}s"
        assert not fake_slack.calls("chat.update")
        settle(app)
    (update,) = fake_slack.calls("chat.update")
    assert update.ok


# --- /overread ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["help", "", "dance"])
def test_overread_help(app, fake_slack, client, text):
    answer = fake_slack.command(client, STRANGER, text)
    settle(app)
    assert answer.status == 200
    (reply,) = responses(fake_slack)
    assert reply["response_type"] == "ephemeral"
    for verb in ("mine", "oncall", "status CASE", "help"):
        assert f"/overread {verb}" in all_text(reply["blocks"])


def test_overread_mine_lists_held_cases_and_reissues_links(
    app, fake_slack, alice, client, paged_case
):
    case = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)
    fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=channel, ts=ts)
    settle(app)
    drain(app)

    fake_slack.command(client, ALICE, "mine")
    settle(app)
    (reply,) = responses(fake_slack)
    listed = all_text(reply["blocks"])
    assert case.number in listed and "accepted" in listed
    (button,) = [b["accessory"] for b in reply["blocks"] if "accessory" in b]
    assert (button["action_id"], button["value"]) == (LINK_ACTION, case.number)

    payload = fake_slack.button_payload(
        ALICE, LINK_ACTION, channel="C0GENERAL", ts="1.2", value=case.number, ephemeral=True
    )
    fake_slack.post(client, payload)
    settle(app)
    assert "new viewing link" in responses(fake_slack)[-1]["text"]
    assert len(outbox(app, kind=LINK_KIND)) == 2
    drain(app)
    assert len(fake_slack.calls("chat.postEphemeral")) == 2
    assert_no_phi(app, fake_slack, case)


def test_overread_oncall_names_who_is_on_call_now_and_next(app, fake_slack, alice, bob, client):
    with app.app_context():
        layer = Layer(
            position=1,
            name="Primary",
            rotation_days=7,
            starts_on=(datetime.now(UTC) - timedelta(days=2)).date(),
        )
        layer.members = [
            LayerMember(position=1, user_id=alice.id),
            LayerMember(position=2, user_id=bob.id),
        ]
        db.session.add(Schedule(name="General radiology", subspecialty="general", layers=[layer]))
        db.session.commit()

    fake_slack.command(client, ALICE, "oncall")
    settle(app)
    (reply,) = responses(fake_slack)
    shown = all_text(reply["blocks"])
    assert "General radiology" in shown
    assert "Now: Alice Reader" in shown
    assert "Next: Bob Second" in shown
    assert "@" not in shown  # names only: no e-mail addresses


def test_overread_status_of_an_own_case_and_of_someone_elses(
    app, fake_slack, alice, bob, client, create_user, paged_case
):
    mine = paged_case(alice)
    channel, ts = page_of(fake_slack, ALICE)
    fake_slack.click(client, ALICE, ACCEPT_ACTION, channel=channel, ts=ts)
    settle(app)
    carol = radiologist(app, create_user, "U0CAROL03", "Carol Third")
    theirs = paged_case(carol, sample="MR_small.dcm")

    for number in (mine.number.lower(), theirs.number):  # one at a time: replies in order
        fake_slack.command(client, ALICE, f"status {number}")
        settle(app)

    own, other = responses(fake_slack)
    shown = all_text(own["blocks"])
    for expected in (mine.number, "accepted", "STAT", "Alice Reader"):
        assert expected in shown
    assert other["text"] == f"No case {theirs.number} is offered to you."
    assert "blocks" not in other or theirs.number not in all_text(other.get("blocks"))
    assert count(app, AuditEvent, AuditEvent.action == "slack.refused") == 1


def test_overread_status_before_anyone_accepts(app, fake_slack, alice, client, paged_case):
    case = paged_case(alice)
    fake_slack.command(client, ALICE, f"status {case.number}")
    settle(app)
    (reply,) = responses(fake_slack)
    assert "not yet accepted" in all_text(reply["blocks"])


def test_commands_need_a_linked_account(app, fake_slack, client):
    fake_slack.command(client, STRANGER, "mine")
    settle(app)
    (reply,) = responses(fake_slack)
    assert "not linked" in reply["text"]
    assert count(app, AuditEvent, AuditEvent.action == "slack.refused") == 1


# --- delivery failures --------------------------------------------------------------------
def test_slack_500_is_retried_after_the_backoff(app, fake_slack, alice, frozen_clock, paged_case):
    fake_slack.fail_next(1, 500, method="chat.postMessage")
    paged_case(alice)

    (row,) = outbox(app, kind=PAGE_KIND)
    assert (row.status, row.attempts) == (Status.PENDING, 1)
    assert row.last_error == "Slack chat.postMessage: HTTP 500, unexpected answer"
    assert drain(app) == 0  # not before the backoff

    frozen_clock.advance(timedelta(seconds=app.config["DISPATCH_BACKOFF_SECONDS"]))
    drain(app)
    (row,) = outbox(app, kind=PAGE_KIND)
    assert (row.status, row.attempts, row.delivered_via) == (Status.SENT, 2, "slack")
    assert [c.status for c in fake_slack.calls("chat.postMessage")] == [500, 200]


@pytest.mark.parametrize(
    ("knob", "error", "status"),
    [
        (
            lambda fake: fake.ratelimit_next(1),
            "Slack conversations.open: HTTP 429, ratelimited",
            Status.PENDING,  # retried after the backoff
        ),
        (
            lambda fake: fake.error_next(1, "user_not_found"),
            "Slack conversations.open: HTTP 200, user_not_found",
            Status.FAILED,  # never retried: the SMS fallback (if any) takes over at once
        ),
        (
            lambda fake: fake.hang_next(1),
            "Slack conversations.open: TimeoutError",
            Status.PENDING,
        ),
    ],
    ids=["rate limited", "user not found", "timeout"],
)
def test_slack_refusals_and_timeouts_are_delivery_errors(
    app, fake_slack, alice, knob, error, status, paged_case
):
    knob(fake_slack)
    started = time.monotonic()
    paged_case(alice)
    assert time.monotonic() - started < 15

    (row,) = outbox(app, kind=PAGE_KIND)
    assert (row.status, row.attempts, row.last_error) == (status, 1, error)
    assert not fake_slack.calls("chat.postMessage")


# --- configuration ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [{}, {"SLACK_BOT_TOKEN": "xoxb-test"}, {"SLACK_SIGNING_SECRET": "a-secret"}],
    ids=["none", "token only", "secret only"],
)
def test_without_slack_settings_the_endpoint_is_off_and_pages_stay_in_the_log(make_app, settings):
    bare = make_app(**settings)
    response = bare.test_client().post("/slack/events", data={"payload": "{}"})
    assert (response.status_code, response.get_data(as_text=True)) == (
        404,
        "Slack is not configured",
    )
    with bare.test_request_context():
        assert isinstance(build_channels(bare.config)["slack"], LogChannel)


def test_settled_page_keeps_the_facts_and_drops_the_buttons():
    page = page_message(
        CaseSummary(
            number="K7Q2XM",
            urgency="Urgent",
            subspecialty="Neuro",
            modalities=("MR",),
            body_parts=(),
            age_band="child",
            sla_due_at=datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        ),
        "overread",
    )
    first = settled_page(page["blocks"], "K7Q2XM", "Declined by you at 09:00 UTC")
    again = settled_page(first["blocks"], "K7Q2XM", "Case K7Q2XM was taken by another radiologist")
    assert [b["type"] for b in again["blocks"]] == ["header", "section", "section"]
    assert "Declined" not in all_text(again) and "Overread (second review)" in all_text(again)
