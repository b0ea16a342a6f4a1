"""A local fake of the Twilio API (placeholder: the fake server lands with the twilio bot)."""

import pytest


class _Placeholder:
    def config(self) -> dict:
        return {}


@pytest.fixture
def fake_twilio():
    return _Placeholder()
