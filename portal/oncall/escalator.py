"""Deliver escalation steps: page the step's radiologists and queue the next step.

(Placeholder until the escalation engine lands: a step does nothing.)
"""

from __future__ import annotations

from portal.notifications.channels import Delivery
from portal.notifications.models import Notification


class EscalationChannel:
    name = "escalation"

    def send(self, notification: Notification) -> Delivery:
        return Delivery(via=self.name, provider_status="not implemented")
