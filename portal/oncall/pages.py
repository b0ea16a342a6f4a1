"""Pages: the Slack and SMS messages that offer a case to a radiologist.

A page is an outbox row written in the same transaction as the offer. Which
channels it goes on follows the radiologist's :class:`PagingProfile`: Slack,
SMS or both, with the other channel as the fallback when only one is wanted,
and held until quiet hours end unless the case is STAT. Nothing here names the
patient: a page carries the facts of :func:`portal.cases.summary.summarize`.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from portal import clock
from portal.auth.models import Role, User
from portal.cases.models import Case
from portal.cases.states import Urgency
from portal.cases.summary import summarize
from portal.extensions import db
from portal.notifications.models import Notification, Status
from portal.notifications.operations import cancel_pending, enqueue
from portal.notifications.secrets import FILL_IN
from portal.oncall.models import PageVia, PagingProfile

PAGE_KIND = "case.page"  # an offer to read or overread, on Slack or SMS
TAKEN_KIND = "case.page_taken"  # another radiologist answered first (Slack: the page is edited)
LINK_KIND = "case.link"  # a viewing link; the dispatcher fills in ``{secret}`` as it sends
ESCALATE_KIND = "case.escalate"  # the next escalation step, on the ``escalation`` channel
PAGE_CHANNELS = ("slack", "sms")


def profile_of(user: User) -> PagingProfile | None:
    return db.session.get(PagingProfile, user.id)


def reachable(profile: PagingProfile | None) -> dict[str, str]:
    """Return ``{channel: recipient}`` for the channels this profile can be paged on."""
    if profile is None:
        return {}
    found = {}
    if profile.slack_user_id:
        found["slack"] = profile.slack_user_id
    if profile.sms_number:
        found["sms"] = profile.sms_number
    return found


def page_text(case: Case, purpose: str) -> str:
    """The SMS page: one segment where it can be, and no patient details."""
    summary = summarize(case)
    what = "overread " if purpose == "overread" else ""
    return (
        f"Overread {summary.headline}, {what}case {case.number}. "
        f"Reply YES {case.number} to accept, NO {case.number} to decline."
    )


def page_radiologist(
    case: Case, user: User, purpose: str = "read", *, attempt: int = 0
) -> list[Notification]:
    """Queue the page(s) offering ``case`` to ``user``; the caller commits.

    :param attempt: a repeat page (a reminder in a later escalation round) has its own key.
    :return: the rows written; empty when the user can be reached on neither channel.
    """
    profile = profile_of(user)
    channels = reachable(profile)
    wanted = _wanted(profile, channels)
    due = _after_quiet_hours(profile, case)
    rows = []
    for channel in wanted:
        other = next((c for c in channels if c != channel), None)
        fallback = other if other is not None and other not in wanted else None
        rows.append(
            enqueue(
                channel=channel,
                recipient=channels[channel],
                kind=PAGE_KIND,
                body=page_text(case, purpose),
                subject=purpose,
                user_id=user.id,
                case_id=case.id,
                due_at=due,
                idempotency_key=f"case:{case.id}:v{case.version}:page:{user.id}:{channel}:{attempt}",
            )
        )
        if fallback is not None:
            rows[-1].fallback_channel = fallback
            rows[-1].fallback_recipient = channels[fallback]
    return rows


def _wanted(profile: PagingProfile | None, channels: dict[str, str]) -> list[str]:
    if profile is None or not channels:
        return []
    via = PageVia(profile.page_via)
    wanted = list(PAGE_CHANNELS) if via is PageVia.BOTH else [via.value]
    chosen = [channel for channel in wanted if channel in channels]
    return chosen or list(channels)  # the preferred channel is unset: use what there is


def _after_quiet_hours(profile: PagingProfile | None, case: Case) -> datetime:
    """Now, or the end of the radiologist's quiet hours for anything but STAT."""
    now = clock.now()
    if profile is None or case.urgency == Urgency.STAT:
        return now
    if profile.quiet_start is None or profile.quiet_end is None:
        return now
    zone = _zone(profile.timezone)
    local = now.astimezone(zone)
    if not _within(local.time(), profile.quiet_start, profile.quiet_end):
        return now
    end = datetime.combine(local.date(), profile.quiet_end, tzinfo=zone)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)


def _within(moment: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end  # the quiet hours cross midnight


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def pages_of(case: Case, *, user_id: int | None = None, statuses=None) -> list[Notification]:
    """The page rows of ``case`` (optionally one user's, in some statuses), oldest first."""
    query = select(Notification).where(
        Notification.case_id == case.id, Notification.kind == PAGE_KIND
    )
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    if statuses is not None:
        query = query.where(Notification.status.in_(list(statuses)))
    return db.session.scalars(query.order_by(Notification.id)).all()


def still_wanted(row: Notification) -> bool:
    """Whether a page or link that went astray is worth sending again on another channel.

    A page is, while its radiologist still has an open offer of the case; a link,
    while they still hold the case. Other messages always are.
    """
    case = db.session.get(Case, row.case_id) if row.case_id else None
    if case is None or row.kind not in (PAGE_KIND, LINK_KIND):
        return True
    if row.kind == LINK_KIND:
        return row.user_id in (case.assignee_id, case.overreader_id)
    return any(offer.radiologist_id == row.user_id for offer in case.open_offers())


def stop_paging(case: Case, reason: str) -> None:
    """Cancel every page and escalation step of ``case`` not sent yet; the caller commits."""
    pending = db.session.scalars(
        select(Notification).where(
            Notification.case_id == case.id,
            Notification.kind.in_((PAGE_KIND, ESCALATE_KIND)),
            Notification.status.in_((Status.PENDING, Status.SENDING)),
        )
    ).all()
    for row in pending:
        cancel_pending(row, reason)


def tell_taken(case: Case, users: list[User], action: str) -> None:
    """Tell the others paged that the case was taken, on the channels their page went out on.

    A Slack page is edited in place (the row refers to the page); an SMS page
    gets a short SMS. A page never sent needs no news: it was cancelled.
    """
    for user in users:
        for page in pages_of(case, user_id=user.id, statuses=(Status.SENT, Status.SENDING)):
            enqueue(
                channel=page.delivered_via or page.channel,
                recipient=page.recipient,
                kind=TAKEN_KIND,
                body=f"Overread case {case.number} was taken by another radiologist. "
                "Nothing more is needed.",
                user_id=user.id,
                case_id=case.id,
                idempotency_key=f"case:{case.id}:v{case.version}:{action}:taken:{page.id}",
            ).refers_to_id = page.id


def send_link(case: Case, user: User, channel: str) -> Notification | None:
    """Queue a viewing link for ``user`` on ``channel``; the code is made as it is sent.

    :return: the row, or ``None`` when ``user`` cannot be reached on ``channel``.
    """
    channels = reachable(profile_of(user))
    recipient = channels.get(channel)
    if recipient is None:
        return None
    now = clock.now()
    row = enqueue(
        channel=channel,
        recipient=recipient,
        kind=LINK_KIND,
        body=f"Overread case {case.number}, single-use viewing link: {FILL_IN}",
        user_id=user.id,
        case_id=case.id,
        idempotency_key=f"case:{case.id}:link:{user.id}:{channel}:{now.timestamp()}",
    )
    other = next((c for c in channels if c != channel), None)
    if other is not None:  # Slack down: the link goes by SMS, and the other way round
        row.fallback_channel, row.fallback_recipient = other, channels[other]
    return row


def page_admins(case: Case, news: str) -> None:
    """Page every active admin who has Slack or a verified mobile: a coordinator is needed."""
    admins = db.session.scalars(
        select(User).where(User.role == Role.ADMIN, User.active.is_(True))
    ).all()
    for admin in admins:
        for channel, recipient in reachable(profile_of(admin)).items():
            enqueue(
                channel=channel,
                recipient=recipient,
                kind="case.admin_page",
                body=f"Overread: {news} A coordinator is needed.",
                user_id=admin.id,
                case_id=case.id,
                idempotency_key=f"case:{case.id}:v{case.version}:admin-page:{admin.id}:{channel}",
            )
