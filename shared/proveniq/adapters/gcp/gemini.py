"""`assessment.Assessor` over Gemini with the google-genai client.

Production is Vertex AI with the function's service account (`GeminiAssessor.vertex`:
Application Default Credentials unless `credentials` is given); `GeminiAssessor.api_key` is
the Gemini Developer API for a local stack. Both take an optional `base_url` (an emulator or a
regional endpoint). Calls are bounded: `timeout` seconds per attempt, at most `attempts`
attempts (408/429/5xx and transport errors are retried with a short backoff). Structured output:
``responseMimeType: application/json`` with `GeminiAssessment` as the response schema; the answer
is validated again by pydantic. Every failure (timeout, HTTP error, refused or unparsable
answer) becomes `errors.Unavailable`, and the scorer keeps its deterministic result.

The client is built on first use, so constructing an assessor does no I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from proveniq.errors import Unavailable
from proveniq.followers.risk.assessment import GeminiAssessment, Prompt

DEFAULT_MODEL = "gemini-2.5-flash"


@dataclass(frozen=True, kw_only=True)
class _ClientArgs:
    vertexai: bool
    project: str | None = None
    location: str | None = None
    api_key: str | None = None
    credentials: Any = None
    base_url: str | None = None
    api_version: str | None = None


class GeminiAssessor:
    def __init__(
        self,
        *,
        client_args: _ClientArgs,
        model: str = DEFAULT_MODEL,
        timeout: float = 8.0,
        attempts: int = 2,
    ) -> None:
        if not 1 <= attempts <= 3:
            raise ValueError("attempts must be 1..3 (the scorer must not wait long)")
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be in (0, 60] seconds")
        self._args = client_args
        self._model = model
        self._timeout_ms = int(timeout * 1000)
        self._attempts = attempts
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def vertex(
        cls,
        *,
        project: str,
        location: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        credentials: Any = None,
        timeout: float = 8.0,
        attempts: int = 2,
    ) -> GeminiAssessor:
        """Vertex AI (production). `credentials`: a google.auth Credentials, else ADC."""
        args = _ClientArgs(
            vertexai=True,
            project=project,
            location=location,
            credentials=credentials,
            base_url=base_url,
            api_version="v1",
        )
        return cls(client_args=args, model=model, timeout=timeout, attempts=attempts)

    @classmethod
    def api_key(
        cls,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout: float = 8.0,
        attempts: int = 2,
    ) -> GeminiAssessor:
        """The Gemini Developer API with an API key (local stacks)."""
        args = _ClientArgs(vertexai=False, api_key=api_key, base_url=base_url)
        return cls(client_args=args, model=model, timeout=timeout, attempts=attempts)

    @property
    def model(self) -> str:
        return self._model

    def _get_client(self) -> genai.Client:
        with self._lock:
            if self._client is None:
                a = self._args
                http = types.HttpOptions(
                    base_url=a.base_url,
                    api_version=a.api_version,
                    timeout=self._timeout_ms,
                    retry_options=types.HttpRetryOptions(
                        attempts=self._attempts, initial_delay=0.2, max_delay=1.0, jitter=0.2
                    ),
                )
                try:
                    if a.vertexai:
                        self._client = genai.Client(
                            vertexai=True,
                            project=a.project,
                            location=a.location,
                            credentials=a.credentials,
                            http_options=http,
                        )
                    else:
                        self._client = genai.Client(api_key=a.api_key, http_options=http)
                except Exception as e:  # misconfiguration (no credentials, bad options)
                    raise Unavailable(f"Gemini client not available: {e}") from e
            return self._client

    def assess(self, prompt: Prompt) -> GeminiAssessment:
        config = types.GenerateContentConfig(
            system_instruction=prompt.system,
            response_mime_type="application/json",
            response_schema=GeminiAssessment,
            temperature=0.0,
            candidate_count=1,
            max_output_tokens=2048,
        )
        try:
            response = self._get_client().models.generate_content(
                model=self._model, contents=prompt.user, config=config
            )
        except Unavailable:
            raise
        except genai_errors.APIError as e:
            raise Unavailable(f"Gemini answered {e.code}") from e
        except Exception as e:  # timeouts, connection errors, auth refresh failures
            raise Unavailable(f"Gemini call failed: {type(e).__name__}") from e
        text = response.text
        if not text:
            raise Unavailable("Gemini returned no answer")
        try:
            return GeminiAssessment.model_validate_json(text)
        except pydantic.ValidationError as e:
            raise Unavailable("Gemini answer does not match the schema") from e
