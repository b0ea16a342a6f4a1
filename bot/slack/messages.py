"""The Slack bot's messages, built by pure functions from PHI-free facts.

Each function returns the keyword arguments of a Slack message (``text`` and,
mostly, ``blocks``). What a message may say about a case comes from
:class:`portal.cases.summary.CaseSummary` (number, urgency, modality, body
part, subspecialty, age band, SLA deadline) and the case's workflow (state,
who reads it); never a patient's name, ID, date of birth or free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from portal.cases.summary import CaseSummary

if TYPE_CHECKING:
    from portal.oncall.schedules import BoardRow, Shift

ACCEPT_ACTION = "case_accept"
DECLINE_ACTION = "case_decline"
LINK_ACTION = "case_link"
ACTIONS_BLOCK = "case_actions"
OUTCOME_BLOCK = "case_outcome"
COMMAND = "/overread"
MAX_LISTED = 20  # cases in one /overread mine answer (Slack allows 50 blocks)

Message = dict[str, Any]


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def utc(moment: datetime) -> str:
    """``"2025-03-01 14:05 UTC"``."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def clock_time(moment: datetime) -> str:
    """``"14:05 UTC"``."""
    return moment.strftime("%H:%M UTC")


def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": False}


def _mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def _section(text: str, block_id: str | None = None) -> dict:
    block = {"type": "section", "text": _mrkdwn(text)}
    if block_id:
        block["block_id"] = block_id
    return block


def _field(label: str, value: str) -> dict:
    return _mrkdwn(f"*{label}*\n{escape(value)}")


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    button = {"type": "button", "text": _plain(text), "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


# --- the page ---------------------------------------------------------------------
def _modality(summary: CaseSummary) -> str:
    return "/".join(summary.modalities) or "imaging"


def _body_part(summary: CaseSummary) -> str:
    return ", ".join(summary.body_parts).lower() or "not stated"


def _purpose(purpose: str) -> str:
    return "Overread (second review)" if purpose == "overread" else "Read"


def page_message(summary: CaseSummary, purpose: str, outcome: str | None = None) -> Message:
    """The page offering a case: facts, then Accept/Decline, or ``outcome`` once answered."""
    facts = [
        _field("Urgency", summary.urgency),
        _field("Modality", _modality(summary)),
        _field("Body part", _body_part(summary)),
        _field("Subspecialty", summary.subspecialty),
        _field("Age band", summary.age_band),
        _field("SLA deadline", utc(summary.sla_due_at)),
        _field("Purpose", _purpose(purpose)),
    ]
    blocks = [
        {"type": "header", "text": _plain(f"Overread {summary.urgency} case {summary.number}")},
        {"type": "section", "fields": facts},
    ]
    if outcome is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    _button("Accept", ACCEPT_ACTION, summary.number, "primary"),
                    _button("Decline", DECLINE_ACTION, summary.number),
                ],
            }
        )
        text = (
            f"Overread {summary.headline}, case {summary.number}: "
            f"{_purpose(purpose).lower()} needed by {utc(summary.sla_due_at)}."
        )
    else:
        blocks.append(_section(f"*{escape(outcome)}*", OUTCOME_BLOCK))
        text = f"Overread case {summary.number}: {outcome}"
    return {"text": escape(text), "blocks": blocks}


def settled_page(blocks: Sequence[dict], number: str, outcome: str) -> Message:
    """The page as Slack shows it, its buttons (and any earlier outcome) replaced by ``outcome``."""
    kept = [
        block
        for block in blocks
        if block.get("type") != "actions" and block.get("block_id") != OUTCOME_BLOCK
    ]
    kept.append(_section(f"*{escape(outcome)}*", OUTCOME_BLOCK))
    return {"text": escape(f"Overread case {number}: {outcome}"), "blocks": kept}


def accepted_outcome(at: datetime) -> str:
    return f"Accepted by you at {clock_time(at)}"


def declined_outcome(at: datetime) -> str:
    return f"Declined by you at {clock_time(at)}"


def taken_outcome(number: str) -> str:
    return f"Case {number} was taken by another radiologist"


# --- plain notes ----------------------------------------------------------------
def note_message(text: str) -> Message:
    """A message of plain text (a viewing link, news, a refusal), links never unfurled."""
    return {"text": escape(text)}


# --- /overread ------------------------------------------------------------------
def help_message() -> Message:
    lines = [
        f"`{COMMAND} mine`: your open cases, each with a button for a fresh viewing link",
        f"`{COMMAND} oncall`: who is on call now and next, per schedule",
        f"`{COMMAND} status CASE`: where a case stands (state, urgency, SLA deadline, reader)",
        f"`{COMMAND} help`: this list",
    ]
    return {"text": "Overread commands", "blocks": [_section("\n".join(lines))]}


def mine_message(cases: Sequence[tuple[CaseSummary, str]]) -> Message:
    """The caller's open cases (summary and state label), each with "Send me a link"."""
    if not cases:
        return {"text": "You hold no open cases."}
    blocks = [_section(f"*Your open cases ({len(cases)})*")]
    for summary, state in cases[:MAX_LISTED]:
        line = (
            f"*{summary.number}*: {escape(summary.headline)}, {escape(state)}, "
            f"due {utc(summary.sla_due_at)}"
        )
        block = _section(line)
        block["accessory"] = _button("Send me a link", LINK_ACTION, summary.number)
        blocks.append(block)
    if len(cases) > MAX_LISTED:
        blocks.append(_section(f"…and {len(cases) - MAX_LISTED} more on the web."))
    return {"text": f"Your open cases: {len(cases)}", "blocks": blocks}


def _names(shifts: Iterable[Shift]) -> str:
    return ", ".join(dict.fromkeys(escape(shift.user.name) for shift in shifts)) or "nobody"


def oncall_message(board: Sequence[BoardRow]) -> Message:
    """Who is on call now and next on each schedule: names only."""
    if not board:
        return {"text": "No on-call schedules are set up yet."}
    blocks = [_section("*On call*")]
    for row in board:
        upcoming = ""
        if row.next:
            upcoming = f" from {utc(min(shift.starts_at for shift in row.next))}"
        blocks.append(
            _section(
                f"*{escape(row.schedule.name)}*\n"
                f"Now: {_names(row.now)}\nNext: {_names(row.next)}{upcoming}"
            )
        )
    return {"text": "Who is on call", "blocks": blocks}


def status_message(summary: CaseSummary, state: str, reader: str | None) -> Message:
    """Where a case stands; ``reader`` is the accepting radiologist's name, if any."""
    fields = [
        _field("State", state),
        _field("Urgency", summary.urgency),
        _field("SLA deadline", utc(summary.sla_due_at)),
        _field("Radiologist", reader or "not yet accepted"),
    ]
    return {
        "text": escape(f"Case {summary.number}: {state}"),
        "blocks": [
            _section(f"*Case {summary.number}*: {escape(summary.headline)}"),
            {"type": "section", "fields": fields},
        ],
    }
