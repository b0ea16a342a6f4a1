"""Replacement values for de-identification, stored so a report can be related back.

Replacements are random, never computed from the original: a new UID is a
UUID-derived ``2.25.`` UID, a pseudonym ``OVR-`` and 12 random base-32
characters. What ties a replacement to its original is the
:class:`~portal.deid.models.DeidMapping` row alone, and its (scope, kind,
original) unique constraint is what keeps two concurrent ingests of one study
agreeing on the same replacement.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.deid.models import DeidMapping
from portal.extensions import db

KINDS = ("uid", "patient_id", "accession")
PSEUDONYM_PREFIX = "OVR-"
SCOPE_LENGTH = 100  # DeidMapping.scope
_INSERT_ATTEMPTS = 3


def new_replacement(kind: str) -> str:
    """Return a fresh random replacement for a value of ``kind``.

    :raise ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind == "uid":
        return f"2.25.{uuid.uuid4().int}"
    if kind in KINDS:  # 16 characters: fits an Accession Number (SH) too
        token = base64.b32encode(secrets.token_bytes(10)).decode()[:12]
        return PSEUDONYM_PREFIX + token
    raise ValueError(f"unknown replacement kind {kind!r}")


class MemoryMapper:
    """Replacements kept in memory only: for tools and tests that need no way back."""

    def __init__(self) -> None:
        self.replacements: dict[tuple[str, str], str] = {}

    def replacement(self, kind: str, original: str) -> str:
        """Return the replacement of ``original``, making one the first time."""
        return self.replacements.setdefault((kind, original), new_replacement(kind))


class DeidMapper:
    """Replacements stored as :class:`DeidMapping` rows of one scope (a case, a batch).

    Rows are added to the session inside savepoints; the caller commits (or
    rolls back) with the rest of its work.

    :param scope: what the replacements are consistent within; the same
        original gets a different replacement in another scope.
    :param owner_id: the account the mapping belongs to.
    :raise ValueError: ``scope`` is empty or too long.
    """

    def __init__(self, scope: str, owner_id: int | None) -> None:
        if not scope or len(scope) > SCOPE_LENGTH:
            raise ValueError(f"a de-identification scope has 1 to {SCOPE_LENGTH} characters")
        self.scope = scope
        self.owner_id = owner_id
        self._known: dict[tuple[str, str], str] = {}

    def replacement(self, kind: str, original: str) -> str:
        """Return the scope's replacement of ``original``, storing a new one the first time.

        :raise IntegrityError: the row could be neither inserted nor found.
        """
        key = (kind, original)
        if key not in self._known:
            self._known[key] = self._stored(kind, original) or self._insert(kind, original)
        return self._known[key]

    def _stored(self, kind: str, original: str) -> str | None:
        return db.session.scalar(
            select(DeidMapping.replacement).where(
                DeidMapping.scope == self.scope,
                DeidMapping.kind == kind,
                DeidMapping.original == original,
            )
        )

    def _insert(self, kind: str, original: str) -> str:
        """Insert a new replacement; if another ingest won the race, use its one."""
        for attempt in range(_INSERT_ATTEMPTS):
            candidate = new_replacement(kind)
            row = DeidMapping(
                scope=self.scope,
                kind=kind,
                original=original,
                replacement=candidate,
                owner_id=self.owner_id,
            )
            try:
                with db.session.begin_nested():
                    db.session.add(row)
                return candidate
            except IntegrityError:
                winner = self._stored(kind, original)
                if winner is not None:
                    return winner
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def original_for(scope: str, kind: str, replacement: str) -> str | None:
    """Return the original value that ``replacement`` stands for in ``scope``, if any."""
    return db.session.scalar(
        select(DeidMapping.original).where(
            DeidMapping.scope == scope,
            DeidMapping.kind == kind,
            DeidMapping.replacement == replacement,
        )
    )
