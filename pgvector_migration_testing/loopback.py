"""The one loopback HTTP server every fake provider is built on.

A fake subclasses :class:`LoopbackServer` and implements :meth:`LoopbackServer.respond`: a
:class:`Request` in (method, target, lower-cased headers, body), a :class:`Reply` out. The base
owns the rest, once: listening on ``127.0.0.1`` port 0 (a free port, so tests run in parallel),
serving from a thread with a thread per connection, HTTP/1.1 keep-alive, stopping (cutting idle
keep-alive connections so that nothing is left behind) and a thread-safe :class:`RequestLog`.

A fake that must break the HTTP exchange itself (reset the connection, never answer, trickle
bytes) returns a :class:`Reply` subclass with its own :meth:`Reply.write`.

Standard library only (``http.server``): the fakes add no dependency to the project.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar, overload

__all__ = ["LoopbackServer", "Reply", "Request", "RequestLog"]

Record = TypeVar("Record")


class RequestLog(Sequence[Record]):
    """A thread-safe list of request records, appended to by the server's handler threads.

    Supports ``len``, indexing, slicing, iteration (over a snapshot) and equality with plain
    lists. A benchmark may replace a server's log with anything that has ``append`` (to count
    instead of keeping millions of request bodies).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Record] = []

    def append(self, record: Record) -> None:
        with self._lock:
            self._items.append(record)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Any:
        with self._lock:
            return self._items[index]

    def __iter__(self) -> Iterator[Record]:
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


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server read it."""

    method: str
    target: str
    """The request target as sent, query string included."""
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes


@dataclass
class Reply:
    """An HTTP answer with a body of ``Content-Length`` bytes."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def write(self, handler: BaseHTTPRequestHandler) -> None:
        """Send the answer; a client that has gone away closes the connection, nothing more."""
        try:
            handler.send_response(self.status)
            handler.send_header("Content-Type", self.content_type)
            handler.send_header("Content-Length", str(len(self.body)))
            for name, value in self.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(self.body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True


class LoopbackServer:
    """A fake service on ``127.0.0.1``: use as a context manager (or :meth:`start` /
    :meth:`stop`) and point the client at :attr:`url`.

    ``requests`` is the subclass's log (each fake decides what a record holds and when it is
    appended); ``errors`` collects exceptions raised by :meth:`respond` (a bug in the fake:
    answered with :meth:`error_reply`, and should stay empty); ``stopping`` is set while the
    server stops, so that a fake's sleeps and stalls end with it.
    """

    server_version = "pgvector-migration-fake/1.0"
    """The ``Server`` header of every answer."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requests: RequestLog[Any] = RequestLog()
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def respond(self, request: Request) -> Reply:
        """The answer to one request (called from a handler thread)."""
        raise NotImplementedError

    def error_reply(self, error: Exception) -> Reply:
        """The answer when :meth:`respond` raised: a 500 that names the error, not a hang."""
        return Reply(500, f"Test server error: {error!r}".encode(), "text/plain; charset=utf-8")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self.stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.close_connections()
        httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A client with many requests in flight (Open WebUI's uploads, a migration's pacer) must
    # not find the listen backlog full: the default of 5 resets connections under load.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: LoopbackServer) -> None:
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
        """Cut idle keep-alive connections so handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Quiet: broken pipes and resets during shutdown are expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle
    # plus delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server.owner.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        request = Request(
            self.command,
            self.path,
            {name.lower(): value for name, value in self.headers.items()},
            self._read_body(),
        )
        try:
            reply = owner.respond(request)
        except Exception as exc:  # a bug in the fake: report it, don't hang
            owner.errors.append(exc)
            reply = owner.error_reply(exc)
        reply.write(self)

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
