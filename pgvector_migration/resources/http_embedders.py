"""The engines behind an HTTP API: OpenAI-compatible, Ollama and Azure OpenAI, called as Open
WebUI 0.12.4 calls them.

One `request()` is one attempt with an overall deadline (a provider that never answers or
trickles bytes is cut off when it passes, not only after a silent read), whose answer is
validated whole before it is returned (`embedding_responses`). Every message names the URL
with its credentials masked, in our words rather than the HTTP library's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from pgvector_migration.redaction import redact_text, redact_url
from pgvector_migration.resources.embedding_responses import (
    EmbeddingError,
    InvalidResponseError,
    PermanentEmbeddingError,
    RequestTooLargeError,
    TransientEmbeddingError,
    checked_vectors,
    ordered_items,
)

log = logging.getLogger(__name__)

TOO_LARGE_HINTS = ("maximum", "too many", "too long", "too large", "context length", "limit")
WAIT_NOTICE_SECONDS = 10.0


@dataclass(frozen=True)
class EmbeddingResponse:
    """One successful request: vectors in input order, the tokens the provider counted, and
    the response headers (rate-limit budget)."""

    vectors: list[np.ndarray]
    prompt_tokens: int
    headers: dict[str, str]


def apply_prefix(
    texts: Sequence[str], prefix: str | None, prefix_field: str | None
) -> tuple[list[str], dict[str, str]]:
    """The inputs and extra body fields Open WebUI sends for an API engine.

    Open WebUI's `generate_embeddings` prepends the prefix to every text only when
    `RAG_EMBEDDING_PREFIX_FIELD_NAME` is unset; when it is set, the texts go as they are and
    each engine's batch function adds `{field_name: prefix}` to the JSON body instead.
    """
    if prefix is None:
        return list(texts), {}
    if prefix_field is None:
        return [f"{prefix}{text}" for text in texts], {}
    return list(texts), {prefix_field: prefix}


def retry_after_seconds(headers) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds), as OpenAI sends them."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _is_transient(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _connection_problem(error: httpx.TransportError) -> str:
    """What went wrong on the wire, in words an admin can act on."""
    if isinstance(error, httpx.ConnectError):
        return "could not connect (is the provider running and the URL right?)"
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "the connection was reset or closed before the answer was complete"
    if isinstance(error, httpx.ProxyError):
        return "the proxy refused the request"
    return f"the connection failed ({type(error).__name__})"


class _DeadlineGuard:
    """Shuts the connection's socket when the deadline passes, so a read that keeps getting a
    byte now and then cannot outlive it; `fired` tells the reader why its read failed."""

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        self.fired = False
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        if isinstance(self._socket, socket.socket):
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


class HTTPEmbedder:
    """One JSON POST per `request()` through `httpx`, with the body serialised as Open WebUI's
    aiohttp session serialises it (`json.dumps` with its defaults), redirects followed and
    proxies taken from the environment as aiohttp's `trust_env=True` does."""

    engine = ""

    def __init__(
        self,
        model: str,
        url: str,
        prefix: str | None,
        prefix_field: str | None,
        timeout: float,
        secrets: Sequence[str | None] = (),
    ) -> None:
        from pgvector_migration.resources.embeddings import model_key_for

        self.model = model
        self.model_key = model_key_for(self.engine, model, prefix, prefix_field)
        self.url = url
        self.display_url = redact_url(url)
        self.deadline_seconds = timeout
        self._prefix = prefix
        self._prefix_field = prefix_field
        self._secrets = [*secrets, httpx.URL(url).password]
        self._client = httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True)

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        """The raw vectors (in input order) and prompt tokens of a successful response."""
        raise NotImplementedError

    def _failed(self, status: int) -> bool:
        return status >= 400

    def _clean(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def request(self, texts: Sequence[str]) -> EmbeddingResponse:
        inputs, extra = apply_prefix(texts, self._prefix, self._prefix_field)
        body = json.dumps({**self._body(inputs), **extra}).encode("utf-8")
        where = f"embedding request to {self.display_url}"
        started = time.monotonic()
        notice = threading.Timer(
            min(WAIT_NOTICE_SECONDS, self.deadline_seconds / 2),
            lambda: log.warning(
                "waiting for %s: %d text(s) sent %.0f s ago, no complete answer yet "
                "(deadline %.0f s, PGVECTOR_MIGRATION_REQUEST_TIMEOUT)",
                where,
                len(inputs),
                time.monotonic() - started,
                self.deadline_seconds,
            ),
        )
        notice.daemon = True
        notice.start()
        try:
            status, headers, payload = self._post(body, where, started + self.deadline_seconds)
        finally:
            notice.cancel()
        if self._failed(status):
            message = self._clean(f"{where} failed with HTTP {status}: {_error_detail(payload)}")
            if _is_transient(status):
                raise TransientEmbeddingError(message, status, retry_after_seconds(headers))
            if status in (400, 413) and any(h in message.lower() for h in TOO_LARGE_HINTS):
                raise RequestTooLargeError(message, status)
            raise PermanentEmbeddingError(message, status)
        data = _json_body(payload, headers, status, where)
        raw_vectors, tokens = self._raw_vectors(data, len(inputs), where)
        return EmbeddingResponse(checked_vectors(raw_vectors, where), tokens, headers)

    def _post(self, body: bytes, where: str, deadline: float) -> tuple[int, dict[str, str], bytes]:
        timed_out = TransientEmbeddingError(
            f"{where} timed out: no complete answer within {self.deadline_seconds:g} s "
            "(the per-request deadline, PGVECTOR_MIGRATION_REQUEST_TIMEOUT)",
            None,
            None,
        )
        guard: _DeadlineGuard | None = None
        try:
            with self._client.stream(
                "POST", self.url, content=body, headers=self._headers()
            ) as response:
                guard = _DeadlineGuard(response, deadline)
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise timed_out
                headers = {key.lower(): value for key, value in response.headers.items()}
                return response.status_code, headers, b"".join(chunks)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as error:
            raise PermanentEmbeddingError(
                self._clean(f"{where} cannot be sent: {error}")
            ) from error
        except httpx.TimeoutException as error:
            raise timed_out from error
        except httpx.TransportError as error:
            if guard is not None and guard.fired:
                raise timed_out from error
            raise TransientEmbeddingError(
                f"{where} failed: {_connection_problem(error)}", None, None
            ) from error
        finally:
            if guard is not None:
                guard.cancel()


def _error_detail(payload: bytes) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace").strip()[:300] or "no details"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message") or error
    return str(error)[:500]


def _json_body(payload: bytes, headers: dict[str, str], status: int, where: str) -> Any:
    """The parsed body of a success, or an `InvalidResponseError` saying what came instead."""
    if not payload.strip():
        raise InvalidResponseError(f"{where} returned HTTP {status} with an empty body")
    try:
        return json.loads(payload)
    except ValueError:
        kind = headers.get("content-type", "no content type").split(";")[0]
        start = payload.decode("utf-8", "replace").strip()
        what = (
            "JSON that is cut off or malformed"
            if start[:1] in "{["
            else f"a {kind} body that is not JSON"
        )
        shown = " ".join(start[:80].split())
        raise InvalidResponseError(
            f"{where} returned HTTP {status} with {what} ({len(payload)} bytes: {shown!r})"
        ) from None


def _openai_style_vectors(data: Any, count: int, where: str) -> tuple[list[Any], int]:
    if not isinstance(data, dict) or "data" not in data:
        shown = ", ".join(sorted(map(str, data))[:6]) if isinstance(data, dict) else type(data)
        raise InvalidResponseError(f"{where} returned a body without `data` (fields: {shown})")
    items = ordered_items(data["data"], count, where)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens")
    return [item.get("embedding") for item in items], tokens if isinstance(tokens, int) else 0


class BearerKeyEmbedder(HTTPEmbedder):
    """An endpoint at `{base_url}{path}` that takes an optional bearer key, as Open WebUI's
    `bearer_auth_header` sends it: the key stripped, no header when it is empty."""

    path = ""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        prefix: str | None,
        timeout: float,
        prefix_field: str | None = None,
    ) -> None:
        super().__init__(
            model, f"{base_url}{self.path}", prefix, prefix_field, timeout, secrets=[api_key]
        )
        self.base_url = base_url
        self._api_key = api_key.strip() if isinstance(api_key, str) else ""

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers


class OpenAIEmbedder(BearerKeyEmbedder):
    """Any OpenAI-compatible `/embeddings` endpoint, called as Open WebUI 0.12.4 calls it
    (`agenerate_openai_batch_embeddings`): `POST {base_url}/embeddings` with `{"input": texts,
    "model": model}` and a bearer key; we add `encoding_format: float`, the API's default,
    so a provider that would rather send base64 is told what to send."""

    engine = "openai"
    path = "/embeddings"

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs, "model": self.model, "encoding_format": "float"}

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        return _openai_style_vectors(data, count, where)


class OllamaEmbedder(BearerKeyEmbedder):
    """Ollama's `/api/embed`, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_ollama_batch_embeddings`): `POST {base_url}/api/embed`
    with `{"input": texts, "model": model, "truncate": true}`, `Content-Type:
    application/json` and `Authorization: Bearer {key}` only when a key is set; the vectors
    are the response's `embeddings`, in input order."""

    engine = "ollama"
    path = "/api/embed"

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs, "model": self.model, "truncate": True}

    def _failed(self, status: int) -> bool:
        return status != 200  # Open WebUI accepts nothing but 200 from Ollama

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        if not isinstance(data, dict) or not isinstance(data.get("embeddings"), list):
            raise InvalidResponseError(f"{where} returned a body without an `embeddings` list")
        vectors = data["embeddings"]
        if len(vectors) != count:
            raise InvalidResponseError(
                f"{where} returned {len(vectors)} embeddings for {count} inputs"
            )
        tokens = data.get("prompt_eval_count")
        return list(vectors), tokens if isinstance(tokens, int) else 0


class AzureOpenAIEmbedder(HTTPEmbedder):
    """Azure OpenAI, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_azure_openai_batch_embeddings`): `POST
    {base_url}/openai/deployments/{model}/embeddings?api-version={api_version}` (the model
    setting is the deployment name) with `{"input": texts}` (no model field),
    `Content-Type: application/json` and `api-key: {key}`; the vectors are the response's
    `data[].embedding`."""

    engine = "azure_openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        api_version: str,
        prefix: str | None,
        timeout: float,
        prefix_field: str | None = None,
    ) -> None:
        url = f"{base_url}/openai/deployments/{model}/embeddings?api-version={api_version}"
        super().__init__(model, url, prefix, prefix_field, timeout, secrets=[api_key])
        self.base_url = base_url
        self.api_version = api_version
        # Open WebUI sends the key as stored; surrounding blanks are not part of a header value
        # on the wire, so the server sees the stripped key either way.
        self._api_key = api_key.strip(" \t") if isinstance(api_key, str) else ""

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "api-key": self._api_key}

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs}

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        return _openai_style_vectors(data, count, where)


__all__ = [
    "AzureOpenAIEmbedder",
    "EmbeddingError",
    "EmbeddingResponse",
    "HTTPEmbedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "apply_prefix",
    "retry_after_seconds",
]
