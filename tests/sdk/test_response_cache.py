"""The response cache through the official SDKs: an answer stored from a stream is served
whole (and an answer stored whole is served as a stream), and the SDKs parse either into
the same answer. The test makes a cached route for the demo model through the admin API
(MODELGATE_ADMIN_URL, MODELGATE_ADMIN_TOKEN, both printed by `modelgate up`)."""

import os
import time
import uuid

import anthropic
import httpx
import openai
import pytest

CACHED_ALIAS = "mock-small-cached"
HEADER = "x-modelgate-cache"


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"environment variable {name} is not set", pytrace=False)
    return value


@pytest.fixture(scope="module")
def cached_model(model: str, client: openai.OpenAI) -> str:
    """A route `mock-small-cached` to the demo model's deployment, with the cache on."""
    admin = httpx.Client(
        base_url=_required_env("MODELGATE_ADMIN_URL").rstrip("/") + "/admin/v1",
        headers={"authorization": f"Bearer {_required_env('MODELGATE_ADMIN_TOKEN')}"},
        timeout=30.0,
    )
    routes = admin.get("/routes").json()["data"]
    demo = next(r for r in routes if r["alias"] == model)
    if not any(r["alias"] == CACHED_ALIAS for r in routes):
        created = admin.post(
            "/routes",
            json={
                "alias": CACHED_ALIAS,
                "deployments": [
                    {"provider_id": d["provider_id"], "model": d["model"]}
                    for d in demo["deployments"]
                ],
                "policy": {"cache": {"enabled": True}},
            },
        )
        assert created.status_code == 201, created.text
    # The data plane serves the new route once its config arrives (a bounded wait).
    deadline = time.monotonic() + 20
    while True:
        try:
            client.chat.completions.create(
                model=CACHED_ALIAS,
                messages=[{"role": "user", "content": "is the route there?"}],
                extra_headers={HEADER: "bypass"},
            )
            return CACHED_ALIAS
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _until_hit(call):
    """Calls `call` (which returns a raw response) until the cache answers it: the answer of
    the first request is stored in the background, just after it was sent. Bounded."""
    for _ in range(50):
        raw = call()
        if raw.headers.get(HEADER) == "hit":
            return raw
        time.sleep(0.1)
    pytest.fail(f"no cache hit; last {HEADER}: {raw.headers.get(HEADER)}")


def test_openai_sdk_a_streamed_answer_is_served_whole_from_the_cache(client, cached_model):
    messages = [{"role": "user", "content": f"cache me {uuid.uuid4()}"}]
    raw = client.chat.completions.with_raw_response.create(
        model=cached_model,
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers.get(HEADER) == "miss"
    chunks = list(raw.parse())
    text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    finish = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    usage = next(ch.usage for ch in chunks if ch.usage is not None)
    assert text and finish

    hit = _until_hit(
        lambda: client.chat.completions.with_raw_response.create(
            model=cached_model, messages=messages, temperature=0
        )
    )
    completion = hit.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == text
    assert completion.choices[0].finish_reason == finish[-1]
    assert completion.usage.prompt_tokens == usage.prompt_tokens
    assert completion.usage.completion_tokens == usage.completion_tokens

    # And streamed again from the same entry, without the usage chunk this client did not ask for.
    raw = client.chat.completions.with_raw_response.create(
        model=cached_model, messages=messages, temperature=0, stream=True
    )
    assert raw.headers.get(HEADER) == "hit"
    chunks = list(raw.parse())
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices) == text
    assert all(ch.usage is None for ch in chunks)


def test_anthropic_sdk_one_cached_answer_serves_stream_and_whole_clients(
    anthropic_client, cached_model
):
    # Stored from a stream, served whole: the message the SDK assembled from the stream.
    messages = [{"role": "user", "content": f"cache me too {uuid.uuid4()}"}]
    with anthropic_client.messages.stream(
        model=cached_model, max_tokens=128, temperature=0, messages=messages
    ) as stream:
        streamed = stream.get_final_message()
    hit = _until_hit(
        lambda: anthropic_client.messages.with_raw_response.create(
            model=cached_model, max_tokens=128, temperature=0, messages=messages
        )
    )
    message = hit.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.content == streamed.content
    assert message.stop_reason == streamed.stop_reason
    assert message.usage.input_tokens == streamed.usage.input_tokens
    assert message.usage.output_tokens == streamed.usage.output_tokens

    # Stored whole, served as a stream the SDK assembles into the same message.
    messages = [{"role": "user", "content": f"whole first {uuid.uuid4()}"}]
    whole = anthropic_client.messages.create(
        model=cached_model, max_tokens=128, temperature=0, messages=messages
    )
    _until_hit(
        lambda: anthropic_client.messages.with_raw_response.create(
            model=cached_model, max_tokens=128, temperature=0, messages=messages
        )
    )
    with anthropic_client.messages.stream(
        model=cached_model, max_tokens=128, temperature=0, messages=messages
    ) as stream:
        assert stream.response.headers.get(HEADER) == "hit"
        final = stream.get_final_message()
    assert final.content == whole.content
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
