"""OpenAI's other surfaces through ModelGate with the stock `openai` SDK: Responses (plain and
streamed), embeddings, image generation and, when the installed SDK has it, the videos API —
all answered offline by the built-in mock provider.
"""

import base64
import time

import httpx
import pytest

MOCK_PHRASE = "ModelGate mock"


def test_responses_create_returns_the_mock_text_with_usage(client, model):
    response = client.responses.create(model=model, input="Hello from the SDK suite.")

    assert response.status == "completed"
    assert MOCK_PHRASE in response.output_text
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )


def test_responses_stream_yields_text_deltas_and_a_completed_event(client, model):
    stream = client.responses.create(model=model, input="Stream me.", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]

    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert MOCK_PHRASE in text
    assert events[-1].response.usage.output_tokens > 0


def test_embeddings_are_deterministic_vectors(client, model):
    first = client.embeddings.create(model=model, input=["alpha", "beta"])
    second = client.embeddings.create(model=model, input="alpha")

    assert len(first.data) == 2
    assert len(first.data[0].embedding) > 0
    # The SDK asks for base64 by default and decodes it; the vectors must round-trip.
    assert first.data[0].embedding == pytest.approx(second.data[0].embedding)
    assert first.data[0].embedding != pytest.approx(first.data[1].embedding)
    assert first.usage.prompt_tokens > 0


def test_images_generate_returns_n_labelled_pngs(client, model):
    result = client.images.generate(model=model, prompt="a lighthouse", n=2)

    assert len(result.data) == 2
    png = base64.b64decode(result.data[0].b64_json)
    assert png.startswith(b"\x89PNG")
    assert "mock" in result.data[0].revised_prompt


def test_videos_job_runs_to_completion_and_downloads(client, model, base_url, api_key):
    if hasattr(client, "videos"):
        video = client.videos.create(model=model, prompt="a paper boat", seconds="4")
        assert video.status in ("queued", "in_progress")
        deadline = time.monotonic() + 20
        while video.status != "completed" and time.monotonic() < deadline:
            time.sleep(0.3)
            video = client.videos.retrieve(video.id)
        assert video.status == "completed"
        assert b"MOCK" in client.videos.download_content(video.id).read()
        return
    # The pinned SDK predates the videos API: the same calls over plain HTTP.
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        created = http.post(
            "/videos", json={"model": model, "prompt": "a paper boat", "seconds": "4"}
        )
        assert created.status_code == 200, created.text
        video = created.json()
        assert video["object"] == "video"
        assert video["status"] in ("queued", "in_progress")
        deadline = time.monotonic() + 20
        while video["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.3)
            video = http.get(f"/videos/{video['id']}").json()
        assert video["status"] == "completed"
        assert video["progress"] == 100
        content = http.get(f"/videos/{video['id']}/content")
        assert content.status_code == 200
        assert b"MOCK" in content.content
