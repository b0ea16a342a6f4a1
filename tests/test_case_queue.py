"""The coordinators' queue, and the admin's buttons on the case page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from portal.cases.states import State, Subspecialty, Urgency
from tests import case_support as cs
from tests.test_auth import location, text
from tests.test_cases_web import audit, browser, kinds, post


@pytest.fixture
def people(create_user):
    class People:
        patient = create_user("patient", name="Jane Roe")
        admin = create_user("admin", name="Ada Admin")
        rad1 = create_user("radiologist", name="Dr Rad One")
        rad2 = create_user("radiologist", name="Dr Rad Two")

    return People


def queue_numbers(client, query: str = "") -> list[str]:
    """Return the case numbers of the queue's rows, in order."""
    response = client.get(f"/cases/queue{query}")
    assert response.status_code == 200
    return re.findall(r'<tr class="queue-row[^"]*">\s*<td><a href="/cases/(\w+)"', text(response))


@pytest.fixture
def cases(app, people, frozen_clock):
    """Five cases submitted at different times; the clock ends at ``frozen_clock.moment``."""
    now = frozen_clock.moment

    def submitted(ago: timedelta, urgency: Urgency, **fields):
        frozen_clock.set(now - ago)
        return cs.submit(app, people.patient, urgency=urgency, **fields)

    made = {
        "on_time": submitted(timedelta(0), Urgency.ROUTINE, subspecialty=Subspecialty.NEURO),
        "late_first": submitted(timedelta(hours=2), Urgency.STAT),  # due 1 h ago
        "at_risk": submitted(timedelta(hours=3, minutes=30), Urgency.URGENT),  # 30 min left
        "late_second": submitted(timedelta(minutes=70), Urgency.STAT),  # due 10 min ago
        "cancelled": submitted(timedelta(hours=5), Urgency.STAT),
    }
    frozen_clock.set(now)
    with app.app_context():
        from portal.cases import operations
        from portal.extensions import db

        operations.cancel_case(made["cancelled"].id, db.session.merge(people.patient))
        db.session.commit()
    made["at_risk"] = cs.offer(app, made["at_risk"], people.rad1)
    return {name: case.number for name, case in made.items()}


@pytest.mark.parametrize("role", ["patient", "rad1"])
def test_only_admins_see_the_queue(app, people, role):
    assert browser(app, getattr(people, role)).get("/cases/queue").status_code == 403


def test_open_cases_come_late_first_then_at_risk_then_on_time(app, people, cases):
    client = browser(app, people.admin)
    assert queue_numbers(client) == [
        cases["late_first"],
        cases["late_second"],
        cases["at_risk"],
        cases["on_time"],
    ]
    html = text(client.get("/cases/queue"))
    assert "late by 1 h 0 min" in html and "30 min left" in html
    assert "1 open offer" in html


@pytest.mark.parametrize(
    ("query", "expected", "selected"),
    [
        ("?urgency=stat", ["late_first", "late_second"], 'value="stat" selected'),
        ("?subspecialty=neuro", ["on_time"], 'value="neuro" selected'),
        ("?state=offered", ["at_risk"], 'value="offered" selected'),
        ("?state=offered&urgency=stat", [], 'value="offered" selected'),
        ("?state=cancelled", ["late_first", "late_second", "at_risk", "on_time"], None),
        ("?urgency=whenever", ["late_first", "late_second", "at_risk", "on_time"], None),
    ],
)
def test_the_queue_filters_keep_their_values(app, people, cases, query, expected, selected):
    client = browser(app, people.admin)
    assert queue_numbers(client, query) == [cases[name] for name in expected]
    html = text(client.get(f"/cases/queue{query}"))
    if selected:
        assert selected in html
    else:
        assert " selected" not in html


def test_the_admin_list_links_to_the_queue(app, people, cases):
    html = text(browser(app, people.admin).get("/cases/"))
    assert 'href="/cases/queue"' in html
    assert all(f"Case {number}" in html for number in cases.values())


# --- the admin's buttons --------------------------------------------------------------------
def test_the_admin_reassigns_an_accepted_case(app, people):
    case = cs.accept(app, cs.offer(app, cs.submit(app, people.patient), people.rad1), people.rad1)
    client = browser(app, people.admin)
    page = text(client.get(f"/cases/{case.number}"))
    assert "Reassign to them" in page and "Dr Rad One (reading)" in page
    response = post(
        client, f"/cases/{case.number}/reassign", {"radiologists": [str(people.rad2.id)]}
    )
    assert location(response) == f"/cases/{case.number}"
    stored = cs.load(app, case)
    assert stored.state == State.OFFERED and stored.assignee_id is None
    assert [(o.radiologist_id, o.status) for o in stored.offers] == [
        (people.rad1.id, "accepted"),
        (people.rad2.id, "open"),
    ]
    (event,) = audit(app, case.id, "case.reassign")
    assert event.actor_id == people.admin.id and event.target == case.number
    assert "case.withdrawn-reassign" in kinds(app, case.id, people.rad1.email)
    assert "case.reassign" in kinds(app, case.id, people.rad2.email)
    assert "Reassigned to another radiologist (Ada Admin)" in text(
        client.get(f"/cases/{case.number}")
    )


def test_offering_nobody_new_is_refused_with_a_message(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1)
    client = browser(app, people.admin)
    post(client, f"/cases/{case.number}/offer", {"radiologists": [str(people.rad1.id)]})
    assert "no open offer of this case" in text(client.get(f"/cases/{case.number}"))
    post(client, f"/cases/{case.number}/offer", {})
    assert "Choose at least one radiologist" in text(client.get(f"/cases/{case.number}"))
    assert len(audit(app, case.id, "case.offer")) == 1


def test_the_admin_cancels_an_accepted_case_and_reopens_it(app, people, frozen_clock):
    case = cs.submit(app, people.patient, urgency=Urgency.STAT)
    case = cs.accept(app, cs.offer(app, case, people.rad1), people.rad1)
    client = browser(app, people.admin)
    post(client, f"/cases/{case.number}/cancel", {"cancel_reason": "Duplicate"})
    assert cs.load(app, case).state == State.CANCELLED
    assert "case.withdrawn-cancel" in kinds(app, case.id, people.rad1.email)
    assert browser(app, people.rad1).get(f"/cases/{case.number}").status_code == 404

    frozen_clock.advance(timedelta(minutes=5))
    page = text(client.get(f"/cases/{case.number}"))
    assert "Reopen with a fresh SLA" in page and "Cancel case" not in page
    post(client, f"/cases/{case.number}/reopen")
    stored = cs.load(app, case)
    assert stored.state == State.SUBMITTED and stored.assignee_id is None
    assert "case.reopen" in kinds(app, case.id, people.patient.email)
    assert stored.sla_due_at == frozen_clock.moment + timedelta(hours=1)
    actions = [(e.action, e.actor_id) for e in audit(app, case.id) if e.action != "case.viewed"]
    assert actions[-2:] == [("case.cancel", people.admin.id), ("case.reopen", people.admin.id)]
    page = text(client.get(f"/cases/{case.number}"))
    assert "Cancelled (Ada Admin)" in page and "Duplicate" in page and "Reopened" in page


def test_a_non_admin_cannot_use_the_admin_buttons(app, people):
    case = cs.submit(app, people.patient)
    client = browser(app, people.patient)
    for path in ("offer", "reassign", "reopen"):
        data = {"radiologists": [str(people.rad1.id)]}
        assert post(client, f"/cases/{case.number}/{path}", data).status_code == 403
    assert cs.load(app, case).state == State.SUBMITTED
    assert len(audit(app, action="authz.denied")) == 3
