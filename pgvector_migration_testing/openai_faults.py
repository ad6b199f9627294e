"""Misbehaviour on purpose for the fake OpenAI server, to test clients against a broken
provider: which requests fail or are spoilt (:class:`FaultPlan`), what a spoilt answer holds
(:func:`embedding_data`, :func:`wire_fault_body`) and how a broken HTTP exchange is written
(:class:`WireFaultReply`).

Injected failures (``fail_next``) answer with an HTTP error status. Faults (:data:`FAULTS`)
answer valid requests: value faults with a 200 and a bad payload (a wrong dimension, bad or
missing ``index`` fields, NaN, Infinity, null or out-of-range values, base64 where floats were
asked, or a content-filter 400); wire faults break the exchange itself (an HTML page, cut-off
JSON, an empty body, no ``data``, a reset connection, no answer at all, or a trickle of bytes).
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from pgvector_migration_testing.embedding_vectors import expected_embedding_f32
from pgvector_migration_testing.loopback import Reply

__all__ = ["BAD_VALUES", "FAULTS", "VALUE_FAULTS", "WIRE_FAULTS", "FaultPlan", "WireFaultReply"]

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

# The value each bad-value fault puts in the middle of the affected input's vector.
BAD_VALUES = {"nan": math.nan, "infinity": math.inf, "null": None, "out_of_range": 1e39}


class FaultPlan:
    """The failures and faults still to come, queued or tied to a marker text. Thread-safe:
    tests add to it while handler threads take from it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: deque[int] = deque()
        self._faults: deque[str] = deque()
        self._faults_by_marker: dict[str, tuple[str, int | None]] = {}

    def fail_next(self, n: int, status: int) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        with self._lock:
            self._failures.extend([status] * n)

    def fault_next(self, fault: str, n: int) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([fault] * n)

    def fault_when(self, marker: str, fault: str, times: int | None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults_by_marker[marker] = (fault, times)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._faults.clear()
            self._faults_by_marker.clear()

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    def take_failure(self) -> int | None:
        """The status of the next injected failure, if one is queued."""
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def take_fault(self, texts: list[str]) -> tuple[str | None, dict[int, str]]:
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
                if fault in BAD_VALUES or fault == "wrong_dimension":
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
                if queued in BAD_VALUES:
                    by_position[0] = queued
                else:
                    request_fault = queued
        return request_fault, by_position


def embedding_data(
    texts: list[str],
    model: str,
    dimensions: int,
    encoding_format: str,
    fault: str | None,
    by_position: dict[int, str],
) -> list[dict[str, Any]]:
    """The ``data`` items of an answer, spoilt by the request's ``fault`` and the inputs'
    value faults (``by_position``); unspoilt when there are none."""
    data = []
    for index, text in enumerate(texts):
        vector = expected_embedding_f32(model, text, dimensions)
        if "wrong_dimension" in (fault, by_position.get(index)):
            vector = vector[:-1]
        bad_value = by_position.get(index)
        if bad_value in ("nan", "infinity") and encoding_format == "base64":
            vector = vector.copy()
            vector[len(vector) // 2] = BAD_VALUES[bad_value]
        # A value float32 cannot hold (null, 1e39) goes as a float list, base64 or not.
        as_base64 = encoding_format == "base64" and bad_value not in ("null", "out_of_range")
        if fault == "base64" or (as_base64 and fault is None):
            embedding: Any = base64.b64encode(vector.tobytes()).decode("ascii")
        else:
            embedding = vector.tolist()
            if by_position.get(index) in BAD_VALUES:
                embedding[len(embedding) // 2] = BAD_VALUES[by_position[index]]
        item = {"object": "embedding", "index": 0 if fault == "bad_index" else index}
        if fault == "no_index":
            del item["index"]
        data.append({**item, "embedding": embedding})
    return data


def wire_fault_body(fault: str, payload: dict[str, Any]) -> bytes:
    """The bytes a wire fault sends in place of ``payload`` (the right answer)."""
    body = json.dumps(payload).encode("utf-8")
    if fault == "html":
        return b"<!DOCTYPE html><html><body><h1>Sign in to the gateway</h1></body></html>"
    if fault == "truncated":
        return body[: len(body) // 2]
    if fault == "empty":
        return b""
    if fault == "no_data":
        return json.dumps({"object": "list", "model": payload["model"]}).encode("utf-8")
    return body


@dataclass
class WireFaultReply(Reply):
    """An answer that breaks the HTTP exchange: ``reset`` the connection, ``hang`` until
    ``stopping`` is set or ``hang_seconds`` pass, ``trickle`` the body a byte every
    ``trickle_interval`` seconds, or send a 200 whose body is not the JSON it should be. The
    connection is closed afterwards in every case."""

    fault: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)
    hang_seconds: float = 60.0
    trickle_interval: float = 0.2

    def write(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        try:
            if self.fault == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN.
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                return
            if self.fault == "hang":
                self.stopping.wait(self.hang_seconds)
                return
            handler.send_response(200)
            handler.send_header("Content-Type", self.content_type)
            handler.send_header("Content-Length", str(len(self.body)))
            handler.end_headers()
            handler.wfile.flush()
            if self.fault != "trickle":
                handler.wfile.write(self.body)
                return
            for position in range(len(self.body)):
                if self.stopping.wait(self.trickle_interval):
                    return
                handler.wfile.write(self.body[position : position + 1])
                handler.wfile.flush()
        except OSError:
            pass
