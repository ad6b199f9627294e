"""The base of every engine behind an HTTP API (one file per engine beside it: `openai`,
`ollama`, `azure_openai`), called as Open WebUI 0.12.4 calls them.

One `request()` is one attempt with an overall deadline (a provider that never answers or
trickles bytes is cut off when it passes, not only after a silent read), whose refusal is
classified once (`errors.error_for_status`) and whose answer is decoded (base64 or floats) and
validated whole before it is returned (`responses`). Every message names the URL with its
credentials masked, in our words rather than the HTTP library's. Pacing, retries with backoff
and splitting are the dispatcher's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from pgvector_migration.embedding.api import EngineOptions
from pgvector_migration.embedding.errors import (
    PermanentEmbeddingError,
    TransientEmbeddingError,
    error_for_status,
)
from pgvector_migration.embedding.model_key import compose_model_key
from pgvector_migration.embedding.responses import (
    EmbeddingResponse,
    checked_vectors,
    error_detail,
    json_body,
)
from pgvector_migration.redaction import redact_text, redact_url
from pgvector_migration.settings import RagSettings

log = logging.getLogger(__name__)

WAIT_NOTICE_SECONDS = 10.0
# Endpoints that refused `encoding_format: base64` in this process: asked for floats from then on.
_FLOAT_ONLY_URLS: set[str] = set()


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
    # What the registry checks and the dry run's probe names: the `RagSettings` fields of the
    # engine's URL and key, the other fields it cannot send a request without, and what
    # RAG_EMBEDDING_MODEL is to it.
    url_setting = ""
    key_setting = ""
    required_settings: tuple[str, ...] = ()
    model_is: str | None = "the model"
    # OpenAI-style endpoints are asked for base64: the same float32 values at a quarter of the
    # bytes, decoded by numpy instead of parsed as ~10 JSON numbers a value (measured at 1536
    # dimensions and 512 inputs: 17.5 MB and 0.9 s of client CPU as floats, 4.2 MB and
    # 0.04 s as base64).
    asks_base64 = False

    def __init__(
        self,
        model: str,
        url: str,
        prefix: str | None,
        prefix_field: str | None,
        timeout: float,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self.model = model
        self.model_key = compose_model_key(self.engine, model, prefix, prefix_field)
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

    @property
    def encoding_format(self) -> str | None:
        """What the request body asks for: base64 unless this endpoint refused it."""
        if not self.asks_base64:
            return None
        return "float" if self.url in _FLOAT_ONLY_URLS else "base64"

    def request(self, texts: Sequence[str]) -> EmbeddingResponse:
        """One attempt; an endpoint that refuses base64 (some proxies answer a 4xx naming
        `encoding_format`) is asked again at once for floats, and for floats from then on."""
        asked = self.encoding_format
        try:
            return self._request(texts, asked)
        except PermanentEmbeddingError as error:
            if asked != "base64" or "encoding_format" not in str(error):
                raise
            _FLOAT_ONLY_URLS.add(self.url)
            log.warning(
                "%s refused encoding_format=base64 (%s); asking it for floats from now on",
                self.display_url,
                error,
            )
            return self._request(texts, "float")

    def _request(self, texts: Sequence[str], encoding_format: str | None) -> EmbeddingResponse:
        inputs, extra = apply_prefix(texts, self._prefix, self._prefix_field)
        fields = {**self._body(inputs), **extra}
        if encoding_format is not None:
            fields["encoding_format"] = encoding_format
        body = json.dumps(fields).encode("utf-8")
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
            message = self._clean(f"{where} failed with HTTP {status}: {error_detail(payload)}")
            raise error_for_status(status, message, headers)
        data = json_body(payload, headers, status, where)
        # At 1536 dimensions a 512-input answer is 4 MiB of body and 4 MiB of parsed strings;
        # up to 16 are decoded at once, so each is let go as soon as it is no longer needed.
        del payload, body
        raw_vectors, tokens = self._raw_vectors(data, len(inputs), where)
        del data
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

    @classmethod
    def from_settings(cls, settings: RagSettings, options: EngineOptions) -> BearerKeyEmbedder:
        """The engine its RAG_EMBEDDING_ENGINE value and its URL and key settings describe."""
        return cls(
            settings.embedding_model,
            getattr(settings, cls.url_setting).rstrip("/"),
            getattr(settings, cls.key_setting),
            settings.embedding_content_prefix,
            options.request_timeout_seconds,
            prefix_field=settings.embedding_prefix_field_name,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers
