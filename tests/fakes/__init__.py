"""Fakes of outside services that record what they were asked; see each module's docstring.

``fake_anthropic`` is a pytest fixture: import it into a conftest
(``from tests.fakes import fake_anthropic  # noqa: F401``) and a test gets a
started ``FakeAnthropic``, stopped after the test::

    async def test_agent_creates_a_plan(fake_anthropic):
        fake_anthropic.script(tool_use("create_plan", {...}), text("Planned #1"))
        client = anthropic.AsyncAnthropic(base_url=fake_anthropic.base_url, api_key="test")
        ...
        assert fake_anthropic.calls()[0].tool_names == ["create_plan", ...]
"""

from collections.abc import Iterator

import pytest

from .anthropic_api import ANY, FakeAnthropic, Recorded, Turn, error, has_tools, text, tool_use, wait_for

__all__ = ["ANY", "FakeAnthropic", "Recorded", "Turn", "error", "fake_anthropic", "has_tools", "text",
           "tool_use", "wait_for"]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
