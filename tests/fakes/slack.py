"""A local fake of the Slack API (placeholder: the fake server lands with the slack bot)."""

import pytest


class _Placeholder:
    def config(self) -> dict:
        return {}


@pytest.fixture
def fake_slack():
    return _Placeholder()
