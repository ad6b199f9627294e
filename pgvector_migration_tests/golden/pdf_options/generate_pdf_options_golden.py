"""Record what Open WebUI 0.12.4's own PDF loader makes of `notice_with_images.pdf` under its PDF
settings (`PDF_LOADER_MODE` page|single, `PDF_EXTRACT_IMAGES` with RapidOCR), for
`test_pdf_options.py`.

Runs Open WebUI's `retrieval/loaders/pdf.py` (its `PDFLoader`, called as it is, nothing copied)
in a throwaway virtualenv outside this repository, with the versions Open WebUI 0.12.4 pins:

    python3.11 -m venv /tmp/owui-pdf-venv
    /tmp/owui-pdf-venv/bin/pip install --no-deps open_webui-0.12.4-py3-none-any.whl
    /tmp/owui-pdf-venv/bin/pip install pypdf==6.21.2 langchain-core==1.4.8 rapidocr==3.10.0 \
        onnxruntime==1.26.0 pillow==13.0.0 numpy==2.4.6 opencv-python-headless==4.13.0.92
    cd pgvector_migration_tests/golden/pdf_options
    /tmp/owui-pdf-venv/bin/python generate_pdf_options_golden.py

Only `open_webui.env` is replaced, by a module holding the one name the loader imports from it,
`RAPIDOCR_PARAMS`, at the value env.py gives it when `RAPIDOCR_PARAMS` is unset: importing the
real env.py needs Open WebUI's whole server stack, and the value is all the loader reads.
The output is `expected.json`: per scenario, the settings and every document's text and
metadata (the upload path written as `{UPLOAD_PATH}`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "notice_with_images.pdf"
EXPECTED = HERE / "expected.json"
UPLOAD_PATH_PLACEHOLDER = "{UPLOAD_PATH}"
# open_webui/env.py: RAPIDOCR_PARAMS when the environment does not set it.
DEFAULT_RAPIDOCR_PARAMS = {"EngineConfig.onnxruntime.intra_op_num_threads": 1}
SCENARIOS = {
    "page": {"mode": "page", "extract_images": False},
    "single": {"mode": "single", "extract_images": False},
    "page_with_images": {"mode": "page", "extract_images": True},
    "single_with_images": {"mode": "single", "extract_images": True},
}


def open_webui_pdf_loader():
    """Open WebUI's PDFLoader class, imported from the installed wheel's file."""
    env = types.ModuleType("open_webui.env")
    env.RAPIDOCR_PARAMS = DEFAULT_RAPIDOCR_PARAMS
    package = types.ModuleType("open_webui")
    package.__path__ = []
    sys.modules.update({"open_webui": package, "open_webui.env": env})
    site = Path(importlib.util.find_spec("pypdf").origin).parents[1]
    path = site / "open_webui" / "retrieval" / "loaders" / "pdf.py"
    assert path.exists(), path
    module_spec = importlib.util.spec_from_file_location("open_webui_pdf_loader", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.PDFLoader


def main() -> None:
    loader_class = open_webui_pdf_loader()
    expected = {"open_webui_version": "0.12.4", "document": DOCUMENT.name, "scenarios": {}}
    for name, options in SCENARIOS.items():
        documents = loader_class(str(DOCUMENT), **options).load()
        expected["scenarios"][name] = {
            "settings": options,
            "documents": [
                {
                    "text": document.page_content,
                    "metadata": {
                        key: UPLOAD_PATH_PLACEHOLDER if value == str(DOCUMENT) else value
                        for key, value in document.metadata.items()
                    },
                }
                for document in documents
            ],
        }
    EXPECTED.write_text(json.dumps(expected, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}")


if __name__ == "__main__":
    main()
