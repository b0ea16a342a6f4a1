"""``flask demo``: demo accounts for trying Overread on one machine."""

from __future__ import annotations

from datetime import time

import click
from flask import current_app
from flask.cli import with_appcontext
from pydicom.data import get_testdata_file
from sqlalchemy import select

from portal import clock
from portal.auth import operations
from portal.auth.models import Role
from portal.cases.forms import CONSENT_TEXT
from portal.cases.models import Case
from portal.cases.operations import CaseRequest, offer_case, submit_case
from portal.cases.states import Subspecialty, Urgency
from portal.extensions import db
from portal.links.pin import set_pin
from portal.oncall.models import Schedule
from portal.oncall.profiles import profile_for
from portal.oncall.schedule_edits import LayerSpec, add_layer, create_schedule, set_layer_members
from portal.studies.ingest import ingest_file
from portal.studies.models import Study

DEMO_PIN = "468024"
DEMO_ACCOUNTS = (
    ("patient@demo.example.org", "Pat Demo", Role.PATIENT, "demo-patient-pass"),
    ("physician@demo.example.org", "Dr Phil Demo", Role.PHYSICIAN, "demo-physician-pass"),
    ("radiologist@demo.example.org", "Dr Rad Demo", Role.RADIOLOGIST, "demo-radiologist-pass"),
    ("admin@demo.example.org", "Ada Admin", Role.ADMIN, "demo-admin-pass"),
)


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create the demo accounts (once) and print their logins."""
    if current_app.config["ENV_NAME"] == "production":
        raise click.ClickException("demo accounts have published passwords; not in production")
    for email, name, role, password in DEMO_ACCOUNTS:
        if operations.find_user(email) is None:
            operations.create_user(email, name, role, password)
    db.session.commit()
    _on_call_rota()
    number = _sample_case()
    if number:
        click.echo(f"Sample case {number}: the demo patient's CT, offered to the demo radiologist.")
    click.echo("Demo logins (radiologist and admin enrol an authenticator app at first sign-in):")
    for email, _, role, password in DEMO_ACCOUNTS:
        click.echo(f"  {role.value:<12} {email:<34} {password}")
    click.echo(
        f"The demo radiologist is on call (General) and opens viewing links with PIN {DEMO_PIN}."
    )


def _on_call_rota() -> None:
    """Put the demo radiologist on call for general cases (once), with a viewer PIN.

    Without Slack or Twilio configured, pages stay on the log channel: the admin
    outbox page shows them, and the viewing link a page leads to.
    """
    if db.session.scalar(select(Schedule.id)) is not None:
        return
    admin = operations.find_user(DEMO_ACCOUNTS[3][0])
    radiologist = operations.find_user(DEMO_ACCOUNTS[2][0])
    profile = profile_for(radiologist)
    profile.subspecialties = "general,body"
    set_pin(profile, DEMO_PIN)
    db.session.add(profile)
    schedule = create_schedule(admin, "General on call", Subspecialty.GENERAL, "UTC")
    today = clock.now().date()
    layer = add_layer(admin, schedule, LayerSpec("Primary", 1, 7, today, time(0, 0)))
    set_layer_members(admin, layer, [radiologist.id])
    db.session.commit()


def _sample_case() -> str | None:
    """Submit the demo patient's sample CT (pydicom's ``CT_small.dcm``) once; offer it."""
    patient = operations.find_user(DEMO_ACCOUNTS[0][0])
    if db.session.scalar(select(Case.id).where(Case.requester_id == patient.id)) is not None:
        return None
    result = ingest_file(get_testdata_file("CT_small.dcm"), patient, via="demo")
    study_id = db.session.scalar(
        select(Study.id).where(Study.study_instance_uid == result.study_instance_uid)
    )
    if study_id is None:
        return None
    request = CaseRequest(
        clinical_question="Sample case: is the CT normal?",
        urgency=Urgency.ROUTINE,
        study_ids=[study_id],
        subspecialty=Subspecialty.BODY,
        history="Demo data from pydicom's test files.",
        consent_text=CONSENT_TEXT,
    )
    case = submit_case(patient, request)
    radiologist = operations.find_user(DEMO_ACCOUNTS[2][0])
    offer_case(case.id, [radiologist], None)
    db.session.commit()
    return case.number
