"""PDF uploads as Open WebUI 0.12.4's default engine reads them: pypdf text per page (or the
whole file as one document), the PDF's own metadata, and, when `PDF_EXTRACT_IMAGES` is on, the
text RapidOCR reads in the page's images placed before the page's last paragraphs."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgvector_migration.pipeline.records import TextDocument

DEFAULT_RAPIDOCR_PARAMS: dict[str, Any] = {"EngineConfig.onnxruntime.intra_op_num_threads": 1}
# Dates Open WebUI turns into ISO strings; it strips every other string value but these.
_DATE_KEYS = ("creationdate", "moddate")
_UNSTRIPPED_KEYS = (*_DATE_KEYS, "page_count", "file_path")
_PAGE_SEPARATOR_SINGLE_MODE = "\n\f"

log = logging.getLogger(__name__)


class EncryptedPdfError(Exception):
    """pypdf cannot read an encrypted PDF without its password."""


@dataclass(frozen=True)
class PdfOptions:
    """Open WebUI's PDF settings: `PDF_LOADER_MODE`, `PDF_EXTRACT_IMAGES`, `RAPIDOCR_PARAMS`."""

    mode: str = "page"
    extract_images: bool = False
    ocr_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RAPIDOCR_PARAMS))


def pdf_document_metadata(reader, path: Path) -> dict[str, Any]:
    """The document-level metadata Open WebUI's PDF loader attaches to every page."""
    metadata: dict[str, Any] = {"producer": "PyPDF", "creator": "PyPDF", "creationdate": ""}
    for raw_key, raw_value in (reader.metadata or {}).items():
        key = raw_key.removeprefix("/").lower()
        value = raw_value if type(raw_value) in (str, int) else str(raw_value)
        if key in _DATE_KEYS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = dt.datetime.strptime(value.replace("'", ""), "D:%Y%m%d%H%M%S%z").isoformat()
        elif isinstance(value, str) and key not in _UNSTRIPPED_KEYS:
            value = value.strip()
        metadata[key] = value
    metadata.update(source=str(path), total_pages=len(reader.pages))
    return metadata


class _PageImageReader:
    """OCR of the images embedded in PDF pages; RapidOCR (and its ONNX models, bundled in its
    wheel) is loaded on the first image, so PDFs without images never pay for it."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params
        self._engine = None

    def page_text(self, page) -> str:
        """The text of every image on the page, framed by blank lines, or '' when none reads."""
        resources = page.get("/Resources")
        if resources is None or "/XObject" not in resources:
            return ""
        texts = []
        xobjects = resources["/XObject"]
        for name in xobjects:
            pixels = self._pixels(xobjects[name], name)
            if pixels is None:
                continue
            result = self._ocr()(pixels)
            if result and result.txts:
                texts.append("\n".join(result.txts).strip())
        if not any(texts):
            return ""
        return "\n\n" + "\n".join(text for text in texts if text) + "\n\n"

    @staticmethod
    def _pixels(stream, name: str):
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        try:
            if stream.get("/Subtype") != "/Image":
                return None
            try:
                image = Image.open(io.BytesIO(stream.get_data()))
            except UnidentifiedImageError:
                image = stream.decode_as_image()
            return np.array(image.convert("RGB"))
        except Exception as error:  # one unreadable image never loses the page's text
            log.warning("skipping unreadable PDF image %s: %s", name, error)
            return None

    def _ocr(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            # RapidOCR logs every model file it opens at INFO, in colour, on its own handler.
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            self._engine = RapidOCR(params=self._params)
        return self._engine


def with_image_text(text: str, image_text: str) -> str:
    """Open WebUI's placement of a page's image text: before the page's last two paragraphs
    when it has them (a footer usually), else at the end."""
    position, separator = len(text), "\n\n"
    for _ in range(2):
        for delimiter in ("\n\n\n", "\n\n"):
            found = text.rfind(delimiter, 0, position)
            if found >= 0:
                position, separator = found, delimiter
                break
        else:
            break
    return text[:position] + separator + image_text + text[position:]


def load_pdf(path: Path, options: PdfOptions | None = None) -> list[TextDocument]:
    """One document per page (`page`, `page_label`, `total_pages`) or, in single mode, one
    document of every page joined as Open WebUI joins them."""
    from pypdf import PdfReader

    # An unreadable PDF is reported once, with its file; pypdf's own warnings (in whichever
    # process loads it) would only repeat it.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    options = options or PdfOptions()
    reader = PdfReader(str(path))
    if reader.is_encrypted:
        raise EncryptedPdfError("the PDF is encrypted")
    metadata = pdf_document_metadata(reader, path)
    images = _PageImageReader(options.ocr_params) if options.extract_images else None
    labels = reader.page_labels if options.mode == "page" else None
    documents, texts = [], []
    for index, page in enumerate(reader.pages):
        text = page.extract_text()
        if images is not None:
            image_text = images.page_text(page)
            if image_text:
                text = with_image_text(text, image_text)
        text = text.strip()
        if labels is not None:
            documents.append(
                TextDocument(text, {**metadata, "page": index, "page_label": labels[index]})
            )
        else:
            texts.append(text)
    if labels is None:
        documents.append(TextDocument(_PAGE_SEPARATOR_SINGLE_MODE.join(texts), metadata))
    return documents
