"""Request logs never keep the secret part of a link's path."""

from __future__ import annotations

import logging

import requests

from tests import harness


def test_request_log_of_a_live_server_redacts_link_codes(app, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")
    secrets = {
        "/l/": "Zq3vK9sLmN0pQrStUvWxYz0123456789abcdefghijk",
        "/invite/": "inv1te-secret-token",
        "/reset/": "reset-secret-token",
        "/shared/": "share-secret-token",
        "/oncall/feed/": "feed-secret-token",
    }
    with harness.live_server(app) as url:
        for prefix, secret in secrets.items():
            suffix = ".ics" if prefix == "/oncall/feed/" else ""
            requests.get(f"{url}{prefix}{secret}{suffix}", timeout=10)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for prefix, secret in secrets.items():
        assert f"{prefix}<redacted>" in logged
        assert secret not in logged
