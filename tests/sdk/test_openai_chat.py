"""The official `openai` Python SDK works against ModelGate unchanged.

Every test uses the stock SDK (or plain httpx for a request the SDK cannot
produce) with nothing but the base URL and API key pointed at the gateway.
"""

import httpx
import openai
import pytest

MOCK_PHRASE = "ModelGate mock"
MESSAGES = [{"role": "user", "content": "Hello from the ModelGate SDK test suite."}]
UNKNOWN_MODEL = "modelgate-sdk-test-no-such-model"
WRONG_KEY = "mg-sdk-test-this-key-does-not-exist"


def assert_usage_consistent(usage) -> None:
    assert usage is not None, "expected a usage object"
    assert usage.prompt_tokens > 0, usage
    assert usage.completion_tokens > 0, usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage


def collect_stream(stream):
    """Drain a chat-completion stream; return (chunks, concatenated content)."""
    chunks = list(stream)
    text = "".join(
        choice.delta.content or ""
        for chunk in chunks
        for choice in chunk.choices
        if choice.delta is not None
    )
    return chunks, text


def test_non_stream_completion_returns_mock_reply_with_consistent_usage(client, model):
    completion = client.chat.completions.create(model=model, messages=MESSAGES)

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.id, "completion id must be non-empty"
    assert completion.object == "chat.completion"
    assert completion.model, "completion must name the model that answered"
    assert len(completion.choices) >= 1

    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and MOCK_PHRASE in choice.message.content
    assert choice.finish_reason is not None

    assert_usage_consistent(completion.usage)


def test_stream_completion_concatenates_to_text_without_usage_chunk(client, model):
    stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    chunks, text = collect_stream(stream)

    assert chunks, "stream produced no chunks"
    assert text.strip(), "concatenated stream deltas must be non-empty text"
    assert MOCK_PHRASE in text
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.id
        assert chunk.usage is None, f"usage chunk sent although not requested: {chunk}"
        assert chunk.choices, f"chunk with empty choices sent although usage not requested: {chunk}"
    assert any(c.finish_reason for chunk in chunks for c in chunk.choices), (
        "no chunk carried a finish_reason"
    )


def test_stream_with_include_usage_ends_with_usage_chunk_without_choices(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text = collect_stream(stream)

    assert len(chunks) >= 2, "expected content chunks followed by a usage chunk"
    assert text.strip() and MOCK_PHRASE in text

    last = chunks[-1]
    assert last.choices == [], f"usage chunk must have empty choices: {last}"
    assert_usage_consistent(last.usage)

    for chunk in chunks[:-1]:
        assert chunk.usage is None, f"only the final chunk may carry usage: {chunk}"


def test_raw_response_exposes_request_id_and_route_headers(client, model):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)

    assert raw.status_code == 200
    assert raw.headers.get("x-request-id"), f"missing x-request-id in {dict(raw.headers)}"
    assert raw.headers.get("x-modelgate-route"), f"missing x-modelgate-route in {dict(raw.headers)}"

    completion = raw.parse()
    assert MOCK_PHRASE in (completion.choices[0].message.content or "")


def test_models_list_contains_configured_alias(client, model):
    ids = [m.id for m in client.models.list()]

    assert model in ids, f"{model!r} not in {ids!r}"


def test_wrong_api_key_raises_authentication_error(base_url, model):
    bad_client = openai.OpenAI(base_url=base_url, api_key=WRONG_KEY, max_retries=0, timeout=30.0)
    try:
        with pytest.raises(openai.AuthenticationError) as excinfo:
            bad_client.chat.completions.create(model=model, messages=MESSAGES)
    finally:
        bad_client.close()

    assert excinfo.value.status_code == 401
    assert excinfo.value.code == "invalid_api_key"


def test_unknown_model_raises_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(model=UNKNOWN_MODEL, messages=MESSAGES)

    assert excinfo.value.status_code == 404
    assert excinfo.value.code == "model_not_found"


def test_malformed_json_body_gets_400_with_openai_error_shape(base_url, api_key):
    response = httpx.post(
        f"{base_url}/chat/completions",
        content=b'{"model": "mock-small", "messages": [',
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=30.0,
    )

    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], error
    assert isinstance(error.get("type"), str) and error["type"], error
    assert "code" in error, error
    assert "param" in error, error


def test_tools_return_a_tool_call_with_json_arguments(client, model):
    import json

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
