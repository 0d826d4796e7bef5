"""The fake Anthropic API speaks the Messages API well enough for the ``anthropic`` SDK, JSON and SSE."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.fakes import ANY, FakeAnthropic, error, text, tool_use

anthropic = pytest.importorskip("anthropic")

PLAN_TOOL = {"name": "create_plan", "description": "Create promises.",
             "input_schema": {"type": "object", "properties": {"steps": {"type": "array"}}}}
ASK = [{"role": "user", "content": "Review auth.py and api.py"}]


def client(fake: FakeAnthropic):
    return anthropic.Anthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)


def test_a_tool_use_turn_then_a_text_turn_after_the_tool_result(fake_anthropic):
    steps = [{"name": "a", "type": "code_review"}, {"name": "b", "type": "code_review"}]
    fake_anthropic.script(tool_use("create_plan", {"steps": steps}, preface="Planning."), text("Created #1 and #2."))
    sdk = client(fake_anthropic)
    first = sdk.messages.create(model="claude-test-model", max_tokens=512, system="You are Valor.",
                                tools=[PLAN_TOOL], messages=ASK)
    assert first.stop_reason == "tool_use"
    assert first.content[0].text == "Planning."
    call = first.content[1]
    assert (call.type, call.name, call.input) == ("tool_use", "create_plan", {"steps": steps})
    answer = [{"type": "tool_result", "tool_use_id": call.id, "content": "#1, #2"}]
    second = sdk.messages.create(model="claude-test-model", max_tokens=512, tools=[PLAN_TOOL],
                                 messages=[*ASK, {"role": "assistant", "content": first.content},
                                           {"role": "user", "content": answer}])
    assert (second.stop_reason, second.content[0].text) == ("end_turn", "Created #1 and #2.")
    asked, answered = fake_anthropic.calls()
    assert (asked.model, asked.system, asked.tool_names, asked.stream) == (
        "claude-test-model", "You are Valor.", ["create_plan"], False)
    assert asked.api_key == "test-key"
    assert answered.tool_results[0]["tool_use_id"] == call.id and answered.last_user_text == "#1, #2"
    assert fake_anthropic.unused == []


def test_the_stream_carries_text_and_tool_input_deltas_the_sdk_reassembles(fake_anthropic):
    fake_anthropic.script(tool_use("create_plan", {"steps": [{"name": "x" * 100}]}, preface="A long preface " * 5))
    with client(fake_anthropic).messages.stream(model="m", max_tokens=64, tools=[PLAN_TOOL], messages=ASK) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert (kinds[0], kinds[-1]) == ("message_start", "message_stop")
    assert {"content_block_delta", "content_block_stop", "message_delta", "message_stop"} <= set(kinds)
    assert final.content[0].text == "A long preface " * 5
    assert final.content[1].input == {"steps": [{"name": "x" * 100}]}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    assert fake_anthropic.calls()[0].stream is True


async def test_the_async_sdk_works_too(fake_anthropic):
    fake_anthropic.script(text("hello"))
    sdk = anthropic.AsyncAnthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0)
    reply = await sdk.messages.create(model="m", max_tokens=8, tools=[PLAN_TOOL], messages=ASK)
    assert reply.content[0].text == "hello"
    await sdk.close()


def test_turns_match_requests_with_tools_by_default_others_get_the_default_reply(fake_anthropic):
    fake_anthropic.script(text("scripted"))
    sdk = client(fake_anthropic)
    side = sdk.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": "title?"}])
    main = sdk.messages.create(model="m", max_tokens=8, tools=[PLAN_TOOL], messages=ASK)
    assert (side.content[0].text, main.content[0].text) == ("OK", "scripted")
    assert [r.turn is not None for r in fake_anthropic.calls()] == [False, True]


def test_a_turn_can_wait_for_words_in_the_last_user_message_or_match_any_request(fake_anthropic):
    fake_anthropic.script(text("about api", when="api.py"), text("anything", when=ANY))
    sdk = client(fake_anthropic)
    first = sdk.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    second = sdk.messages.create(model="m", max_tokens=8, messages=ASK)
    assert (first.content[0].text, second.content[0].text) == ("anything", "about api")


def test_an_error_turn_is_the_api_error_the_sdk_raises(fake_anthropic):
    fake_anthropic.script(error(401, "authentication_error", "invalid x-api-key", when=ANY))
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        client(fake_anthropic).messages.create(model="m", max_tokens=8, messages=ASK)


def test_count_tokens_and_unknown_paths_are_answered_and_recorded(fake_anthropic):
    counted = client(fake_anthropic).messages.count_tokens(model="m", messages=ASK)
    assert counted.input_tokens > 0
    request = urllib.request.Request(f"{fake_anthropic.base_url}/v1/other", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 404 and json.loads(err.value.read())["type"] == "error"
    assert [r.path for r in fake_anthropic.requests] == ["/v1/messages/count_tokens", "/v1/other"]


def test_a_delayed_turn_ends_early_when_the_fake_stops():
    fake = FakeAnthropic()
    fake.start()
    fake.script(text("late", delay=60, when=ANY))
    began = time.monotonic()
    threading.Timer(0.3, fake.stop).start()
    with pytest.raises(anthropic.APIConnectionError):
        client(fake).messages.create(model="m", max_tokens=8, messages=ASK, timeout=10)
    assert time.monotonic() - began < 5
