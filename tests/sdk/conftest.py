"""Shared fixtures for the ModelGate SDK compatibility suite (the official OpenAI, Anthropic
and Google GenAI Python SDKs).

The suite talks to an already-running gateway described by environment
variables (see README.md). Missing required variables are a hard failure, not
a skip: a silently skipped compatibility suite proves nothing.
"""

import os

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

DEFAULT_MODEL = "mock-small"
REQUEST_TIMEOUT_SECONDS = 30.0


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            f"environment variable {name} is not set; start a gateway "
            "(`cargo run --release -- up`) and export the variables it prints",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    """OpenAI SDK base URL of the gateway, e.g. http://127.0.0.1:8080/v1."""
    return _required_env("MODELGATE_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str:
    """A valid gateway key (mg-...) that may use every model."""
    return _required_env("MODELGATE_API_KEY")


@pytest.fixture(scope="session")
def model() -> str:
    """Alias of the deterministic mock model served by the gateway."""
    return os.environ.get("MODELGATE_MODEL", "").strip() or DEFAULT_MODEL


@pytest.fixture(scope="session")
def client(base_url: str, api_key: str) -> openai.OpenAI:
    """Official OpenAI client pointed at the gateway: only base URL and key changed.

    Retries are disabled so every failure surfaces immediately and each test
    sends exactly the requests it describes.
    """
    c = openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    yield c
    c.close()


@pytest.fixture(scope="session")
def anthropic_client(base_url: str, api_key: str) -> anthropic.Anthropic:
    """Official Anthropic client pointed at the gateway: only base URL and key changed.

    The Anthropic SDK appends `/v1/messages` itself, so its base URL is the gateway's root;
    the gateway key goes in `x-api-key`, as with Anthropic.
    """
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    c = anthropic.Anthropic(
        base_url=root,
        api_key=api_key,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    yield c
    c.close()


@pytest.fixture(scope="session")
def gemini_client(base_url: str, api_key: str) -> genai.Client:
    """Official Google Gen AI client pointed at the gateway: only base URL and key changed.

    The SDK appends `/v1beta/models/{model}:generateContent` itself, so its base URL is the
    gateway's root; the gateway key travels as `x-goog-api-key`, as with Google.
    """
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    return genai.Client(
        api_key=api_key,
        http_options=genai_types.HttpOptions(
            base_url=root, timeout=int(REQUEST_TIMEOUT_SECONDS * 1000)
        ),
    )
