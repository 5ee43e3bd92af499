"""OpenAI's audio surfaces through ModelGate with the stock `openai` SDK: transcriptions,
translations and text-to-speech (streamed), answered offline by the built-in mock provider,
each checked against its usage row (endpoint, unit, exact cost) through the admin API; and bad
uploads refused in OpenAI's error format with a usage row.

The demo (`modelgate up`) routes `mock-whisper` (100 micro-USD a second) and `mock-tts`
(15 micro-USD a character) to the mock.
"""

import io
import os
import time
import wave

import httpx
import openai
import pytest

TRANSCRIBE_MODEL = "mock-whisper"
SPEECH_MODEL = "mock-tts"
MICROS_PER_SECOND = 100
MICROS_PER_CHARACTER = 15


def wav_bytes(ms: int, rate: int = 16_000) -> bytes:
    """`ms` milliseconds of 16-bit mono silence as a WAV file, written by the stdlib."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * (rate * ms // 1000))
    return out.getvalue()


@pytest.fixture(scope="module")
def admin():
    """The admin API of the gateway under test (from the variables `modelgate up` prints)."""
    url = os.environ.get("MODELGATE_ADMIN_URL", "").strip()
    token = os.environ.get("MODELGATE_ADMIN_TOKEN", "").strip()
    if not url or not token:
        pytest.fail("MODELGATE_ADMIN_URL and MODELGATE_ADMIN_TOKEN must be set", pytrace=False)
    with httpx.Client(
        base_url=f"{url.rstrip('/')}/admin/v1",
        headers={"authorization": f"Bearer {token}"},
        timeout=10.0,
    ) as c:
        yield c


def usage_row(admin: httpx.Client, request_id: str) -> dict:
    """The usage row of one request, once the control plane has it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = admin.get("/usage/events", params={"request_id": request_id})
        r.raise_for_status()
        rows = r.json()["data"]
        if rows:
            return rows[0]
        time.sleep(0.1)
    pytest.fail(f"no usage row for request {request_id}")


def test_transcription_json_names_what_it_heard_and_is_metered_by_reported_seconds(
    client, admin
):
    audio = wav_bytes(1_500)
    raw = client.audio.transcriptions.with_raw_response.create(
        model=TRANSCRIBE_MODEL,
        # Sent as application/octet-stream, as many clients do: the gateway judges the bytes.
        file=("meeting.wav", audio, "application/octet-stream"),
        language="en",
    )
    result = raw.parse()

    assert "ModelGate mock transcription" in result.text
    assert "`meeting.wav`" in result.text
    assert f"{len(audio)} bytes of wav audio, 1.500 seconds long" in result.text
    assert result.usage.type == "duration"
    assert result.usage.seconds == 2
    row = usage_row(admin, raw.headers["x-request-id"])
    assert row["endpoint"] == "audio.transcriptions"
    assert row["requested_model"] == TRANSCRIBE_MODEL
    assert row["status"] == 200
    assert row["media_ms"] == 2_000
    assert row["estimated"] is False
    assert row["cost_micros"] == 2 * MICROS_PER_SECOND


def test_transcription_as_text_is_metered_by_the_duration_in_the_file_header(client, admin):
    raw = client.audio.transcriptions.with_raw_response.create(
        model=TRANSCRIBE_MODEL,
        file=("memo.wav", wav_bytes(2_750), "application/octet-stream"),
        response_format="text",
    )
    text = raw.parse()

    assert isinstance(text, str)
    assert "2.750 seconds long" in text
    row = usage_row(admin, raw.headers["x-request-id"])
    assert row["media_ms"] == 2_750
    assert row["estimated"] is True
    # 2.75 s × 100 micro-USD a second.
    assert row["cost_micros"] == 275


def test_translation_verbose_json_reports_duration_and_segments(client, admin):
    raw = client.audio.translations.with_raw_response.create(
        model=TRANSCRIBE_MODEL,
        file=("rede.wav", wav_bytes(1_250), "application/octet-stream"),
        response_format="verbose_json",
    )
    result = raw.parse()

    assert "(translated)" in result.text
    assert result.duration == pytest.approx(1.25)
    assert len(result.segments) == 1
    row = usage_row(admin, raw.headers["x-request-id"])
    assert row["endpoint"] == "audio.translations"
    assert row["media_ms"] == 2_000
    assert row["cost_micros"] == 2 * MICROS_PER_SECOND


def test_speech_streams_a_valid_wav_and_is_metered_by_characters(client, admin):
    text = "Hello from the ModelGate SDK suite, café included."
    with client.audio.speech.with_streaming_response.create(
        model=SPEECH_MODEL, voice="alloy", input=text, response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        request_id = response.headers["x-request-id"]
        chunks = list(response.iter_bytes())
    audio = b"".join(chunks)

    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnchannels() == 1
        assert w.getframerate() == 16_000
        # About 60 ms of audio a character.
        assert w.getnframes() == 16_000 * len(text) * 60 // 1000
    row = usage_row(admin, request_id)
    assert row["endpoint"] == "audio.speech"
    assert row["characters"] == len(text)
    assert row["streamed"] is True
    assert row["cost_micros"] == len(text) * MICROS_PER_CHARACTER


def test_speech_defaults_to_mp3_frames(client):
    response = client.audio.speech.create(model=SPEECH_MODEL, voice="alloy", input="Hi there.")
    audio = response.read()

    # MPEG-1 Layer III frame sync, frame after frame.
    assert audio[:2] == b"\xff\xfb"
    assert len(audio) % 417 == 0
    assert all(audio[i : i + 2] == b"\xff\xfb" for i in range(0, len(audio), 417))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.txt", b"plain text", "unsupported file format"),
        ("notes.mp3", b"plain text, not audio", "not audio in a supported format"),
        ("clip.mp3", wav_bytes(100), "named as mp3 but its content is wav"),
    ],
)
def test_a_file_that_is_not_what_it_claims_is_refused_with_a_usage_row(
    client, admin, name, content, message
):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(
            model=TRANSCRIBE_MODEL, file=(name, content, "application/octet-stream")
        )

    e = err.value
    assert e.status_code == 400
    assert message in e.message
    assert e.body["param"] == "file"
    assert e.body["type"] == "invalid_request_error"
    row = usage_row(admin, e.response.headers["x-request-id"])
    assert row["endpoint"] == "audio.transcriptions"
    assert row["status"] == 400
    assert row["error_class"] == "bad_request"


def test_an_upload_over_the_cap_is_refused_with_413(client, admin):
    # `modelgate up` caps uploads at 25 MiB (OpenAI's own limit is 25 MB).
    big = b"RIFF" + b"\0" * (25 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(
            model=TRANSCRIBE_MODEL, file=("big.wav", big, "application/octet-stream")
        )

    e = err.value
    assert e.status_code == 413
    assert "exceeds the gateway's limit" in e.message
    row = usage_row(admin, e.response.headers["x-request-id"])
    assert row["endpoint"] == "audio.transcriptions"
    assert row["error_class"] == "payload_too_large"
