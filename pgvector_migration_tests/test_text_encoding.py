"""Text uploads in legacy encodings are read with the encoding Open WebUI 0.12.4's loader picks
(golden/encoding/expected.json, recorded by running its `_detect_text_encoding` on the same
bytes): UTF-8, then CJK codecs checked for CJK text, then chardet's guess, then latin-1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvector_migration.pipeline.loaders import detect_text_encoding, load_documents
from pgvector_migration_tests.golden.encoding.samples import samples

EXPECTED = json.loads(
    (Path(__file__).parent / "golden" / "encoding" / "expected.json").read_text(encoding="utf-8")
)
SAMPLES = samples()


def test_every_sample_has_a_golden():
    assert set(EXPECTED) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_encoding_and_text_match_open_webui(name, tmp_path):
    raw = SAMPLES[name]
    assert detect_text_encoding(raw) == EXPECTED[name]["encoding"]
    upload = tmp_path / f"{name}.txt"
    upload.write_bytes(raw)
    [document] = load_documents(upload, upload.name, "text/plain")
    assert raw.decode(EXPECTED[name]["encoding"]) == EXPECTED[name]["text"]
    assert document.text.strip()
