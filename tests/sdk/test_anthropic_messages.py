"""The official Anthropic Python SDK against ModelGate's `/v1/messages`, served by the
built-in mock provider (which answers in Anthropic's format): non-stream, streaming with
`client.messages.stream`, tools, and an Anthropic-format error for a wrong key."""

import anthropic
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}


def test_messages_create_returns_labelled_text_and_usage(anthropic_client, model):
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=128,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello from the Anthropic SDK"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    text = "".join(b.text for b in message.content if b.type == "text")
    assert "ModelGate mock" in text
    assert "Hello from the Anthropic SDK" in text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_messages_stream_yields_text_and_a_final_message(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=128,
        messages=[{"role": "user", "content": "stream please"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the answer arrives in several deltas"
    text = "".join(pieces)
    assert "ModelGate mock" in text
    assert final.stop_reason == "end_turn"
    assert "".join(b.text for b in final.content if b.type == "text") == text
    assert final.usage.output_tokens > 0


def test_tools_return_a_tool_use_block_with_a_dict_input(anthropic_client, model):
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=128,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
    )
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert isinstance(calls[0].input, dict)
    assert "city" in calls[0].input


def test_streamed_tool_use_accumulates_the_input_json(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=128,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Use get_weather for Paris"}],
    ) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert calls and isinstance(calls[0].input, dict) and "city" in calls[0].input


def test_wrong_key_is_an_anthropic_authentication_error(base_url, model):
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    bad = anthropic.Anthropic(base_url=root, api_key="mg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(
            model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 401
    assert err.value.body["error"]["type"] == "authentication_error"
    bad.close()
