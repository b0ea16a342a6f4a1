"""The DIMSE listener: a pynetdicom AE that answers C-ECHO and ingests what C-STORE sends.

Each association runs in a thread of its own. Only a registered, active
calling AE title gets an association; the instances it sends go through the
one ingest path for the node's owner, one app context per C-STORE, and are
audited together when the association ends.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.exc import SQLAlchemyError, StatementError

from portal.audit.operations import record_now
from portal.auth.models import User
from portal.cases.attach import attach_studies
from portal.dimse.contexts import supported_contexts
from portal.dimse.nodes import pushing_node
from portal.dimse.statuses import (
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    status,
    store_status,
)
from portal.errors import StorageError
from portal.extensions import db
from portal.studies.ingest import IngestResult, IngestStatus, ingest_file, record_ingest

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ parameters (PS3.8 9.3.4): result, source, reason/diagnostic.
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
NO_REASON_GIVEN = 0x01
CALLING_AE_NOT_RECOGNISED = 0x03


@dataclass
class Push:
    """What one association from a registered node has sent so far."""

    ae_title: str
    owner_id: int
    case_id: int | None = None
    results: list[IngestResult] = field(default_factory=list)


def disable_nagle(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: set ``TCP_NODELAY`` on the association's socket.

    With Nagle's algorithm on, each small C-STORE response waits for the
    peer's delayed ACK: one association moves ~19 instances/s instead of ~140.
    Bind it on both ends (listener and SCU).
    """
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DicomListener:
    """Answer C-ECHO and C-STORE for ``app`` as ``ae_title``."""

    def __init__(self, app: Flask, ae_title: str) -> None:
        self.app = app
        self.ae = AE(ae_title=ae_title)
        self.ae.supported_contexts = supported_contexts()
        self._pushes: dict[Association, Push] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port) in background threads; return the address."""
        # Write each received data set to a file as it arrives, not to memory.
        _config.STORE_RECV_CHUNKED_DATASET = True
        handlers = [
            (evt.EVT_CONN_OPEN, disable_nagle),
            (evt.EVT_REQUESTED, self._check_caller),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_RELEASED, self._finish),
            (evt.EVT_ABORTED, self._finish),
            (evt.EVT_CONN_CLOSE, self._finish),
        ]
        self._server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        bound_host, bound_port = self._server.server_address[:2]
        return bound_host, bound_port

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; give associations ``grace`` seconds to end, then abort them.

        Aborting runs the ``EVT_ABORTED`` handler, which audits what they stored.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        deadline = time.monotonic() + grace
        while self._established() and time.monotonic() < deadline:
            time.sleep(0.05)
        running = self._established()
        self.ae.shutdown()
        for association in running:  # let a C-STORE in progress finish its commit
            association.join(grace)

    def _established(self) -> list[Association]:
        """Return the associations past negotiation (a bare TCP probe is not one)."""
        return [assoc for assoc in self.ae.active_associations if assoc.is_established]

    # --- event handlers (each runs in an association's thread) ---------------------
    def _check_caller(self, event: evt.Event) -> None:
        """``EVT_REQUESTED``: reject callers that are not registered, active nodes."""
        title = event.assoc.requestor.primitive.calling_ae_title.strip()
        peer = event.assoc.requestor.address
        with self.app.app_context():
            try:
                node = pushing_node(title)
                push = Push(title, node.owner_id, node.case_id) if node is not None else None
                if node is None:
                    record_now("dimse.refused", target=f"ae_title:{title}", peer=peer)
            except Exception:  # a worker entry point: refuse for now, keep listening
                logger.exception("association from %s: checking the caller failed", peer)
                _reject(event.assoc, REJECTED_TRANSIENT, NO_REASON_GIVEN)
                return
            finally:
                db.session.remove()
        if push is None:
            logger.warning("refused association from unregistered AE title %r (%s)", title, peer)
            _reject(event.assoc, REJECTED_PERMANENT, CALLING_AE_NOT_RECOGNISED)
            return
        with self._lock:
            self._pushes[event.assoc] = push

    def _store(self, event: evt.Event) -> Dataset:
        """``EVT_C_STORE``: ingest the received file for the node's owner; answer a status."""
        with self._lock:
            push = self._pushes.get(event.assoc)
        if push is None:  # the caller check did not let it through; never store then
            return status(NOT_AUTHORIZED, "the calling AE title is not registered")
        with self.app.app_context():
            try:
                result = self._ingest(event.dataset_path, push.owner_id)
            except Exception as exc:  # a worker entry point: answer, keep the association
                return _failure(exc, push)
            finally:
                db.session.remove()
        push.results.append(result)
        return store_status(result)

    def _ingest(self, received: Path, owner_id: int) -> IngestResult:
        """Move the received Part-10 file to the spool folder and ingest it from there."""
        spool_dir = Path(self.app.config["SPOOL_DIR"])
        spool_dir.mkdir(parents=True, exist_ok=True)
        spooled = spool_dir / f"cstore-{uuid.uuid4().hex}.dcm"
        shutil.move(received, spooled)  # a rename when both share a file system
        try:
            owner = db.session.get_one(User, owner_id)
            return ingest_file(spooled, owner, via="cstore", audit=False)
        finally:
            spooled.unlink(missing_ok=True)

    def _finish(self, event: evt.Event) -> None:
        """Released, aborted or closed: audit what the association stored, once."""
        with self._lock:
            push = self._pushes.pop(event.assoc, None)
        if push is None or not push.results:
            return
        counts = Counter(result.status.value for result in push.results)
        logger.info("association from %s ended: %s", push.ae_title, dict(sorted(counts.items())))
        with self.app.app_context():
            try:
                owner = db.session.get_one(User, push.owner_id)
                record_ingest(push.results, owner, "cstore")
                if push.case_id is not None:
                    attach_studies(push.case_id, _stored_study_uids(push), owner)
                    db.session.commit()
            except Exception:  # a worker entry point: the instances are stored already
                logger.exception("association from %s: auditing or attaching failed", push.ae_title)
            finally:
                db.session.remove()


def _stored_study_uids(push: Push) -> set[str]:
    stored = (IngestStatus.ACCEPTED, IngestStatus.DUPLICATE)
    return {r.study_instance_uid for r in push.results if r.status in stored}


def _reject(association: Association, result: int, diagnostic: int) -> None:
    """Send an A-ASSOCIATE-RJ from ``EVT_REQUESTED`` and end the association.

    This mirrors what pynetdicom does for its own static checks
    (``require_calling_aet``), which cannot consult the database.
    """
    association.acse.send_reject(result, SOURCE_SERVICE_USER, diagnostic)
    association.is_rejected = True  # the reactor then skips negotiation
    association.kill()


def _failure(exc: Exception, push: Push) -> Dataset:
    """Log a failed C-STORE without patient data; answer out of resources or processing failure."""
    if isinstance(exc, StatementError):
        exc.hide_parameters = True  # bound values may be names or dates of birth
    logger.exception("C-STORE from %s failed", push.ae_title)
    if isinstance(exc, StorageError | SQLAlchemyError | OSError):
        return status(OUT_OF_RESOURCES, "storage or database unavailable; try again later")
    return status(PROCESSING_FAILURE, "the instance could not be processed")
