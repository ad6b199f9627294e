"""Generate the extraction goldens: the documents Open WebUI 0.12.4's own `Loader` makes of an
upload under CONTENT_EXTRACTION_ENGINE=tika, docling and external, and the requests it sends.

Each case in :data:`CASES` is one upload (name, content type, bytes), the Open WebUI settings in
force and what the fake service answers. The script starts :class:`ExtractionService` (a real
HTTP server on 127.0.0.1 that answers as Apache Tika, docling-serve and an external document
loader do), runs `open_webui.retrieval.loaders.main.Loader(config).load(...)` on the case, and
writes `extraction/<case>.json`: the documents Open WebUI returned (text after its `ftfy` pass,
metadata, the upload's path replaced by `{upload_path}`) or the error it raised, and every
request the service received. test_extraction_engines.py runs our engines against the same
service and answers and compares.

Like generate_golden.py, it runs Open WebUI's code (never `pgvector_migration`) in the
throwaway virtualenv that holds the open-webui 0.12.4 wheel (see that script's docstring):

    /tmp/owui-venv/bin/python pgvector_migration_tests/golden/generate_extraction_golden.py

`Loader.user` stays None: a migration does not act for a signed-in user, and with a user Open
WebUI would add its X-OpenWebUI-User-* headers to the external loader's request. `Loader.metadata`
is set as Open WebUI's upload path sets it. The output is deterministic.

This module is also imported by the tests, for the service and the cases: standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "extraction"
UPLOAD_PATH_PLACEHOLDER = "{upload_path}"
SERVICE_URL_PLACEHOLDER = "{service_url}"
FILE_ID = "6b0e3c1a-5d2f-4c8e-9a71-2f4d8e6c0b13"

# Headers every HTTP client sets its own way; the rest is compared.
TRANSPORT_HEADERS = frozenset(
    {"host", "user-agent", "accept", "accept-encoding", "connection", "content-length"}
)


@dataclass
class ServiceRequest:
    """One request as the service received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    status: int = 0

    def multipart_parts(self) -> list[dict[str, Any]]:
        """The parts of a multipart/form-data body, in order: raw `content-disposition`, the
        part's content type (None when absent) and its value (text for fields, sha256 for
        files)."""
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return []
        boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
        parts = []
        for chunk in self.body.split(b"--" + boundary)[1:]:
            if chunk.startswith(b"--"):
                break
            head, _, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            value = value.removesuffix(b"\r\n")
            headers = {}
            for line in head.decode("utf-8", errors="surrogateescape").split("\r\n"):
                name, _, header_value = line.partition(":")
                headers[name.strip().lower()] = header_value.strip()
            disposition = headers.get("content-disposition", "")
            is_file = "filename=" in disposition
            parts.append(
                {
                    "content_disposition": disposition,
                    "content_type": headers.get("content-type"),
                    "value": (
                        hashlib.sha256(value).hexdigest()
                        if is_file
                        else value.decode("utf-8", errors="surrogateescape")
                    ),
                }
            )
        return parts

    def summary(self, upload: bytes) -> dict[str, Any]:
        """What the goldens record of a request: method, path, the headers that are not an
        HTTP client's own (a multipart boundary blanked), and the body: the upload itself, or
        the multipart parts."""
        headers = {k: v for k, v in self.headers.items() if k not in TRANSPORT_HEADERS}
        if headers.get("content-type", "").startswith("multipart/form-data"):
            headers["content-type"] = "multipart/form-data; boundary=*"
        parts = self.multipart_parts()
        return {
            "method": self.method,
            "path": self.path,
            "headers": dict(sorted(headers.items())),
            "body": {"parts": parts} if parts else {"is_upload": self.body == upload},
        }


@dataclass
class Answer:
    status: int
    body: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        record = ServiceRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        self.server.service.requests.append(record)
        status, payload = self.server.service.respond(record)
        record.status = status
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: ExtractionService


# The method each protocol's route takes; anything else is answered as the services do.
ROUTE_METHODS = {
    "/tika/text": "PUT",
    "/tika/json/md": "PUT",
    "/v1/convert/file": "POST",
    "/process": "PUT",
}


@dataclass
class ExtractionService:
    """A loopback server that speaks Apache Tika's (`PUT /tika/text`, `/tika/json/md`),
    docling-serve's (`POST /v1/convert/file`, multipart with a `files` part) and Open WebUI's
    external document loader's (`PUT /process`) protocols, answering what :meth:`answer` set.

    Routes may sit under a path prefix (`http://host/loader/process`). A wrong method gets 405,
    an unknown route 404, a docling request without a `files` part 422, as the real services
    answer. Every request is kept in :attr:`requests`.
    """

    requests: list[ServiceRequest] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    _server: _Server | None = None

    def __enter__(self) -> ExtractionService:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.service = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, route: str, body: Any, status: int = 200) -> None:
        """Answer requests to `route` (one of :data:`ROUTE_METHODS`) with `body` as JSON, or
        with what `body(request)` returns when it is callable."""
        self.answers[route] = Answer(status, body)

    def respond(self, request: ServiceRequest) -> tuple[int, Any]:
        path = request.path.split("?", 1)[0]
        route = next((r for r in ROUTE_METHODS if path.endswith(r)), None)
        if route is None:
            return 404, {"detail": "Not Found"}
        if request.method != ROUTE_METHODS[route]:
            return 405, {"detail": "Method Not Allowed"}
        if route == "/v1/convert/file" and not any(
            'name="files"' in part["content_disposition"] for part in request.multipart_parts()
        ):
            return 422, {"detail": [{"type": "missing", "loc": ["body", "files"]}]}
        answer = self.answers.get(route)
        if answer is None:
            return 500, {"detail": f"no answer set for {route}"}
        body = answer.body(request) if callable(answer.body) else answer.body
        return answer.status, body


PDF_BYTES = b"%PDF-1.4\n% not a real PDF: the fake services never read it\n\x00\x01\x02%%EOF\n"
DOCX_BYTES = b"PK\x03\x04 not a real docx either\x00"
CRLF_TEXT = "Meeting notes\r\n\r\nThe caf\u00e9\u2019s menu changed.\r\nOld Mac line\rEnd\r\n"

TIKA_PDF_ANSWER = {
    "Content-Type": "application/pdf",
    "X-TIKA:Parsed-By": ["org.apache.tika.parser.DefaultParser", "org.apache.tika.parser.pdf"],
    "X-TIKA:parse_time_millis": "41",
    "dc:title": "Quarterly report",
    "xmpTPg:NPages": "2",
    "pdf:PDFVersion": "1.4",
    "X-TIKA:content": "\n\nQuarterly report\n\nRevenue grew in the cafÃ© business.\n\n"
    "Page two &amp; more.\n\n\n",
}

DOCLING_JSON_CONTENT = {
    "schema_name": "DoclingDocument",
    "texts": [
        {"self_ref": "#/texts/0", "content_layer": "body", "prov": [{"page_no": 1}]},
        {"self_ref": "#/texts/1", "content_layer": "furniture", "prov": [{"page_no": 2}]},
        {"self_ref": "#/texts/2", "content_layer": "body", "prov": [{"page_no": 3}]},
        {"self_ref": "#/texts/3", "content_layer": "body", "prov": [{"page_no": 4}]},
    ],
    "tables": [{"self_ref": "#/tables/0", "content_layer": "body", "prov": [{"page_no": 3}]}],
    "pictures": [{"self_ref": "#/pictures/0", "content_layer": "body", "prov": []}],
}


def docling_answer(md_content: str, json_content: Any = None, **extra: Any) -> dict[str, Any]:
    """docling-serve's ConvertDocumentResponse for one converted file."""
    return {
        "document": {
            "filename": "upload",
            "md_content": md_content,
            "json_content": json_content,
            "html_content": None,
            "text_content": None,
            "doctags_content": None,
        },
        "status": "success",
        "errors": [],
        "processing_time": 0.42,
        "timings": {},
        **extra,
    }


def _case(name: str, engine: str, filename: str, content_type: str | None, upload: bytes, **kw):
    return {
        "name": name,
        "config": {"rag.content_extraction_engine": engine, **kw.pop("config", {})},
        "filename": filename,
        "content_type": content_type,
        "upload": upload,
        "answers": kw.pop("answers", {}),
        **kw,
    }


CASES: list[dict[str, Any]] = [
    _case(
        "tika_pdf",
        "tika",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={"/tika/text": (200, TIKA_PDF_ANSWER)},
    ),
    _case(
        "tika_pdf_inline_images",
        "tika",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        config={"rag.pdf_extract_images": True},
        answers={"/tika/text": (200, TIKA_PDF_ANSWER)},
    ),
    _case(
        "tika_version_4_docx",
        "tika",
        "letter.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        DOCX_BYTES,
        config={"rag.tika_server_version": "4"},
        url_suffix="/",
        answers={
            "/tika/json/md": (
                200,
                {
                    "Content-Type": "application/vnd.openxmlformats-officedocument."
                    "wordprocessingml.document",
                    "tk:content": "# Dear reader\n\nThank you.\n",
                    "dc:creator": "A. Writer",
                },
            )
        },
    ),
    _case(
        "tika_html_without_content",
        "tika",
        "page.html",
        "text/html",
        b"<html><body><p>Tika saw nothing</p></body></html>",
        answers={"/tika/text": (200, {"Content-Type": "text/html; charset=UTF-8"})},
    ),
    _case("tika_text_file", "tika", "notes.txt", "text/plain", CRLF_TEXT.encode()),
    _case("tika_csv_as_text", "tika", "table.csv", "text/csv", b"name,age\r\nAda,36\r\n"),
    _case(
        "tika_source_without_dot",
        "tika",
        "Dockerfile",
        "application/octet-stream",
        b"FROM python:3.11\nRUN echo hi\n",
    ),
    _case(
        "tika_http_500",
        "tika",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={"/tika/text": (500, {"error": "TikaException: parser crashed"})},
    ),
    _case(
        "docling_pages",
        "docling",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={
            "/v1/convert/file": (
                200,
                docling_answer(
                    "## Intro\n\nOn page one, the cafÃ©.\fOn page three.\n\n| a | b |\n\f"
                    "On page four.",
                    DOCLING_JSON_CONTENT,
                ),
            )
        },
    ),
    _case(
        "docling_pages_without_json",
        "docling",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={"/v1/convert/file": (200, docling_answer("Page A\f \fPage C\f"))},
    ),
    _case(
        "docling_params_key_and_no_content_type",
        "docling",
        'R\u00e9sum\u00e9 "final" 2024.pdf',
        None,
        PDF_BYTES,
        config={
            "rag.docling_api_key": "dk-not-a-secret",
            "rag.docling_params": {
                "do_ocr": True,
                "ocr_lang": ["en", "fr"],
                "table_mode": "accurate",
                "image_export_mode": "embedded",
                "skip_me": None,
                "page_range": [1, 5],
                "nested": {"a": 1, "b": 2},
                "threshold": 0.5,
            },
        },
        answers={"/v1/convert/file": (200, docling_answer("  Whole text, no page breaks.  "))},
    ),
    _case(
        "docling_empty_markdown",
        "docling",
        "scan.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={"/v1/convert/file": (200, docling_answer(""))},
    ),
    _case(
        "docling_conversion_failure",
        "docling",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        answers={
            "/v1/convert/file": (
                200,
                docling_answer(
                    "",
                    status="failure",
                    errors=[{"component_type": "parser", "error_message": "Invalid PDF"}],
                ),
            )
        },
    ),
    _case("docling_markdown_file", "docling", "readme.md", "text/markdown", b"# Title\n\nBody\n"),
    _case(
        "external_object",
        "external",
        "\u00dcberblick 2024.pdf",
        "application/pdf",
        PDF_BYTES,
        url_suffix="/",
        config={
            "rag.external_document_loader_api_key": "ext-not-a-secret",
            "rag.external_document_loader_headers": {
                "X-Tenant": "acme",
                "X-File": "{{FILE_ID}}:{{FILE_NAME}}:{{FILE_CONTENT_TYPE}}",
                "X-Who": "user={{USER_ID}}|{{USER_NAME}}|{{CHAT_ID}}",
                "X-Number": 5,
            },
        },
        answers={
            "/process": (
                200,
                {
                    "page_content": "Extracted by the external loader: cafÃ©.\n",
                    "metadata": {
                        "page": 0,
                        "author": "A. Writer",
                        "languages": ["de"],
                        "content": "dropped by Open WebUI's filter, kept by its loader",
                    },
                },
            )
        },
    ),
    _case(
        "external_list_for_source_file",
        "external",
        "script.py",
        None,
        b"print('hello')\n",
        config={"rag.external_document_loader_api_key": "ext-not-a-secret"},
        answers={
            "/process": (
                200,
                [
                    {"page_content": "first part", "metadata": {"part": 1}},
                    {"page_content": "second part", "metadata": {}},
                ],
            )
        },
    ),
    _case(
        "external_empty_answer",
        "external",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        config={"rag.external_document_loader_api_key": "ext-not-a-secret"},
        answers={"/process": (200, [])},
    ),
    _case(
        "external_document_without_metadata",
        "external",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        config={"rag.external_document_loader_api_key": "ext-not-a-secret"},
        answers={"/process": (200, {"page_content": "text only"})},
    ),
    _case(
        "external_http_403",
        "external",
        "report.pdf",
        "application/pdf",
        PDF_BYTES,
        config={"rag.external_document_loader_api_key": "ext-not-a-secret"},
        answers={"/process": (403, {"detail": "bad key"})},
    ),
]


def stored_name(case: dict[str, Any]) -> str:
    """The upload's name in Open WebUI's uploads folder: `{file id}_{filename}`."""
    return f"{FILE_ID}_{case['filename']}"


def case_config(case: dict[str, Any], service_url: str) -> dict[str, Any]:
    """Open WebUI's `rag.*` config for a case: 0.12.4's defaults, the case's values, and every
    engine URL pointing at the service (with the case's trailing `url_suffix`)."""
    url = service_url + case.get("url_suffix", "")
    return {
        "rag.file.max_size": None,
        "rag.pdf_extract_images": False,
        "rag.tika_server_url": url,
        "rag.tika_server_version": "3",
        "rag.docling_server_url": url,
        "rag.docling_api_key": "",
        "rag.docling_params": {},
        "rag.external_document_loader_url": url,
        "rag.external_document_loader_api_key": "",
        "rag.external_document_loader_headers": {},
        **case["config"],
    }


def serve_case(service: ExtractionService, case: dict[str, Any]) -> None:
    service.requests.clear()
    service.answers.clear()
    for route, (status, body) in case["answers"].items():
        service.answer(route, body, status)


def prepare_environment(data_dir: Path) -> None:
    """Point Open WebUI at a throwaway DATA_DIR before any of its modules is imported."""
    import importlib.util

    spec = importlib.util.find_spec("open_webui")
    if spec is None or spec.origin is None:
        sys.exit("open_webui is not installed in this interpreter; see the module docstring")
    os.environ.update(
        DATA_DIR=str(data_dir),
        WEBUI_SECRET_KEY="extraction-golden-not-a-secret",
        FRONTEND_BUILD_DIR=str(Path(spec.origin).parent / "frontend"),
        STATIC_DIR=str(data_dir / "static"),
        VECTOR_DB="opensearch",
        OPENSEARCH_USERNAME="unused",
        OPENSEARCH_PASSWORD="unused",
        GLOBAL_LOG_LEVEL="ERROR",
        TZ="UTC",
    )
    time.tzset()


def run_open_webui(case: dict[str, Any], service: ExtractionService, uploads: Path) -> dict:
    from open_webui.retrieval.loaders.main import Loader

    path = uploads / stored_name(case)
    path.write_bytes(case["upload"])
    serve_case(service, case)
    loader = Loader(case_config(case, service.base_url))
    loader.metadata = {
        "file_id": FILE_ID,
        "file_name": case["filename"],
        "file_content_type": case["content_type"],
    }
    record: dict[str, Any] = {
        "name": case["name"],
        "filename": case["filename"],
        "content_type": case["content_type"],
    }
    try:
        documents = loader.load(case["filename"], case["content_type"], str(path))
    except Exception as error:
        record["error"] = {"type": type(error).__name__, "message": str(error)}
    else:
        record["documents"] = [{"text": d.page_content, "metadata": d.metadata} for d in documents]
    record["requests"] = [r.summary(case["upload"]) for r in service.requests]
    serialized = json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True)
    serialized = serialized.replace(str(path), UPLOAD_PATH_PLACEHOLDER)
    return json.loads(serialized.replace(service.base_url, SERVICE_URL_PLACEHOLDER))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="extraction-golden-") as tmp:
        data_dir = Path(tmp) / "data"
        uploads = data_dir / "uploads"
        uploads.mkdir(parents=True)
        prepare_environment(data_dir)
        GOLDEN_DIR.mkdir(exist_ok=True)
        with ExtractionService() as service:
            for case in CASES:
                record = run_open_webui(case, service, uploads)
                target = GOLDEN_DIR / f"{case['name']}.json"
                text = json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True)
                target.write_text(text + "\n", encoding="utf-8")
                print(f"{target.name}: {len(record.get('documents', []))} documents")


if __name__ == "__main__":
    main()
