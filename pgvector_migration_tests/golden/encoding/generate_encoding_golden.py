"""Record which encoding Open WebUI 0.12.4's own `Loader._detect_text_encoding` picks for each
sample in samples.py, and the text it then reads. Runs in the throwaway venv described in
../generate_golden.py (it imports Open WebUI, never pgvector_migration):

    /tmp/owui-venv/bin/python pgvector_migration_tests/golden/encoding/generate_encoding_golden.py

Writes expected.json next to this file."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def main() -> None:
    from generate_golden import prepare_environment
    from samples import samples

    expected = {}
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        data_dir.mkdir()
        prepare_environment(data_dir)
        from open_webui.retrieval.loaders.main import Loader

        loader = Loader({"rag.content_extraction_engine": ""})
        for name, raw in samples().items():
            path = Path(folder) / f"{name}.txt"
            path.write_bytes(raw)
            encoding = loader._detect_text_encoding(str(path))
            expected[name] = {"encoding": encoding, "text": raw.decode(encoding)}
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
