"""Twilio's webhooks: replies at ``POST /sms/inbound``, delivery reports at ``POST /sms/status``.

Both are exempt from CSRF and checked instead with twilio's
:class:`~twilio.request_validator.RequestValidator` against the public URL
Twilio was given (``BASE_URL`` plus the path), not the Host the request
arrived with, which differs behind a proxy. Each inbound message is handled
once: its MessageSid is stored first, and a repeat finds it taken.
"""

from __future__ import annotations

import functools
import logging

from flask import Blueprint, Response, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.sms.channel import STATUS_PATH
from bot.sms.delivery_status import record_delivery_status
from bot.sms.inbound import FAILED, answer_sms
from bot.sms.numbers import mask_number
from portal.extensions import csrf, db
from portal.notifications.operations import first_delivery

logger = logging.getLogger(__name__)
bp = Blueprint("sms", __name__)
csrf.exempt(bp)
INBOUND_PATH = "/sms/inbound"


def signed_by_twilio(path: str):
    """Refuse (403) a request whose ``X-Twilio-Signature`` does not sign ``BASE_URL + path``."""

    def decorator(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            if not signature_is_valid(path):
                logger.warning("Twilio webhook %s refused: bad or missing signature", path)
                return Response("Invalid signature.\n", status=403, mimetype="text/plain")
            return view(*args, **kwargs)

        return checked

    return decorator


def signature_is_valid(path: str) -> bool:
    """Check the request's signature against the public URL of ``path`` and its form."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not (token and signature):
        return False
    url = current_app.config["BASE_URL"] + path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return RequestValidator(token).validate(url, request.form, signature)


@bp.post(INBOUND_PATH)
@signed_by_twilio(INBOUND_PATH)
def inbound_sms():
    sid = request.form.get("MessageSid") or request.form.get("SmsSid")
    if not sid:
        return Response("MessageSid is missing.\n", status=400, mimetype="text/plain")
    if not first_delivery("twilio", sid):
        logger.info("SMS %s is a repeat; ignored", sid)
        return twiml(None)
    number = request.form.get("From", "")
    try:
        reply = answer_sms(number, request.form.get("Body", ""))
    except Exception:  # the sender gets an answer whatever broke
        logger.exception("SMS %s from %s could not be answered", sid, mask_number(number))
        db.session.rollback()
        reply = FAILED
    return twiml(reply)


@bp.post(STATUS_PATH)
@signed_by_twilio(STATUS_PATH)
def delivery_status():
    sid = request.form.get("MessageSid") or request.form.get("SmsSid")
    status = request.form.get("MessageStatus") or request.form.get("SmsStatus")
    if sid and status:
        record_delivery_status(sid, status, request.form.get("ErrorCode"))
    return Response(status=200)


def twiml(text: str | None) -> Response:
    """Answer Twilio with a TwiML reply holding ``text`` (nothing for ``None``)."""
    reply = MessagingResponse()
    if text:
        reply.message(text)
    return Response(str(reply), mimetype="application/xml")
