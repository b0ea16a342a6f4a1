"""The vocabularies a case is described with."""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    SUBMITTED = "submitted"
    OFFERED = "offered"
    DECLINED = "declined"
    ACCEPTED = "accepted"
    REPORTED = "reported"
    OVERREAD_REQUESTED = "overread_requested"
    OVERREAD_DONE = "overread_done"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    UNASSIGNED = "unassigned"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


#: States in which the case still needs someone to act.
OPEN_STATES = frozenset(
    {
        State.SUBMITTED,
        State.OFFERED,
        State.DECLINED,
        State.ACCEPTED,
        State.OVERREAD_REQUESTED,
        State.UNASSIGNED,
    }
)

#: States in which nobody has accepted the read yet.
AWAITING_RADIOLOGIST = frozenset({State.SUBMITTED, State.OFFERED, State.DECLINED})


class Urgency(enum.StrEnum):
    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"

    @property
    def label(self) -> str:
        return "STAT" if self is Urgency.STAT else self.value.capitalize()


class Subspecialty(enum.StrEnum):
    GENERAL = "general"
    NEURO = "neuro"
    MSK = "msk"
    CHEST = "chest"
    BODY = "body"
    BREAST = "breast"
    PAEDIATRIC = "paediatric"
    CARDIAC = "cardiac"
    INTERVENTIONAL = "interventional"
    NUCLEAR = "nuclear"

    @property
    def label(self) -> str:
        return "MSK" if self is Subspecialty.MSK else self.value.capitalize()


class OfferStatus(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TAKEN = "taken"  # someone else accepted first
    WITHDRAWN = "withdrawn"  # reassigned, cancelled or expired


class OfferPurpose(enum.StrEnum):
    READ = "read"
    OVERREAD = "overread"


#: How each move reads in a sentence ("it cannot be {label}").
ACTION_LABELS = {
    "submit": "submitted",
    "offer": "offered",
    "accept": "accepted",
    "decline": "declined",
    "expire": "marked unassigned",
    "reassign": "reassigned",
    "sign_report": "reported",
    "request_overread": "sent for overread",
    "offer_overread": "offered for overread",
    "accept_overread": "accepted for overread",
    "decline_overread": "declined for overread",
    "sign_overread": "overread",
    "close": "closed",
    "cancel": "cancelled",
    "reopen": "reopened",
}
