"""A real, local HTTP server that speaks the OpenAI embeddings protocol.

Integration tests point the ``openai`` SDK (or any HTTP client) at
:attr:`EmbeddingServer.base_url` instead of mocking anything::

    with EmbeddingServer(dimensions=8, api_key="sk-test") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert server.inputs == ["a", "b"]

Embeddings are :func:`~pgvector_migration_testing.embedding_vectors.expected_embedding` of
``(model, text, dimensions)``, whether the client asks for ``"float"`` or ``"base64"``
encoding (the values are float32 in both cases, so they compare equal, not merely close).

Endpoints
---------
``POST /v1/embeddings`` and ``POST /embeddings``
    OpenAI-compatible embeddings.
``GET /v1/models`` (and ``/models``), ``GET /v1/models/{id}``
    Models seen so far in embeddings requests.
Anything else
    404 (405 for a wrong method on a known path), with an OpenAI-style error body.

Order of checks for an embeddings request: read body, sleep
``latency_seconds`` plus ``latency_per_input_seconds`` for each input (a provider's time grows
with the batch), authentication (401), injected failures (``fail_next``),
rate limiter (429, :mod:`~pgvector_migration_testing.rate_limiters`), request validation (400),
success. Every embeddings request is recorded in :attr:`EmbeddingServer.requests` *before* its
response is written, so a record is visible as soon as the client has its answer.
Requests rejected with 401 do not consume injected failures.

Misbehaviour on purpose: :meth:`EmbeddingServer.fault_next` and
:meth:`EmbeddingServer.fault_when` (tied to a marker text) answer valid requests with one of
:data:`~pgvector_migration_testing.openai_faults.FAULTS`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pgvector_migration_testing.embedding_vectors import count_tokens
from pgvector_migration_testing.loopback import LoopbackServer, Reply, Request
from pgvector_migration_testing.openai_faults import (
    WIRE_FAULTS,
    FaultPlan,
    WireFaultReply,
    embedding_data,
    wire_fault_body,
)
from pgvector_migration_testing.openai_protocol import (
    Base64Support,
    OpenAIError,
    injected_error,
    retry_after_headers,
    validate_embeddings_request,
)
from pgvector_migration_testing.rate_limiters import StaticRateLimiter

__all__ = ["EmbeddingRequestRecord", "EmbeddingServer"]

DEFAULT_MAX_INPUTS_PER_REQUEST = 2048

_EMBEDDINGS_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MODEL_PREFIXES = ("/v1/models/", "/models/")


@dataclass
class EmbeddingRequestRecord:
    """One embeddings request as the server saw and answered it."""

    inputs: list[str]
    """Input strings (``[]`` when the body could not be understood)."""
    model: str | None
    authorization: str | None
    """Raw ``Authorization`` header value, or ``None`` if absent."""
    status: int
    """HTTP status the server returned."""
    path: str = "/v1/embeddings"
    encoding_format: str | None = None
    """As requested (``None`` when the field was absent)."""
    dimensions: int | None = None
    """Vector length actually used (only set on success)."""
    error: str | None = None
    """Error message sent back, for non-200 responses."""
    body: Any = None
    """Parsed JSON body (``None`` if it was not valid JSON)."""
    fault: str | None = None
    """The fault mode this request was answered with (see
    :data:`~pgvector_migration_testing.openai_faults.FAULTS`), if any."""
    arrived_at: float | None = None
    """``time.monotonic()`` when the request's body was read."""
    answered_at: float | None = None
    """``time.monotonic()`` when its answer was decided (after the latency and the limiter:
    for a 200, when its tokens were charged to the budget)."""
    tokens: int = 0
    """Tokens of a valid request, as
    :func:`~pgvector_migration_testing.embedding_vectors.count_tokens` counts them (what a
    limiter charges)."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.fault is None


class EmbeddingServer(LoopbackServer):
    """Fake OpenAI embeddings endpoint on ``127.0.0.1`` for integration tests.

    Use as a context manager (or call :meth:`start` / :meth:`stop`).

    Runtime-adjustable attributes: ``dimensions`` (``model_dimensions`` for models of
    another length, e.g. two models of a switch), ``api_key``, ``latency_seconds``
    (``model_latency_seconds`` for one model's requests only), ``latency_per_input_seconds``,
    ``max_inputs_per_request``,
    ``retry_after_seconds`` (used in headers of injected 429s), ``rate_limiter``,
    ``base64_support``, ``hang_seconds`` and ``trickle_interval``.
    """

    server_version = "pgvector-migration-fake-openai/1.0"

    def __init__(
        self,
        dimensions: int = 8,
        *,
        api_key: str | None = None,
        latency_seconds: float = 0.0,
        latency_per_input_seconds: float = 0.0,
        max_inputs_per_request: int = DEFAULT_MAX_INPUTS_PER_REQUEST,
        fail_first: int = 0,
        fail_status: int = 500,
        retry_after_seconds: float = 0.05,
        rate_limiter: StaticRateLimiter | Any | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.dimensions = dimensions
        self.model_dimensions: dict[str, int] = {}
        """Vector lengths by model name; other models get ``dimensions``."""
        self.model_latency_seconds: dict[str, float] = {}
        """Extra seconds before answering a request for the named model."""
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.latency_per_input_seconds = latency_per_input_seconds
        self.base64_support: Base64Support = "answer"
        """``"answer"`` base64 when asked; ``"ignore"`` the field and send floats (as some
        compatible servers do); ``"refuse"`` it with a 400 naming ``encoding_format`` (as some
        proxies do)."""
        self.max_inputs_per_request = max_inputs_per_request
        self.retry_after_seconds = retry_after_seconds
        self.rate_limiter = rate_limiter if rate_limiter is not None else StaticRateLimiter()
        self.hang_seconds = 60.0
        """How long a ``hang`` fault holds the connection before closing it unanswered."""
        self.trickle_interval = 0.2
        """Seconds between the bytes of a ``trickle`` fault's answer."""
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._models_seen: dict[str, None] = {}
        if fail_first:
            self.fail_next(fail_first, fail_status)

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to ``openai.OpenAI``."""
        return f"{self.url}/v1"

    # -- fault injection ---------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Make the next ``n`` (authenticated) embeddings requests fail with ``status``.

        Calls queue up: ``fail_next(1, 429); fail_next(1, 500)`` fails the
        next request with 429 and the one after with 500.
        """
        self.faults.fail_next(n, status)

    def fault_next(self, fault: str, n: int = 1) -> None:
        """Answer the next ``n`` (authenticated, valid) embeddings requests with ``fault``,
        one of :data:`~pgvector_migration_testing.openai_faults.FAULTS`; a bad value spoils
        the request's first input, a wrong dimension every vector."""
        self.faults.fault_next(fault, n)

    def fault_when(self, marker: str, fault: str, times: int | None = None) -> None:
        """Answer requests with an input containing ``marker`` with ``fault``: the next
        ``times`` such requests, or every one until :meth:`clear_failures`; bad values and a
        wrong dimension spoil only the inputs that contain it."""
        self.faults.fault_when(marker, fault, times)

    def clear_failures(self) -> None:
        self.faults.clear()

    @property
    def pending_failures(self) -> int:
        return self.faults.pending_failures

    def reset(self) -> None:
        """Forget recorded requests, seen models and pending failures."""
        self.requests.clear()
        self.clear_failures()
        with self._lock:
            self._models_seen.clear()

    # -- observations ------------------------------------------------------

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def inputs(self) -> list[str]:
        """All input strings embedded successfully (status 200), in order."""
        return [text for record in self.requests if record.ok for text in record.inputs]

    @property
    def models_seen(self) -> list[str]:
        with self._lock:
            return list(self._models_seen)

    # -- request handling (called from handler threads) --------------------

    def respond(self, request: Request) -> Reply:
        path = request.target.split("?", 1)[0].rstrip("/") or "/"
        authorization = request.headers.get("authorization")
        try:
            if path in _EMBEDDINGS_PATHS:
                if request.method != "POST":
                    raise OpenAIError(405, f"Method {request.method} not allowed on {path}.")
                status, payload, headers = self._handle_embeddings(
                    path, request.body, authorization
                )
                if isinstance(payload, WireFaultReply):
                    return payload
            elif request.method == "GET" and (
                path in _MODELS_PATHS or path.startswith(_MODEL_PREFIXES)
            ):
                status, payload, headers = self._handle_models(path, authorization)
            else:
                raise OpenAIError(
                    404, f"Unknown request URL: {request.method} {path}.", code="unknown_url"
                )
        except OpenAIError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        return self._json_reply(status, payload, headers)

    def error_reply(self, error: Exception) -> Reply:
        failure = OpenAIError(500, f"Test server error: {error!r}")
        return self._json_reply(failure.status, failure.body(), failure.headers)

    def _json_reply(self, status: int, payload: Any, headers: dict[str, str]) -> Reply:
        """A JSON answer with the limiter's ``x-ratelimit-*`` headers, as every answer has."""
        all_headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        all_headers.update(self.rate_limiter.headers())
        all_headers.update(headers)
        return Reply(status, json.dumps(payload).encode("utf-8"), "application/json", all_headers)

    def _check_auth(self, authorization: str | None) -> None:
        api_key = self.api_key
        if api_key is None:
            return
        if authorization != f"Bearer {api_key}":
            if not authorization:
                message = (
                    "You didn't provide an API key. You need to provide your API key "
                    "in an Authorization header using Bearer auth."
                )
            else:
                message = "Incorrect API key provided."
            raise OpenAIError(401, message, code="invalid_api_key")

    def _handle_models(
        self, path: str, authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        self._check_auth(authorization)
        models = [
            {"id": m, "object": "model", "created": 0, "owned_by": "pgvector-migration-tests"}
            for m in self.models_seen
        ]
        if path in _MODELS_PATHS:
            return 200, {"object": "list", "data": models}, {}
        model_id = path.split("/models/", 1)[1]
        for model in models:
            if model["id"] == model_id:
                return 200, model, {}
        raise OpenAIError(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )

    def _handle_embeddings(
        self, path: str, raw_body: bytes, authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        record = EmbeddingRequestRecord(
            inputs=[],
            model=None,
            authorization=authorization,
            status=0,
            path=path,
            arrived_at=time.monotonic(),
        )
        try:
            status, payload, headers = self._embeddings(record, raw_body, authorization)
        except OpenAIError as exc:
            record.status, record.error = exc.status, exc.message
            record.answered_at = time.monotonic()
            self.requests.append(record)
            raise
        record.status = status
        record.answered_at = time.monotonic()
        self.requests.append(record)
        return status, payload, headers

    def _embeddings(
        self, record: EmbeddingRequestRecord, raw_body: bytes, authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        # Parse leniently first so that even rejected requests are recorded.
        body: Any = None
        parse_error: str | None = None
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError as exc:
            parse_error = f"We could not parse the JSON body of your request: {exc}"
        record.body = body
        if isinstance(body, dict):
            model = body.get("model")
            record.model = model if isinstance(model, str) else None
            raw_input = body.get("input")
            if isinstance(raw_input, str):
                record.inputs = [raw_input]
            elif isinstance(raw_input, list):
                record.inputs = [x for x in raw_input if isinstance(x, str)]
            fmt = body.get("encoding_format")
            record.encoding_format = fmt if isinstance(fmt, str) else None
            if record.model is not None:
                with self._lock:
                    self._models_seen.setdefault(record.model, None)

        latency = (
            (self.latency_seconds or 0.0)
            + (self.latency_per_input_seconds or 0.0) * len(record.inputs)
            + self.model_latency_seconds.get(record.model, 0.0)
        )
        if latency > 0:
            self.stopping.wait(latency)

        self._check_auth(authorization)

        injected = self.faults.take_failure()
        if injected is not None:
            raise injected_error(injected, self.retry_after_seconds)

        if parse_error is not None:
            raise OpenAIError(400, parse_error)
        texts, model, dimensions, encoding_format = validate_embeddings_request(
            body,
            default_dimensions=self.model_dimensions.get(record.model, self.dimensions),
            max_inputs_per_request=self.max_inputs_per_request,
            base64_support=self.base64_support,
        )

        tokens = sum(count_tokens(t) for t in texts)
        record.tokens = tokens
        decision = self.rate_limiter.admit(tokens)
        if not decision.allowed:
            retry = decision.retry_after_seconds
            headers = dict(decision.headers)
            if retry is not None:
                headers.update(retry_after_headers(retry))
            raise OpenAIError(429, decision.message, code="rate_limit_exceeded", headers=headers)

        fault, by_position = self.faults.take_fault(texts)
        record.fault = fault or (min(by_position.values()) if by_position else None)
        if fault == "reject":
            raise OpenAIError(
                400,
                "The input was rejected by the content filter.",
                param="input",
                code="content_filter",
            )
        data = embedding_data(texts, model, dimensions, encoding_format, fault, by_position)
        record.dimensions = dimensions
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if fault in WIRE_FAULTS:
            wire_fault = WireFaultReply(
                200,
                wire_fault_body(fault, payload),
                "text/html" if fault == "html" else "application/json",
                fault=fault,
                stopping=self.stopping,
                hang_seconds=self.hang_seconds,
                trickle_interval=self.trickle_interval,
            )
            return 200, wire_fault, {}
        return 200, payload, dict(decision.headers)
