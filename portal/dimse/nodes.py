"""Remote DICOM nodes: which calling AE titles may push studies, and for which account.

Operations add to the current transaction and audit what they change; the
caller commits.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.operations import record
from portal.auth.models import User
from portal.auth.operations import find_user
from portal.cases.models import Case
from portal.dimse.models import RemoteNode
from portal.errors import Conflict, InvalidInput, NotFound
from portal.extensions import db

AE_TITLE_MAX_LENGTH = 16


def normalise_ae_title(value: str) -> str:
    """Return ``value`` as an AE title without its non-significant leading and trailing spaces.

    PS3.5 allows 1-16 characters of the default repertoire (printable ASCII)
    except the backslash; PS3.8 makes leading and trailing spaces insignificant.

    :raise InvalidInput: the title is empty, all spaces, too long, or holds a
        backslash, a control character or a non-ASCII character.
    """
    title = value.strip(" ")
    if not title:
        raise InvalidInput("An AE title must not be empty or all spaces.")
    if len(title) > AE_TITLE_MAX_LENGTH:
        raise InvalidInput(f"An AE title has at most {AE_TITLE_MAX_LENGTH} characters.")
    if any(not (" " <= char <= "~") or char == "\\" for char in title):
        raise InvalidInput(
            "An AE title may hold printable ASCII characters only, and no backslash."
        )
    return title


def find_node(ae_title: str) -> RemoteNode | None:
    """Return the node registered for ``ae_title`` (compared without outer spaces)."""
    return db.session.scalars(
        select(RemoteNode).where(RemoteNode.ae_title == ae_title.strip(" "))
    ).first()


def list_nodes() -> list[RemoteNode]:
    """Return every registered node, by AE title."""
    return list(db.session.scalars(select(RemoteNode).order_by(RemoteNode.ae_title)))


def add_node(
    ae_title: str,
    owner_email: str,
    description: str = "",
    actor=None,
    case_number: str | None = None,
) -> RemoteNode:
    """Let ``ae_title`` push studies that are ingested for the account ``owner_email``.

    :param case_number: also attach what the node sends to this case of the owner's.
    :raise InvalidInput: the AE title is malformed.
    :raise NotFound: there is no active account with that email, or no such case of theirs.
    :raise Conflict: the AE title is registered already.
    """
    title = normalise_ae_title(ae_title)
    owner = find_user(owner_email)
    if owner is None or not owner.active:
        raise NotFound(f"No active account for {owner_email}.")
    if find_node(title) is not None:
        raise Conflict(f"The AE title {title!r} is registered already.")
    case_id = _owners_case(owner, case_number) if case_number else None
    node = RemoteNode(
        ae_title=title, owner_id=owner.id, case_id=case_id, description=description.strip()
    )
    db.session.add(node)
    db.session.flush()
    record(
        "dimse.node_added",
        actor,
        target=f"remote_node:{node.id}",
        ae_title=title,
        owner_id=owner.id,
        case_id=case_id,
    )
    return node


def _owners_case(owner: User, case_number: str) -> int:
    case = db.session.scalars(select(Case).where(Case.number == case_number.upper())).first()
    if case is None or owner.id not in (case.requester_id, case.referring_physician_id):
        raise NotFound(f"{owner.email} has no case {case_number}.")
    return case.id


def remove_node(ae_title: str, actor=None) -> None:
    """Stop accepting pushes from ``ae_title``; what it sent before stays.

    :raise NotFound: no node has that AE title.
    """
    node = find_node(ae_title)
    if node is None:
        raise NotFound(f"No remote node has the AE title {ae_title.strip()!r}.")
    record(
        "dimse.node_removed",
        actor,
        target=f"remote_node:{node.id}",
        ae_title=node.ae_title,
        owner_id=node.owner_id,
    )
    db.session.delete(node)


def pushing_node(ae_title: str) -> RemoteNode | None:
    """Return the active node of ``ae_title`` if its owner is active too, else ``None``."""
    node = find_node(ae_title)
    if node is None or not node.active or not node.owner.active:
        return None
    return node
