"""A real, local HTTP server that speaks the OpenAI embeddings protocol.

Integration tests point the ``openai`` SDK (or any HTTP client) at
:attr:`EmbeddingServer.base_url` instead of mocking anything::

    with EmbeddingServer(dimensions=8, api_key="sk-test") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert server.inputs == ["a", "b"]

Embeddings are deterministic functions of ``(model, text, dimensions)``;
:func:`expected_embedding` returns exactly what the server sends, whether the
client asks for ``"float"`` or ``"base64"`` encoding (the values are float32
in both cases, so they compare equal, not merely close).

Endpoints
---------
``POST /v1/embeddings`` and ``POST /embeddings``
    OpenAI-compatible embeddings.
``GET /v1/models`` (and ``/models``), ``GET /v1/models/{id}``
    Models seen so far in embeddings requests.
Anything else
    404 (405 for a wrong method on a known path), with an OpenAI-style error body.

Order of checks for an embeddings request: read body, sleep
``latency_seconds``, authentication (401), injected failures (``fail_next``),
rate limiter (429), request validation (400), success. Every embeddings
request is recorded in :attr:`EmbeddingServer.requests` *before* its response
is written, so a record is visible as soon as the client has its answer.
Requests rejected with 401 do not consume injected failures.

Misbehaviour on purpose: :meth:`EmbeddingServer.fault_next` and
:meth:`EmbeddingServer.fault_when` (tied to a marker text) answer valid requests with one of
:data:`FAULTS`: a wrong dimension, bad or missing ``index`` fields, NaN, Infinity, null or
out-of-range values, base64 where floats were asked, a content-filter 400, an HTML page, cut-off
JSON, an empty body, no ``data``, a reset connection, no answer at all, or a trickle of bytes.

Standard library plus numpy only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, overload

import numpy as np

__all__ = [
    "FAULTS",
    "BudgetRateLimiter",
    "EmbeddingRequestRecord",
    "EmbeddingServer",
    "RateLimitDecision",
    "RequestLog",
    "StaticRateLimiter",
    "count_tokens",
    "expected_embedding",
]

DEFAULT_MAX_INPUTS_PER_REQUEST = 2048
DEFAULT_RATE_LIMIT_REQUESTS = 1_000_000
DEFAULT_RATE_LIMIT_TOKENS = 1_000_000_000

_EMBEDDINGS_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MODEL_PREFIXES = ("/v1/models/", "/models/")

# Misbehaviour on purpose, for testing clients against a broken provider. Value faults answer
# 200 with a bad payload; wire faults break the HTTP exchange itself.
VALUE_FAULTS = (
    "wrong_dimension",  # every vector one value short
    "bad_index",  # every `index` field 0
    "no_index",  # no `index` fields, vectors in order (valid: Open WebUI takes the order)
    "nan",  # NaN in the affected input's vector
    "infinity",  # Infinity in the affected input's vector
    "null",  # null in the affected input's vector
    "out_of_range",  # 1e39 (beyond float32) in the affected input's vector
    "base64",  # base64 strings although floats were asked for
    "reject",  # 400 content filter
)
WIRE_FAULTS = (
    "html",  # 200 with an HTML page
    "truncated",  # 200 with half of the JSON (a complete HTTP message)
    "empty",  # 200 with an empty body
    "no_data",  # 200 with JSON that has no `data`
    "reset",  # the connection reset, no answer
    "hang",  # accepts, never answers (until the server stops or hang_seconds pass)
    "trickle",  # the right answer, one byte every trickle_interval seconds
)
FAULTS = VALUE_FAULTS + WIRE_FAULTS


@dataclass(frozen=True)
class _WireFault:
    """An answer the handler writes by hand instead of a JSON response."""

    fault: str
    body: bytes


# ---------------------------------------------------------------------------
# Deterministic vectors
# ---------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _embedding_f32(model: str, text: str, dimensions: int) -> np.ndarray:
    digest = hashlib.sha256((model + "\0" + text).encode("utf-8", errors="surrogatepass")).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    vector = rng.standard_normal(dimensions)
    vector /= np.linalg.norm(vector)
    result = vector.astype("<f4")
    result.setflags(write=False)
    return result


def expected_embedding(model: str, text: str, dimensions: int) -> list[float]:
    """The vector the server returns for ``text`` under ``model``.

    A standard-normal draw seeded from ``sha256(model + "\\0" + text)``,
    L2-normalised in float64 and then rounded to float32 (the precision the
    base64 wire format carries). Returned as Python floats.
    """
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise ValueError(f"dimensions must be a positive int, got {dimensions!r}")
    return _embedding_f32(model, text, dimensions).tolist()


def count_tokens(text: str) -> int:
    """Rough, deterministic token count: one token per 4 UTF-8 bytes, minimum 1."""
    return max(1, math.ceil(len(text.encode("utf-8", errors="surrogatepass")) / 4))


# ---------------------------------------------------------------------------
# Request records
# ---------------------------------------------------------------------------


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
    """The fault mode this request was answered with (see :data:`FAULTS`), if any."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.fault is None


class RequestLog(Sequence[EmbeddingRequestRecord]):
    """A thread-safe, append-only-from-the-server list of request records.

    Supports ``len``, indexing, slicing, iteration (over a snapshot) and
    equality with plain lists.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[EmbeddingRequestRecord] = []

    def append(self, record: EmbeddingRequestRecord) -> None:
        with self._lock:
            self._items.append(record)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[EmbeddingRequestRecord]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @overload
    def __getitem__(self, index: int) -> EmbeddingRequestRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[EmbeddingRequestRecord]: ...
    def __getitem__(self, index: int | slice) -> Any:
        with self._lock:
            return self._items[index]

    def __iter__(self) -> Iterator[EmbeddingRequestRecord]:
        return iter(self.snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RequestLog):
            return self.snapshot() == other.snapshot()
        if isinstance(other, list):
            return self.snapshot() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RequestLog({self.snapshot()!r})"


# ---------------------------------------------------------------------------
# Rate limiting (extension point)
# ---------------------------------------------------------------------------


@dataclass
class RateLimitDecision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    message: str = "Rate limit reached."


class StaticRateLimiter:
    """Admits everything and reports large, fixed ``x-ratelimit-*`` values.

    A budget-enforcing limiter can replace it: anything with
    ``admit(tokens) -> RateLimitDecision`` (called once per embeddings
    request that passed auth and fault injection) and ``headers() ->
    dict[str, str]`` (sent on every response) will do.
    """

    def __init__(
        self,
        requests_limit: int = DEFAULT_RATE_LIMIT_REQUESTS,
        tokens_limit: int = DEFAULT_RATE_LIMIT_TOKENS,
    ) -> None:
        self.requests_limit = requests_limit
        self.tokens_limit = tokens_limit

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(self.requests_limit),
            "x-ratelimit-reset-requests": "0s",
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(self.tokens_limit),
            "x-ratelimit-reset-tokens": "0s",
        }

    def admit(self, tokens: int) -> RateLimitDecision:
        return RateLimitDecision(allowed=True, headers=self.headers())


class BudgetRateLimiter:
    """A real requests-per-minute and tokens-per-minute budget, like an OpenAI project's.

    Each budget is a token bucket holding at most one minute's worth and refilling
    continuously at ``limit / 60`` per second (so a full bucket allows a burst of one
    minute's budget, and the sustained rate is exactly the limit). A request is admitted
    only when both buckets hold enough (one request, and its tokens as counted by
    :func:`count_tokens`); otherwise it gets a 429 whose ``retry-after-ms`` (rounded up) and
    ``retry-after`` (whole seconds, rounded up, as HTTP requires) say when it would be
    admitted. A request with more tokens than the whole per-minute budget can never be
    admitted: its 429 carries no retry headers. Rejected requests cost nothing unless
    ``count_rejected_requests`` (OpenAI says unsuccessful requests count toward the
    request limit).

    ``headers()`` reports ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` (whole units
    in the bucket now) and ``x-ratelimit-reset-*`` (time until the bucket is full again, in
    OpenAI's format: ``"6m0s"``, ``"1.5s"``, ``"20ms"``). Thread-safe; ``clock`` (seconds,
    monotonic) can be replaced to make tests deterministic. Counters of admitted and rejected
    requests are in :meth:`stats`.
    """

    def __init__(
        self,
        tokens_per_minute: int,
        requests_per_minute: int,
        *,
        count_rejected_requests: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tokens_per_minute < 1 or requests_per_minute < 1:
            raise ValueError("tokens_per_minute and requests_per_minute must be positive")
        self.tokens_limit = int(tokens_per_minute)
        self.requests_limit = int(requests_per_minute)
        self.count_rejected_requests = count_rejected_requests
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._updated = now
        self._tokens = float(self.tokens_limit)
        self._requests = float(self.requests_limit)
        self._admitted_requests = 0
        self._admitted_tokens = 0
        self._rejected_requests = 0
        self._first_admitted_at: float | None = None
        self._last_admitted_at: float | None = None

    # -- buckets (call with the lock held) --------------------------------

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(
            float(self.tokens_limit), self._tokens + elapsed * self.tokens_limit / 60.0
        )
        self._requests = min(
            float(self.requests_limit), self._requests + elapsed * self.requests_limit / 60.0
        )

    def _headers_now(self) -> dict[str, str]:
        tokens_reset = (self.tokens_limit - self._tokens) * 60.0 / self.tokens_limit
        requests_reset = (self.requests_limit - self._requests) * 60.0 / self.requests_limit
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(max(0, math.floor(self._requests + 1e-9))),
            "x-ratelimit-reset-requests": self.format_duration(requests_reset),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(max(0, math.floor(self._tokens + 1e-9))),
            "x-ratelimit-reset-tokens": self.format_duration(tokens_reset),
        }

    # -- the limiter protocol -----------------------------------------------

    def headers(self) -> dict[str, str]:
        with self._lock:
            self._refill()
            return self._headers_now()

    def admit(self, tokens: int) -> RateLimitDecision:
        with self._lock:
            self._refill()
            if tokens > self.tokens_limit:
                self._rejected_requests += 1
                return RateLimitDecision(
                    allowed=False,
                    headers=self._headers_now(),
                    message=(
                        "Request too large on tokens per min (TPM): "
                        f"Limit {self.tokens_limit}, Requested {tokens}."
                    ),
                )
            requests_wait = max(0.0, (1 - self._requests) * 60.0 / self.requests_limit)
            tokens_wait = max(0.0, (tokens - self._tokens) * 60.0 / self.tokens_limit)
            wait = max(requests_wait, tokens_wait)
            if wait > 1e-6:  # below a microsecond is float rounding, not a shortfall
                self._rejected_requests += 1
                if self.count_rejected_requests:
                    self._requests = max(0.0, self._requests - 1)
                wait_ms = max(1, math.ceil(round(wait * 1000, 6)))
                headers = self._headers_now()
                headers["retry-after-ms"] = str(wait_ms)
                headers["retry-after"] = str(max(1, math.ceil(wait_ms / 1000)))
                if tokens_wait >= requests_wait:
                    used = self.tokens_limit - math.floor(self._tokens + 1e-9)
                    message = (
                        "Rate limit reached on tokens per min (TPM): "
                        f"Limit {self.tokens_limit}, Used {used}, Requested {tokens}. "
                        f"Please try again in {self.format_duration(wait)}."
                    )
                else:
                    message = (
                        "Rate limit reached on requests per min (RPM): "
                        f"Limit {self.requests_limit}, Used {self.requests_limit}, Requested 1. "
                        f"Please try again in {self.format_duration(wait)}."
                    )
                # The retry headers are in `headers` (an integer `retry-after`, as HTTP
                # wants), so `retry_after_seconds` stays None and the server keeps them.
                return RateLimitDecision(allowed=False, headers=headers, message=message)
            self._requests -= 1
            self._tokens -= tokens
            now = self._updated
            self._admitted_requests += 1
            self._admitted_tokens += tokens
            if self._first_admitted_at is None:
                self._first_admitted_at = now
            self._last_admitted_at = now
            return RateLimitDecision(allowed=True, headers=self._headers_now())

    # -- observations -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Admitted requests and tokens, rejected requests, and the clock times of the first
        and last admitted request (``None`` before any)."""
        with self._lock:
            return {
                "admitted_requests": self._admitted_requests,
                "admitted_tokens": self._admitted_tokens,
                "rejected_requests": self._rejected_requests,
                "first_admitted_at": self._first_admitted_at,
                "last_admitted_at": self._last_admitted_at,
            }

    @staticmethod
    def format_duration(seconds: float) -> str:
        """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it (Go's format, to
        the millisecond, rounded up): ``"0s"``, ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``,
        ``"1h0m0s"``."""
        ms = max(0, math.ceil(round(seconds * 1000, 6)))
        if ms == 0:
            return "0s"
        if ms < 1000:
            return f"{ms}ms"
        hours, rest = divmod(ms, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
        out = f"{hours}h" if hours else ""
        if hours or minutes:
            out += f"{minutes}m"
        return f"{out}{secs}s"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _default_error_type(status)
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {
        "retry-after-ms": str(max(0, round(seconds * 1000))),
        "retry-after": _format_seconds(seconds),
    }


def _injected_error(status: int, retry_after_seconds: float) -> _HTTPError:
    if status == 429:
        return _HTTPError(
            429,
            "Rate limit reached for requests (injected by the test server).",
            code="rate_limit_exceeded",
            headers=_retry_after_headers(retry_after_seconds),
        )
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return _HTTPError(status, f"{phrase} (injected by the test server).")


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


_BAD_VALUES = {"nan": math.nan, "infinity": math.inf, "null": None, "out_of_range": 1e39}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: EmbeddingServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections so handler threads can be joined."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Quiet: broken pipes and resets during shutdown are expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pgvector-migration-fake-openai/1.0"
    sys_version = ""
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle
    # plus delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        raw_body = self._read_body()
        try:
            if path in _EMBEDDINGS_PATHS:
                if method != "POST":
                    raise _HTTPError(405, f"Method {method} not allowed on {path}.")
                status, payload, headers = owner._handle_embeddings(
                    path, raw_body, self.headers.get("Authorization")
                )
                if isinstance(payload, _WireFault):
                    self._send_fault(payload)
                    return
            elif method == "GET" and (path in _MODELS_PATHS or path.startswith(_MODEL_PREFIXES)):
                status, payload, headers = owner._handle_models(
                    path, self.headers.get("Authorization")
                )
            else:
                raise _HTTPError(404, f"Unknown request URL: {method} {path}.", code="unknown_url")
        except _HTTPError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        except Exception as exc:  # a bug in the fake server: report it, don't hang
            owner.errors.append(exc)
            err = _HTTPError(500, f"Test server error: {exc!r}")
            status, payload, headers = err.status, err.body(), err.headers
        self._send_json(status, payload, headers)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            try:
                return self.rfile.read(int(length))
            except ValueError:
                return b""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send_fault(self, answer: _WireFault) -> None:
        owner = self.server.owner
        self.close_connection = True
        try:
            if answer.fault == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                return
            if answer.fault == "hang":
                owner._stopping.wait(owner.hang_seconds)
                return
            kind = "text/html" if answer.fault == "html" else "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.flush()
            if answer.fault != "trickle":
                self.wfile.write(answer.body)
                return
            for position in range(len(answer.body)):
                if owner._stopping.wait(owner.trickle_interval):
                    return
                self.wfile.write(answer.body[position : position + 1])
                self.wfile.flush()
        except OSError:
            pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        body = json.dumps(payload).encode("utf-8")
        all_headers = dict(self.server.owner.rate_limiter.headers())
        all_headers.update(headers)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            for name, value in all_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class EmbeddingServer:
    """Fake OpenAI embeddings endpoint on ``127.0.0.1`` for integration tests.

    Use as a context manager (or call :meth:`start` / :meth:`stop`).

    Runtime-adjustable attributes: ``dimensions``, ``api_key``,
    ``latency_seconds``, ``max_inputs_per_request``, ``retry_after_seconds``
    (used in headers of injected 429s) and ``rate_limiter``.
    """

    def __init__(
        self,
        dimensions: int = 8,
        *,
        api_key: str | None = None,
        latency_seconds: float = 0.0,
        max_inputs_per_request: int = DEFAULT_MAX_INPUTS_PER_REQUEST,
        fail_first: int = 0,
        fail_status: int = 500,
        retry_after_seconds: float = 0.05,
        rate_limiter: StaticRateLimiter | Any | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.dimensions = dimensions
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.max_inputs_per_request = max_inputs_per_request
        self.retry_after_seconds = retry_after_seconds
        self.rate_limiter = rate_limiter if rate_limiter is not None else StaticRateLimiter()
        self.host = host
        self.requests = RequestLog()
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised inside the server (should stay empty)."""

        self._port = port
        self._lock = threading.Lock()
        self._failures: deque[int] = deque()
        self._faults: deque[str] = deque()
        self._faults_by_marker: dict[str, tuple[str, int | None]] = {}
        self.hang_seconds = 60.0
        """How long a ``hang`` fault holds the connection before closing it unanswered."""
        self.trickle_interval = 0.2
        """Seconds between the bytes of a ``trickle`` fault's answer."""
        self._models_seen: dict[str, None] = {}
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        if fail_first:
            self.fail_next(fail_first, fail_status)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EmbeddingServer:
        if self._httpd is not None:
            raise RuntimeError("EmbeddingServer already started")
        self._stopping.clear()
        self._httpd = _Server((self.host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"EmbeddingServer:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.close_connections()
        httpd.server_close()  # joins handler threads
        self._httpd = None
        self._thread = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("EmbeddingServer is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        return f"http://{self.host}:{self.port}"

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
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        with self._lock:
            self._failures.extend([status] * n)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._faults.clear()
            self._faults_by_marker.clear()

    def fault_next(self, fault: str, n: int = 1) -> None:
        """Answer the next ``n`` (authenticated, valid) embeddings requests with ``fault``,
        one of :data:`FAULTS`; a bad value spoils the request's first input, a wrong
        dimension every vector."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([fault] * n)

    def fault_when(self, marker: str, fault: str, times: int | None = None) -> None:
        """Answer requests with an input containing ``marker`` with ``fault``: the next
        ``times`` such requests, or every one until :meth:`clear_failures`; bad values and a
        wrong dimension spoil only the inputs that contain it."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults_by_marker[marker] = (fault, times)

    def _take_fault(self, texts: list[str]) -> tuple[str | None, dict[int, str]]:
        """The fault of the whole request (the first marked one, else the next queued one) and
        the value faults of single inputs: every marker's value fault spoils only the inputs
        that contain it, so a request holding several marked texts spoils each its own way."""
        request_fault: str | None = None
        by_position: dict[int, str] = {}
        with self._lock:
            for marker, (fault, times) in list(self._faults_by_marker.items()):
                hit = [i for i, text in enumerate(texts) if marker in text]
                if not hit:
                    continue
                if fault in _BAD_VALUES or fault == "wrong_dimension":
                    for position in hit:
                        by_position.setdefault(position, fault)
                elif request_fault is None:
                    request_fault = fault
                else:
                    continue
                if times is not None and times <= 1:
                    del self._faults_by_marker[marker]
                elif times is not None:
                    self._faults_by_marker[marker] = (fault, times - 1)
            if request_fault is None and not by_position and self._faults:
                queued = self._faults.popleft()
                if queued in _BAD_VALUES:
                    by_position[0] = queued
                else:
                    request_fault = queued
        return request_fault, by_position

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

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
            raise _HTTPError(401, message, code="invalid_api_key")

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
        raise _HTTPError(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )

    def _handle_embeddings(
        self, path: str, raw_body: bytes, authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        record = EmbeddingRequestRecord(
            inputs=[], model=None, authorization=authorization, status=0, path=path
        )
        try:
            status, payload, headers = self._embeddings(record, raw_body, authorization)
        except _HTTPError as exc:
            record.status, record.error = exc.status, exc.message
            self.requests.append(record)
            raise
        record.status = status
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

        latency = self.latency_seconds
        if latency and latency > 0:
            self._stopping.wait(latency)

        self._check_auth(authorization)

        with self._lock:
            injected = self._failures.popleft() if self._failures else None
        if injected is not None:
            raise _injected_error(injected, self.retry_after_seconds)

        if parse_error is not None:
            raise _HTTPError(400, parse_error)
        texts, model, dimensions, encoding_format = self._validate(body)

        tokens = sum(count_tokens(t) for t in texts)
        decision = self.rate_limiter.admit(tokens)
        if not decision.allowed:
            retry = decision.retry_after_seconds
            headers = dict(decision.headers)
            if retry is not None:
                headers.update(_retry_after_headers(retry))
            raise _HTTPError(429, decision.message, code="rate_limit_exceeded", headers=headers)

        fault, by_position = self._take_fault(texts)
        record.fault = fault or (min(by_position.values()) if by_position else None)
        if fault == "reject":
            raise _HTTPError(
                400,
                "The input was rejected by the content filter.",
                param="input",
                code="content_filter",
            )
        data = []
        for index, text in enumerate(texts):
            vector = _embedding_f32(model, text, dimensions)
            if "wrong_dimension" in (fault, by_position.get(index)):
                vector = vector[:-1]
            if fault == "base64" or (encoding_format == "base64" and fault is None):
                embedding: Any = base64.b64encode(vector.tobytes()).decode("ascii")
            else:
                embedding = vector.tolist()
                if by_position.get(index) in _BAD_VALUES:
                    embedding[len(embedding) // 2] = _BAD_VALUES[by_position[index]]
            item = {"object": "embedding", "index": 0 if fault == "bad_index" else index}
            if fault == "no_index":
                del item["index"]
            data.append({**item, "embedding": embedding})
        record.dimensions = dimensions
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if fault in WIRE_FAULTS:
            body = json.dumps(payload).encode("utf-8")
            if fault == "html":
                body = b"<!DOCTYPE html><html><body><h1>Sign in to the gateway</h1></body></html>"
            elif fault == "truncated":
                body = body[: len(body) // 2]
            elif fault == "empty":
                body = b""
            elif fault == "no_data":
                body = json.dumps({"object": "list", "model": model}).encode("utf-8")
            return 200, _WireFault(fault, body), {}
        return 200, payload, dict(decision.headers)

    def _validate(self, body: Any) -> tuple[list[str], str, int, str]:
        if not isinstance(body, dict):
            raise _HTTPError(400, "The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(
                400,
                "you must provide a model parameter",
                param="model",
                code="missing_required_parameter",
            )
        if "input" not in body:
            raise _HTTPError(
                400,
                "'input' is a required property",
                param="input",
                code="missing_required_parameter",
            )
        raw_input = body["input"]
        if isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and all(isinstance(x, str) for x in raw_input):
            texts = list(raw_input)
        else:
            raise _HTTPError(
                400,
                "'$.input' is invalid: this test server accepts a string or a list of strings "
                "(token arrays are not supported).",
                param="input",
            )
        if not texts:
            raise _HTTPError(
                400, "'$.input' is invalid: the list must not be empty.", param="input"
            )
        if any(t == "" for t in texts):
            raise _HTTPError(
                400, "'$.input' is invalid: input strings must not be empty.", param="input"
            )
        limit = self.max_inputs_per_request
        if limit is not None and len(texts) > limit:
            raise _HTTPError(
                400,
                f"'$.input' is invalid: too many inputs ({len(texts)}); "
                f"the maximum is {limit} inputs per request.",
                param="input",
            )
        dimensions = body.get("dimensions", None)
        if dimensions is None:
            dimensions = self.dimensions
        elif not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise _HTTPError(
                400, f"Invalid value for 'dimensions': {dimensions!r}.", param="dimensions"
            )
        encoding_format = body.get("encoding_format", None) or "float"
        if encoding_format not in ("float", "base64"):
            raise _HTTPError(
                400,
                f"Invalid value for 'encoding_format': {encoding_format!r}; "
                "expected 'float' or 'base64'.",
                param="encoding_format",
            )
        return texts, model, dimensions, encoding_format
