"""The content-extraction services Open WebUI calls over HTTP: `tika`, `docling` and
`external`. For each, the request Open WebUI 0.12.4 sends (method, path, headers, body) and the
documents (text and metadata) it makes of the answer.

This module builds each request and reads each answer; sending is the caller's `Transport`
(`resources.extraction_http.send_over_http`), so the pipeline itself opens no connection.
Open WebUI sets no timeout and makes no retries; we make no retries either, but the request
carries `PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT`, so one hung service fails its file instead of
the run.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pgvector_migration.pipeline.loaders import LoaderError
from pgvector_migration.pipeline.records import TextDocument
from pgvector_migration.settings import RagSettings

DOCLING_PAGE_BREAK = "\f"
NO_TEXT = "<No text content found>"
_DOCLING_PAGE_ITEM_KEYS = ("texts", "tables", "pictures", "key_value_items", "form_items")
_ERROR_BODY_CHARS = 300
_HEADER_SAFE = string.punctuation + " \t"


@dataclass(frozen=True)
class ServiceRequest:
    """One request to an extraction service: what to send, and what its errors must name
    (the engine, the setting that holds the URL, and the URL without credentials)."""

    engine: str
    url_setting: str
    url: str
    method: str
    timeout: float
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    data: dict[str, list[str | bytes]] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None

    def error(self, problem: str) -> LoaderError:
        """The file's error: which engine, setting and URL, and what went wrong."""
        parts = urlsplit(self.url)
        shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return LoaderError(
            f"content extraction engine {self.engine} ({self.url_setting}) at {shown} {problem}"
        )


@dataclass(frozen=True)
class ServiceAnswer:
    """What the service answered: its status and its body (raw, and decoded as it declared)."""

    status_code: int
    reason_phrase: str
    content: bytes
    text: str


# Sends a request and returns the answer, whatever its status; raises `request.error(...)` when
# the service cannot be reached or does not answer within `request.timeout` seconds.
Transport = Callable[[ServiceRequest], ServiceAnswer]


def tika_documents(path: Path, settings: RagSettings, transport: Transport) -> list[TextDocument]:
    """Apache Tika server: the raw bytes PUT to `/tika/text` (server version 3, the default)
    or `/tika/json/md` (version 4), without a content type; one document whose metadata is
    the request's own headers plus the `Content-Type` Tika detected."""
    version_4 = str(settings.tika_server_version or "3") == "4"
    route, content_key = (
        ("tika/json/md", "tk:content") if version_4 else ("tika/text", "X-TIKA:content")
    )
    url = f"{settings.tika_server_url.rstrip('/')}/{route}"
    headers = {"X-Tika-PDFextractInlineImages": "true"} if settings.pdf_extract_images else {}
    request = _upload_put("tika", "TIKA_SERVER_URL", url, settings, headers, path)
    answer = _json_object(request, _send(transport, request))
    text = answer.get(content_key, NO_TEXT)
    if not isinstance(text, str):
        raise request.error(f"answered {content_key!r} = {text!r}, not text")
    metadata: dict[str, Any] = dict(headers)
    if "Content-Type" in answer:
        metadata["Content-Type"] = answer["Content-Type"]
    return [TextDocument(text.strip(), metadata)]


def docling_documents(
    path: Path, content_type: str | None, settings: RagSettings, transport: Transport
) -> list[TextDocument]:
    """docling-serve: the file POSTed as multipart to `/v1/convert/file` asking for markdown
    and JSON with a form-feed page break; one document per non-blank page (page numbers from
    the JSON's body items), or one document for the whole markdown."""
    url = f"{settings.docling_server_url.rstrip('/')}/v1/convert/file"
    form = {
        "image_export_mode": "placeholder",
        "md_page_break_placeholder": DOCLING_PAGE_BREAK,
        "to_formats": ["md", "json"],
        **settings.docling_params,
    }
    headers = {"X-Api-Key": settings.docling_api_key} if settings.docling_api_key else {}
    upload = (path.name, path.read_bytes(), content_type or "application/octet-stream")
    request = ServiceRequest(
        "docling",
        "DOCLING_SERVER_URL",
        url,
        "POST",
        settings.extraction_timeout_seconds,
        headers,
        data=_form_fields(form),
        files={"files": upload},
    )
    answer = _json_object(request, _send(transport, request))
    status = answer.get("status")
    if status in ("failure", "skipped"):
        messages = [
            e.get("error_message") for e in answer.get("errors") or [] if isinstance(e, dict)
        ]
        details = "; ".join(m for m in messages if m) or "no error message provided"
        raise request.error(f"conversion status {status}: {details}")
    document = answer.get("document") or {}
    markdown = document.get("md_content") or ""
    metadata: dict[str, Any] = {"Content-Type": content_type} if content_type else {}
    if DOCLING_PAGE_BREAK in markdown:
        pages = markdown.split(DOCLING_PAGE_BREAK)
        numbers = _docling_page_numbers(document.get("json_content") or {})
        indices = numbers if len(numbers) == len(pages) else list(range(len(pages)))
        documents = [
            TextDocument(page.strip(), {**metadata, "page": index})
            for index, page in zip(indices, pages, strict=True)
            if page.strip()
        ]
        if documents:
            return documents
    return [TextDocument(markdown or NO_TEXT, metadata)]


def _docling_page_numbers(json_content: Mapping[str, Any]) -> list[int]:
    """The 0-based pages that hold body content; blank pages leave no page break in the
    markdown, so the breaks alone would number the pages after one wrongly."""
    pages = {
        item["prov"][0]["page_no"] - 1
        for key in _DOCLING_PAGE_ITEM_KEYS
        for item in json_content.get(key) or []
        if item.get("content_layer") == "body" and item.get("prov")
    }
    return sorted(pages)


def _form_fields(form: Mapping[str, Any]) -> dict[str, list[str | bytes]]:
    """Form values encoded as Open WebUI's HTTP client (requests) encodes them: a list (or any
    other non-text iterable) becomes repeated fields, None is left out, everything else is
    its Python `str()` (so `true` in DOCLING_PARAMS is sent as `True`)."""
    fields: dict[str, list[str | bytes]] = {}
    for key, value in form.items():
        values = (
            [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else value
        )
        encoded = [v if isinstance(v, bytes) else str(v) for v in values if v is not None]
        if encoded:
            fields[key] = encoded
    return fields


def external_documents(
    path: Path,
    filename: str,
    content_type: str | None,
    settings: RagSettings,
    transport: Transport,
    file_id: str | None,
    user_id: str | None,
) -> list[TextDocument]:
    """Open WebUI's external document loader protocol: the raw bytes PUT to `{url}/process`
    with the file's content type, a bearer key, the stored file name in `X-Filename` and the
    templated `EXTERNAL_DOCUMENT_LOADER_HEADERS`; the answer is one `{page_content, metadata}`
    object or a list of them."""
    base = settings.external_document_loader_url
    url = f"{base[:-1] if base.endswith('/') else base}/process"
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers["Authorization"] = f"Bearer {settings.external_document_loader_api_key}"
    headers["X-Filename"] = quote(path.name)
    template_values = {
        "{{FILE_ID}}": file_id or "",
        "{{FILE_NAME}}": filename,
        "{{FILE_CONTENT_TYPE}}": content_type or "",
        "{{USER_ID}}": user_id or "",
    }
    headers.update(_templated_headers(settings.external_document_loader_headers, template_values))
    request = _upload_put("external", "EXTERNAL_DOCUMENT_LOADER_URL", url, settings, headers, path)
    answer = _json(request, _send(transport, request))
    if not answer:
        raise request.error("returned no content")
    if isinstance(answer, dict):
        items = [answer]
    elif isinstance(answer, list):
        items = answer
    else:
        raise request.error("answered neither a document object nor a list of them")
    documents = []
    for item in items:
        text = item.get("page_content") if isinstance(item, dict) else None
        metadata = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(text, str) or not isinstance(metadata, dict):
            raise request.error(
                "answered a document without a text 'page_content' and an object 'metadata'"
            )
        documents.append(TextDocument(text, metadata))
    return documents


def _templated_headers(templates: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """EXTERNAL_DOCUMENT_LOADER_HEADERS with its placeholders filled and the result
    percent-encoded as Open WebUI does. Placeholders about the chat or the uploader's
    account (name, e-mail, role, groups), which a migration does not have, become empty, as
    Open WebUI leaves them when it does not know them."""
    headers = {}
    for name, template in templates.items():
        value = str(template)
        for placeholder, replacement in values.items():
            value = value.replace(placeholder, replacement)
        for placeholder in _UNKNOWN_PLACEHOLDERS:
            value = value.replace(placeholder, "")
        headers[name] = quote(value, safe=_HEADER_SAFE)
    return headers


_UNKNOWN_PLACEHOLDERS = (
    "{{CHAT_ID}}",
    "{{MESSAGE_ID}}",
    "{{USER_MESSAGE_ID}}",
    "{{USER_MESSAGE_PARENT_ID}}",
    "{{TASK}}",
    "{{MODEL_ID}}",
    "{{USER_NAME}}",
    "{{USER_EMAIL}}",
    "{{USER_ROLE}}",
    "{{USER_GROUPS}}",
    "{{USER_GROUP_IDS}}",
    "{{USER_AGENT}}",
    "{{AUTH_TYPE}}",
)


def _upload_put(
    engine: str,
    url_setting: str,
    url: str,
    settings: RagSettings,
    headers: dict[str, str],
    path: Path,
) -> ServiceRequest:
    """The upload's raw bytes PUT to the service, as tika and the external loader take them."""
    return ServiceRequest(
        engine,
        url_setting,
        url,
        "PUT",
        settings.extraction_timeout_seconds,
        headers,
        content=path.read_bytes(),
    )


def _send(transport: Transport, request: ServiceRequest) -> ServiceAnswer:
    """The service's answer; an HTTP error status fails the file with the start of its body."""
    answer = transport(request)
    if answer.status_code >= 400:
        body = " ".join(answer.text.split())[:_ERROR_BODY_CHARS]
        raise request.error(
            f"answered HTTP {answer.status_code} {answer.reason_phrase}"
            + (f": {body}" if body else "")
        )
    return answer


def _json(request: ServiceRequest, answer: ServiceAnswer) -> Any:
    try:
        return json.loads(answer.content)
    except ValueError as error:
        raise request.error(f"answered HTTP {answer.status_code} without JSON") from error


def _json_object(request: ServiceRequest, answer: ServiceAnswer) -> dict[str, Any]:
    parsed = _json(request, answer)
    if not isinstance(parsed, dict):
        raise request.error(f"answered JSON that is not an object: {str(parsed)[:80]}")
    return parsed
