"""A local fake of the Slack Web API over real HTTP, and signed inbound payloads.

:class:`FakeSlack` serves ``/api/<method>`` on 127.0.0.1 (a random port, a
thread) for the real slack_sdk client pointed at it by ``SLACK_API_URL``:
``auth.test``, ``conversations.open``, ``chat.postMessage``, ``chat.update``
and ``chat.postEphemeral``, with form or JSON bodies and the bearer token
checked, answering as Slack does. ``/hooks/<id>`` stands in for the
``response_url`` of inbound payloads. Every call is recorded; knobs make the
next calls fail (HTTP 500), be rate limited (429), answer a Slack error, or
hang past the client's timeout.

The other direction, Slack calling the app, is :meth:`FakeSlack.post`: a body
signed exactly as Slack signs it (``v0`` HMAC-SHA256 over ``v0:{ts}:{body}``,
made by slack_sdk's :class:`~slack_sdk.signature.SignatureVerifier`), sent to
a Flask test client or to a live server's URL.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-test"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM_ID = "T0OVERREAD"
BOT_USER_ID = "U0BOT0001"
TIMEOUT_SECONDS = 2


@dataclass
class Call:
    """One request the fake received, and how it answered."""

    method: str  # "chat.postMessage", ..., or "response_url"
    params: dict[str, Any]
    status: int = 200
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return self.answer.get("error")

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def blocks(self) -> list[dict]:
        blocks = self.params.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else blocks

    @property
    def text(self) -> str:
        return self.params.get("text", "")


@dataclass
class Fault:
    """What the next ``count`` calls (of ``method``, or any) get instead of an answer."""

    count: int
    method: str | None = None
    status: int = 200
    error: str | None = None
    delay: float = 0.0


@dataclass
class Answer:
    """The app's answer to an inbound post, and how long it took."""

    status: int
    text: str
    seconds: float


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    messages: dict[tuple[str, str], dict] = field(default_factory=dict)


class FakeSlack:
    """The fake Web API server; use it through the ``fake_slack`` fixture."""

    def __init__(self, timeout: int = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._state = _State()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ts = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # let hanging answers go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def config(self) -> dict:
        """The app settings that point the bot and its channel at this fake."""
        return {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": f"{self.url}/api/",
            "SLACK_TIMEOUT_SECONDS": self.timeout,
        }

    # --- what happened ----------------------------------------------------------
    def calls(self, method: str | None = None) -> list[Call]:
        """Every call received (of ``method``), oldest first, failed ones included."""
        with self._lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def message(self, channel: str, ts: str) -> dict:
        """A posted message as it stands now (``text``, ``blocks``), edits applied."""
        with self._lock:
            return dict(self._state.messages[(channel, ts)])

    def delete_message(self, channel: str, ts: str) -> None:
        """Delete a posted message, as its recipient may (later edits find nothing)."""
        with self._lock:
            del self._state.messages[(channel, ts)]

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- knobs ------------------------------------------------------------------
    def fail_next(self, count: int = 1, status: int = 500, *, method: str | None = None) -> None:
        """Answer the next ``count`` calls with HTTP ``status`` and a non-JSON body."""
        self._add(Fault(count, method, status=status))

    def ratelimit_next(self, count: int = 1, *, method: str | None = None) -> None:
        """Answer 429 ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After: 1``."""
        self._add(Fault(count, method, status=429, error="ratelimited"))

    def error_next(self, count: int, error: str, *, method: str | None = None) -> None:
        """Answer 200 ``{"ok": false, "error": error}`` (``user_not_found``, ...)."""
        self._add(Fault(count, method, error=error))

    def hang_next(self, count: int = 1, *, method: str | None = None) -> None:
        """Answer only after the client's timeout has passed."""
        self._add(Fault(count, method, delay=self.timeout + 1.5))

    def delay_next(self, count: int, seconds: float, *, method: str | None = None) -> None:
        """Answer normally, but only after ``seconds``."""
        self._add(Fault(count, method, delay=seconds))

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.method in (None, method) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    # --- the Web API --------------------------------------------------------------
    def _answer(self, method: str, params: dict, token: str | None) -> tuple[int, dict]:
        if token is None:
            return 200, {"ok": False, "error": "not_authed"}
        if token != BOT_TOKEN:
            return 200, {"ok": False, "error": "invalid_auth"}
        handler = _METHODS.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}
        with self._lock:
            return 200, handler(self, params)

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n:06d}"

    def _auth_test(self, params: dict) -> dict:
        return {
            "ok": True,
            "url": "https://overread-test.slack.com/",
            "team": "Overread Test",
            "user": "overread",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": "B0BOT0001",
        }

    def _open(self, params: dict) -> dict:
        users = params.get("users")
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0][1:]}}

    def _post(self, params: dict) -> dict:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (params.get("text") or params.get("blocks")):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        message = {"type": "message", "ts": ts, "user": BOT_USER_ID, **_content(params)}
        self._state.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, params: dict) -> dict:
        key = (params.get("channel"), params.get("ts"))
        if key not in self._state.messages:
            return {"ok": False, "error": "message_not_found"}
        self._state.messages[key] = {**self._state.messages[key], **_content(params)}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": params.get("text", "")}

    def _ephemeral(self, params: dict) -> dict:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("user"):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "message_ts": self._next_ts()}

    # --- inbound: Slack calling the app -----------------------------------------------
    def sign(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        """Headers Slack would send with ``body``: its timestamp and ``v0`` signature."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}

    def response_url(self) -> str:
        return f"{self.url}/hooks/{uuid.uuid4().hex}"

    def button_payload(
        self,
        user_id: str,
        action_id: str,
        *,
        channel: str,
        ts: str,
        value: str | None = None,
        ephemeral: bool = False,
    ) -> dict:
        """A ``block_actions`` payload: ``user_id`` clicked ``action_id`` on message ``ts``.

        The button's value is read from the message the fake holds unless given.
        """
        message = None if ephemeral else self.message(channel, ts)
        if value is None:
            value = _button_value(message["blocks"], action_id)
        n = next(self._ts)
        return {
            "type": "block_actions",
            "user": {"id": user_id, "username": "someone", "team_id": TEAM_ID},
            "api_app_id": "A0OVERREAD",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": f"{n}.{n}.trigger",
            "team": {"id": TEAM_ID, "domain": "overread-test"},
            "channel": {"id": channel, "name": "directmessage"},
            **({"message": message} if message else {}),
            "response_url": self.response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "case_actions",
                    "type": "button",
                    "value": value,
                    "action_ts": f"{1_800_000_000 + n}.{n:06d}",
                }
            ],
        }

    def command_form(self, user_id: str, text: str, *, command: str = "/overread") -> dict:
        """The form fields of a slash command typed by ``user_id`` in a channel."""
        n = next(self._ts)
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "overread-test",
            "channel_id": "C0GENERAL",
            "channel_name": "general",
            "user_id": user_id,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": "A0OVERREAD",
            "is_enterprise_install": "false",
            "response_url": self.response_url(),
            "trigger_id": f"{n}.{n}.{uuid.uuid4().hex}",
        }

    def post(
        self,
        target,
        fields: dict,
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Answer:
        """POST form ``fields`` (a payload dict goes as ``payload=<json>``) to /slack/events.

        :param target: a Flask test client, or a live server's base URL.
        :param signature: sent instead of the right one (to test refusals).
        """
        if "type" in fields:
            fields = {"payload": json.dumps(fields)}
        body = urlencode(fields)
        headers = self.sign(body, timestamp)
        if signature is not None:
            headers["X-Slack-Signature"] = signature
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        if isinstance(target, str):
            status, text = _post_over_http(f"{target}/slack/events", body, headers)
        else:
            response = target.post("/slack/events", data=body, headers=headers)
            status, text = response.status_code, response.get_data(as_text=True)
        return Answer(status, text, time.perf_counter() - started)

    def click(self, target, user_id: str, action_id: str, *, channel: str, ts: str) -> Answer:
        """``user_id`` clicks ``action_id`` on the message ``channel``/``ts``."""
        return self.post(target, self.button_payload(user_id, action_id, channel=channel, ts=ts))

    def command(self, target, user_id: str, text: str) -> Answer:
        """``user_id`` types ``/overread <text>``."""
        return self.post(target, self.command_form(user_id, text))


_METHODS = {
    "auth.test": FakeSlack._auth_test,
    "conversations.open": FakeSlack._open,
    "chat.postMessage": FakeSlack._post,
    "chat.update": FakeSlack._update,
    "chat.postEphemeral": FakeSlack._ephemeral,
}


def _content(params: dict) -> dict:
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return {"text": params.get("text", ""), "blocks": blocks or []}


def _button_value(blocks: list[dict], action_id: str) -> str:
    for block in blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no button {action_id!r} in the message")


def _post_over_http(url: str, body: str, headers: dict) -> tuple[int, str]:
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except HTTPError as error:
        with error:
            return error.code, error.read().decode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeSlack/1.0"

    def do_POST(self) -> None:
        fake: FakeSlack = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        params = _parse(raw, self.headers.get("Content-Type", ""))
        if self.path.startswith("/hooks/"):
            with fake._lock:
                fake._state.calls.append(Call("response_url", params))
            return self._send(200, "ok", "text/plain")
        method = self.path.removeprefix("/api/").split("?")[0]
        fault = fake._take_fault(method)
        if fault is not None and fault.delay:
            fake._stopping.wait(fault.delay)
        status, answer = self._answer_or_fault(fake, method, params, fault)
        with fake._lock:
            fake._state.calls.append(Call(method, params, status, answer))
        if status >= 500:
            return self._send(status, "upstream connect error", "text/plain")
        extra = {"Retry-After": "1"} if status == 429 else {}
        self._send(status, json.dumps(answer), "application/json; charset=utf-8", extra)

    def _answer_or_fault(self, fake, method, params, fault) -> tuple[int, dict]:
        if fault is not None and (fault.status != 200 or fault.error):
            error = fault.error or "internal_error"
            return fault.status, {"ok": False, "error": error}
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        return fake._answer(method, params, token)

    def _send(self, status: int, body: str, content_type: str, extra=None) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (a hang knob): nothing to answer

    def log_message(self, format: str, *args) -> None:
        pass


def _parse(raw: str, content_type: str) -> dict:
    if content_type.startswith("application/json"):
        return json.loads(raw or "{}")
    params = dict(parse_qsl(raw, keep_blank_values=True))
    for name in ("blocks", "attachments"):
        if isinstance(params.get(name), str):
            params[name] = json.loads(params[name])
    return params


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack Web API for one test; ``.config()`` points an app at it."""
    fake = FakeSlack()
    yield fake
    fake.stop()
