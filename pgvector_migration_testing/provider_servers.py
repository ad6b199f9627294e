"""Real loopback HTTP servers that speak Ollama's and Azure OpenAI's embeddings protocols.

Tests point the migration at :attr:`OllamaServer.base_url` or
:attr:`AzureOpenAIServer.base_url` instead of mocking anything::

    with OllamaServer(dimensions=8) as server:
        ...  # RAG_OLLAMA_BASE_URL=server.base_url
        assert server.requests[0].path == "/api/embed"

Vectors are :func:`~pgvector_migration_testing.embedding_vectors.expected_embedding` of
``(model, input text, dimensions)``, where the model is the request's ``model`` for Ollama and
the deployment name in the URL for Azure. Every request, answered or not, is recorded in
:attr:`requests` (method, path with query, lower-cased headers, raw and parsed body, status)
before its response is written.

Order of checks: read body, authentication (401), injected failures (:meth:`fail_next`, which
401s do not consume), protocol checks (404/400), success, spoilt on purpose when
:meth:`corrupt_when` says so. Both run on the one loopback server base,
:class:`~pgvector_migration_testing.loopback.LoopbackServer`.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pgvector_migration_testing.embedding_vectors import count_tokens, expected_embedding
from pgvector_migration_testing.loopback import LoopbackServer, Reply, Request

__all__ = ["CORRUPTIONS", "AzureOpenAIServer", "OllamaServer", "ProviderRequest"]

CORRUPTIONS = ("nan", "wrong_dimension", "html", "missing_vectors")


@dataclass
class ProviderRequest:
    """One request as the server saw and answered it."""

    method: str
    path: str
    """The request target as sent, query string included."""
    headers: dict[str, str]
    """Header names lower-cased."""
    raw_body: bytes
    body: Any
    """The parsed JSON body, or None when it was not JSON."""
    status: int = 0

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def inputs(self) -> list[str]:
        value = self.body.get("input") if isinstance(self.body, dict) else None
        if isinstance(value, str):
            return [value]
        return list(value) if isinstance(value, list) else []


def _texts_of(body: dict[str, Any]) -> list[str] | None:
    """A request's ``input`` as its texts (a string is one), or None when it is neither a string
    nor a list of strings: both providers embed the same two shapes."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(text, str) for text in value):
        return value
    return None


class _ProviderServer(LoopbackServer):
    """The request log and fault injection shared by both providers."""

    def __init__(self, dimensions: int = 8, retry_after_seconds: float | None = 0.01) -> None:
        super().__init__()
        self.dimensions = dimensions
        self.retry_after_seconds = retry_after_seconds
        self._failures: deque[int] = deque()
        self._corruptions: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.url

    def respond(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            body = None
        record = ProviderRequest(
            request.method, request.target, request.headers, request.body, body
        )
        status, payload, headers = self._answer(record)
        payload = self._corrupted(record, status, payload)
        record.status = status
        self.requests.append(record)
        if isinstance(payload, str):
            return Reply(status, payload.encode(), "text/plain; charset=utf-8", headers)
        return Reply(
            status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers
        )

    # --- fault injection and log -------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` authenticated requests with `status` (a 429 or 503 carries a
        `Retry-After` of `retry_after_seconds`)."""
        with self._lock:
            self._failures.extend([status] * n)

    def corrupt_when(self, marker: str, fault: str) -> None:
        """Spoil every successful answer to a request with an input containing `marker`:
        ``nan`` (NaN in that input's vector), ``wrong_dimension`` (every vector one value
        short), ``html`` (an HTML page instead of JSON) or ``missing_vectors`` (no
        `embeddings`/`data` field)."""
        if fault not in CORRUPTIONS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(CORRUPTIONS)}")
        with self._lock:
            self._corruptions[marker] = fault

    def _corrupted(self, record: ProviderRequest, status: int, payload: Any) -> Any:
        if status != 200 or not isinstance(payload, dict):
            return payload
        with self._lock:
            corruptions = dict(self._corruptions)
        inputs = record.inputs
        for marker, fault in corruptions.items():
            hit = [i for i, text in enumerate(inputs) if marker in text]
            if not hit:
                continue
            if fault == "html":
                return "<!DOCTYPE html><html><body>Bad gateway</body></html>"
            key = "embeddings" if "embeddings" in payload else "data"
            if fault == "missing_vectors":
                return {name: value for name, value in payload.items() if name != key}
            vectors = (
                payload[key]
                if key == "embeddings"
                else [item["embedding"] for item in payload[key]]
            )
            for position, vector in enumerate(vectors):
                if fault == "wrong_dimension":
                    vector.pop()
                elif position in hit:
                    vector[0] = math.nan
            return payload
        return payload

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        self.requests.clear()
        with self._lock:
            self._failures.clear()

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _retry_headers(self, status: int) -> dict[str, str]:
        if status not in (429, 503) or self.retry_after_seconds is None:
            return {}
        return {"Retry-After": f"{self.retry_after_seconds:g}"}

    def _vector(self, model: str, text: str) -> list[float]:
        return expected_embedding(model, text, self.dimensions)

    def _answer(self, record: ProviderRequest) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError


class OllamaServer(_ProviderServer):
    """``POST /api/embed`` as Ollama answers it: ``{"model", "input": str | [str], "truncate"}``
    in, ``{"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}``
    out; errors are ``{"error": "..."}``. With `api_key` set, ``Authorization: Bearer
    {api_key}`` is required (as behind an authenticating proxy); `models`, when given, are the
    only ones "pulled"."""

    def __init__(
        self,
        dimensions: int = 8,
        api_key: str | None = None,
        models: set[str] | None = None,
        retry_after_seconds: float | None = 0.01,
    ) -> None:
        super().__init__(dimensions, retry_after_seconds)
        self.api_key = api_key
        self.models = models

    def _answer(self, record: ProviderRequest) -> tuple[int, Any, dict[str, str]]:
        if record.route != "/api/embed":
            return 404, "404 page not found", {}
        if record.method != "POST":
            return 405, "405 method not allowed", {}
        if self.api_key is not None and record.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return 401, {"error": "unauthorized"}, {}
        failure = self._take_failure()
        if failure is not None:
            return failure, {"error": f"injected failure {failure}"}, self._retry_headers(failure)
        body = record.body
        if not isinstance(body, dict):
            return 400, {"error": "invalid request body"}, {}
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return 400, {"error": "model is required"}, {}
        if self.models is not None and model not in self.models:
            return 404, {"error": f'model "{model}" not found, try pulling it first'}, {}
        inputs = _texts_of(body)
        if inputs is None:
            return 400, {"error": "invalid input type"}, {}
        return (
            200,
            {
                "model": model,
                "embeddings": [self._vector(model, text) for text in inputs],
                "total_duration": 1000,
                "load_duration": 0,
                "prompt_eval_count": sum(count_tokens(text) for text in inputs),
            },
            {},
        )


class AzureOpenAIServer(_ProviderServer):
    """``POST /openai/deployments/{deployment}/embeddings?api-version={version}`` as Azure
    OpenAI answers it: the ``api-key`` header must equal `api_key`, the ``api-version`` must be
    one of `api_versions`, the deployment one of `deployments` (any when None); a request
    with more than `max_inputs_per_request` inputs gets Azure's "Too many inputs" 400. The
    response is OpenAI's ``{"object": "list", "data": [...], "model", "usage"}``; errors are
    ``{"error": {"code", "message"}}``; 429s carry ``retry-after`` and ``retry-after-ms``."""

    def __init__(
        self,
        dimensions: int = 8,
        api_key: str = "azure-test-key",
        api_versions: frozenset[str] | set[str] = frozenset({"2024-10-21", "2024-02-01"}),
        deployments: set[str] | None = None,
        max_inputs_per_request: int = 2048,
        retry_after_seconds: float | None = 0.01,
    ) -> None:
        super().__init__(dimensions, retry_after_seconds)
        self.api_key = api_key
        self.api_versions = set(api_versions)
        self.deployments = deployments
        self.max_inputs_per_request = max_inputs_per_request

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
        return status, {"error": {"code": code, "message": message}}, headers or {}

    def _retry_headers(self, status: int) -> dict[str, str]:
        headers = super()._retry_headers(status)
        if headers:
            headers["retry-after-ms"] = f"{self.retry_after_seconds * 1000:g}"
        return headers

    def _answer(self, record: ProviderRequest) -> tuple[int, Any, dict[str, str]]:
        parts = record.route.split("/")
        # ['', 'openai', 'deployments', '{deployment}', 'embeddings']
        if len(parts) != 5 or parts[1:3] != ["openai", "deployments"] or parts[4] != "embeddings":
            return self._error(404, "404", "Resource not found")
        deployment = parts[3]
        if record.method != "POST":
            return self._error(405, "405", "Method not allowed")
        if record.headers.get("api-key") != self.api_key:
            return self._error(
                401,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            )
        failure = self._take_failure()
        if failure is not None:
            return self._error(
                failure, str(failure), f"injected failure {failure}", self._retry_headers(failure)
            )
        versions = record.query.get("api-version", [])
        if not versions or not versions[0]:
            return self._error(404, "404", "Resource not found")
        if versions[0] not in self.api_versions:
            return self._error(404, "404", "Resource not found")
        if self.deployments is not None and deployment not in self.deployments:
            return self._error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist.",
            )
        body = record.body
        if not isinstance(body, dict):
            return self._error(400, "BadRequest", "Invalid request body")
        inputs = _texts_of(body)
        if inputs is None:
            return self._error(400, "BadRequest", "'input' is a required property")
        if len(inputs) > self.max_inputs_per_request:
            return self._error(
                400,
                "BadRequest",
                f"Too many inputs. The max number of inputs is {self.max_inputs_per_request}. "
                "We hope to increase the number of inputs per request soon. Please contact us "
                "through an Azure support request if you have questions.",
            )
        tokens = sum(count_tokens(text) for text in inputs)
        return (
            200,
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": self._vector(deployment, t)}
                    for i, t in enumerate(inputs)
                ],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            {"apim-request-id": f"req-{len(self.requests)}"},
        )
