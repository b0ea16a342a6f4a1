"""Case timers kept in the outbox: the dispatcher delivers them on the ``timer`` channel.

A timer row is due at a case's SLA deadline. Delivering it re-checks the case
under a row lock and does nothing if someone accepted meanwhile.
"""

from __future__ import annotations

import logging

from portal.cases.operations import expire_if_unaccepted
from portal.extensions import db
from portal.notifications.channels import Delivery
from portal.notifications.models import Notification

logger = logging.getLogger(__name__)


class CaseTimerChannel:
    name = "timer"

    def send(self, notification: Notification) -> Delivery:
        """Run the timer's check in a transaction of its own."""
        try:
            expired = expire_if_unaccepted(notification.case_id)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        if expired:
            logger.info("case %s unassigned: SLA passed", notification.case_id)
        return Delivery(via=self.name, provider_status="expired" if expired else "not needed")
