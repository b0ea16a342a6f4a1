"""A local fake of Twilio's REST API for the real twilio client, and signed webhooks for the app.

:class:`FakeTwilio` is an HTTP server on 127.0.0.1 (a random port, in a
thread) that answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
and ``GET .../Messages/{Sid}.json`` as Twilio does: HTTP basic auth checked,
201 JSON with an ``SM`` + 32 hex sid and status ``queued``, Twilio-shaped
error JSON otherwise. Knobs: :meth:`FakeTwilio.fail_next`,
:meth:`FakeTwilio.hang_next`, :meth:`FakeTwilio.report_next`;
:meth:`FakeTwilio.sent` lists what was accepted.

:meth:`FakeTwilio.inbound` and :meth:`FakeTwilio.status_callback` post
webhooks to the app (a Flask app, through its test client, or a live base
URL) signed with twilio's ``RequestValidator.compute_signature``, as Twilio
signs them.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
FROM_NUMBER = "+15005550006"
TIMEOUT_SECONDS = 2


@dataclass
class _Knobs:
    fail: list[tuple[int, int]] = field(default_factory=list)  # (HTTP status, Twilio code)
    hang: int = 0
    report: tuple | None = None  # (target, status, error code) for report_next


class FakeTwilio:
    """Twilio's Messages API on loopback; start it with :meth:`start`, end with :meth:`stop`."""

    def __init__(self) -> None:
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.hang_seconds = TIMEOUT_SECONDS + 2
        self.messages: dict[str, dict] = {}
        self.requests = 0  # every Messages request, answered or not
        self._knobs = _Knobs()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends any hanging answer at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def config(self) -> dict:
        """The app settings that point the twilio client here."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM": FROM_NUMBER,
            "TWILIO_API_URL": self.url,
            "TWILIO_TIMEOUT_SECONDS": TIMEOUT_SECONDS,
        }

    # --- knobs ---------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        """Answer the next ``n`` message requests with a Twilio error (``code``: 20000 + status)."""
        with self._lock:
            self._knobs.fail.extend([(status, code or 20000 + status)] * n)

    def hang_next(self, n: int = 1) -> None:
        """Answer the next ``n`` message requests only after the client's timeout (and not send)."""
        with self._lock:
            self._knobs.hang += n

    def report_next(self, target, status: str, *, error_code=None) -> None:
        """Report the next accepted message as ``status`` to ``target`` before answering its send.

        As Twilio may: the report then reaches the app before the app has the message's sid.
        """
        with self._lock:
            self._knobs.report = (target, status, error_code)

    def sent(self) -> list[dict]:
        """The messages accepted so far, oldest first: ``{To, From, Body, StatusCallback, Sid}``."""
        with self._lock:
            return [dict(message["recorded"]) for message in self.messages.values()]

    # --- webhooks to the app -------------------------------------------------
    def inbound(self, target, from_: str, body: str, *, sid: str | None = None, **options):
        """Post an incoming SMS ``body`` from ``from_`` to ``/sms/inbound`` of ``target``.

        :param options: ``url`` (the URL to sign, default the app's public one) and
            ``token`` (default the fake's auth token); any other key joins the form.
        """
        params = {
            "MessageSid": sid or "SM" + secrets.token_hex(16),
            "AccountSid": self.account_sid,
            "From": from_,
            "To": FROM_NUMBER,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": API_VERSION,
        }
        params["SmsSid"] = params["SmsMessageSid"] = params["MessageSid"]
        return self._post_signed(target, "/sms/inbound", params, **options)

    def status_callback(self, target, sid: str, status: str, *, error_code=None, **options):
        """Post a delivery report on ``sid``, signed for the StatusCallback it was sent with."""
        message = self.messages.get(sid, {}).get("recorded", {})
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message.get("To", "+15550000000"),
            "From": FROM_NUMBER,
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        options.setdefault("url", message.get("StatusCallback"))
        return self._post_signed(target, "/sms/status", params, **options)

    def _post_signed(self, target, path: str, params: dict, url=None, token=None, **extra):
        params = {**params, **extra}
        if isinstance(target, str):  # a live server's base URL
            url = url or target + path
        else:
            url = url or target.config["BASE_URL"] + path
        signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature}
        if isinstance(target, str):
            return requests.post(target + path, data=params, headers=headers, timeout=30)
        return target.test_client().post(path, data=params, headers=headers)

    # --- the server's side ---------------------------------------------------
    def _take_knob(self) -> tuple[str, int, int] | None:
        with self._lock:
            self.requests += 1
            if self._knobs.hang:
                self._knobs.hang -= 1
                return ("hang", 504, 20504)
            if self._knobs.fail:
                return ("fail", *self._knobs.fail.pop(0))
        return None

    def _create(self, form: dict[str, str]) -> tuple[int, dict]:
        missing = [name for name in ("To", "From", "Body") if not form.get(name)]
        if missing:
            return 400, _error(21604, f"A '{missing[0]}' parameter is required.", 400)
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"],
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{self._message_uri(sid)[:-5]}/Media.json"},
            "to": form["To"],
            "uri": self._message_uri(sid),
        }
        recorded = {name: form.get(name) for name in ("To", "From", "Body", "StatusCallback")}
        with self._lock:
            self.messages[sid] = {"json": message, "recorded": {**recorded, "Sid": sid}}
        return 201, message

    def _take_report(self) -> tuple | None:
        with self._lock:
            report, self._knobs.report = self._knobs.report, None
        return report

    def _message_uri(self, sid: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"

    def _authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"


def _error(code: int, message: str, status: int) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _handler_for(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    messages_path = f"/{API_VERSION}/Accounts/{fake.account_sid}/Messages"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if not self._checked(urlsplit(self.path).path == messages_path + ".json"):
                return
            knob = fake._take_knob()
            if knob is not None:
                kind, status, code = knob
                if kind == "hang":
                    fake._stopping.wait(fake.hang_seconds)
                self._answer(status, _error(code, "Fake Twilio failure", status))
                return
            status, message = fake._create(form)
            report = fake._take_report() if status == 201 else None
            if report is not None:
                target, reported, code = report
                answer = fake.status_callback(target, message["sid"], reported, error_code=code)
                assert answer.status_code == 200, answer.status_code
            self._answer(status, message)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if not self._checked(path.startswith(messages_path + "/") and path.endswith(".json")):
                return
            sid = path[len(messages_path) + 1 : -len(".json")]
            with fake._lock:
                found = fake.messages.get(sid)
            if found is None:
                self._answer(
                    404, _error(20404, f"The requested resource {path} was not found", 404)
                )
            else:
                self._answer(200, found["json"])

        def _checked(self, known_path: bool) -> bool:
            if not fake._authorized(self.headers.get("Authorization")):
                self._answer(401, _error(20003, "Authenticate", 401))
                return False
            if not known_path:
                self._answer(404, _error(20404, "The requested resource was not found", 404))
                return False
            return True

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a hang longer than its timeout)

        def log_message(self, format, *args) -> None:
            pass  # keep the test output quiet

    return Handler


@pytest.fixture
def fake_twilio():
    """A fresh :class:`FakeTwilio` per test; ``paged_app`` merges its ``config()``."""
    fake = FakeTwilio().start()
    yield fake
    fake.stop()
