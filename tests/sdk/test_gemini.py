"""The official Google Gen AI Python SDK (`google-genai`) against ModelGate's
`/v1beta/models/{model}:generateContent`, served by the built-in mock provider (which answers
in Gemini's format): generate_content, generate_content_stream (`alt=sse`), a function call,
and a Google-format error for a wrong key."""

import pytest
from google import genai
from google.genai import errors, types

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Current weather in a city",
            parameters=types.Schema(
                type="OBJECT",
                properties={"city": types.Schema(type="STRING")},
                required=["city"],
            ),
        )
    ]
)


def test_generate_content_returns_labelled_text_and_usage(gemini_client, model):
    response = gemini_client.models.generate_content(
        model=model,
        contents="Hello from the Gemini SDK",
        config=types.GenerateContentConfig(
            system_instruction="Be brief.", temperature=0.2, max_output_tokens=128
        ),
    )
    assert "ModelGate mock" in response.text
    assert "Hello from the Gemini SDK" in response.text
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0


def test_generate_content_stream_yields_text_chunks_and_final_usage(gemini_client, model):
    chunks = list(
        gemini_client.models.generate_content_stream(model=model, contents="stream please")
    )
    assert len(chunks) > 1
    text = "".join(c.text or "" for c in chunks)
    assert "ModelGate mock" in text
    assert "stream please" in text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0


def test_a_forced_function_call_comes_back_with_dict_args(gemini_client, model):
    response = gemini_client.models.generate_content(
        model=model,
        contents="What's the weather in Paris?",
        config=types.GenerateContentConfig(
            tools=[WEATHER],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode="ANY")
            ),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    calls = response.function_calls
    assert calls, response
    assert calls[0].name == "get_weather"
    assert calls[0].args == {"city": "mock"}


def test_a_streamed_function_call_named_by_the_user(gemini_client, model):
    chunks = list(
        gemini_client.models.generate_content_stream(
            model=model,
            contents="please call get_weather for Paris",
            config=types.GenerateContentConfig(tools=[WEATHER]),
        )
    )
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [c.name for c in calls] == ["get_weather"]


def test_a_wrong_key_is_a_google_format_401(base_url, model):
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    bad = genai.Client(api_key="mg-wrong", http_options=types.HttpOptions(base_url=root))
    with pytest.raises(errors.ClientError) as info:
        bad.models.generate_content(model=model, contents="hi")
    assert info.value.code == 401
    assert info.value.status == "UNAUTHENTICATED"
