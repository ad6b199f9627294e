"""How fast uploads are loaded and split, per file type: the CPU cost the default (reading every
upload with Open WebUI's loaders) adds to a migration.

Plans every real document the project carries (the sample deployment's documents and the golden
corpus's office, e-book, e-mail, .rst and XML documents) with `plan_file`, the function the
`chunked_documents` step runs, under Open WebUI's default settings: first each type alone in
one process (files per second by type), then the whole set with `plan_files` on one process
and on every core (the speed-up the step gets from its worker processes). Prints a markdown
table; nothing is written anywhere.

    .venv/bin/python -m bench.loader_speed [--repeat 3]      # from the repository's root
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pgvector_migration.pipeline.loaders import extension_of
from pgvector_migration.pipeline.planning import plan_file, plan_files
from pgvector_migration.pipeline.records import SourceFile, file_collection_name
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.sample_data import CONTENT_TYPES, DOCUMENTS_DIR
from pgvector_migration.settings import resolve_rag_settings
from pgvector_migration_tests.golden.generate_golden import GOLDEN_CONTENT_TYPES

ROOT = Path(__file__).resolve().parents[1]

GOLDEN_DOCUMENTS = ROOT / "pgvector_migration_tests" / "golden" / "documents"
PDF_WITH_IMAGES = ROOT / "pgvector_migration_tests" / "golden" / "pdf_options"
UNREADABLE_SAMPLES = {"broken_report.pdf", "moon_photo.png"}


def corpus() -> list[Path]:
    """Every real document the project carries that Open WebUI reads successfully."""
    skipped = UNREADABLE_SAMPLES | {"SOURCES.md"}
    documents = [p for p in sorted(DOCUMENTS_DIR.iterdir()) if p.name not in skipped]
    documents += [p for p in sorted(GOLDEN_DOCUMENTS.iterdir()) if p.name != "SOURCES.md"]
    documents += sorted(PDF_WITH_IMAGES.glob("*.pdf"))
    return [p for p in documents if p.is_file() and not p.name.startswith("__")]


def source_file(path: Path, index: int, uploads: Path) -> SourceFile:
    """A file row for one document, its upload copied so that every plan reads its own bytes."""
    upload = uploads / f"{index}_{path.name}"
    shutil.copyfile(path, upload)
    extension = extension_of(path.name)
    content_type = CONTENT_TYPES.get(extension) or GOLDEN_CONTENT_TYPES.get(extension)
    return SourceFile(
        id=f"bench-{index}",
        user_id="bench",
        filename=path.name,
        stored_path=str(upload),
        content_type=content_type,
        meta={"name": path.name, "content_type": content_type, "size": path.stat().st_size},
        data={},
        content_hash_column=None,
        upload_path=upload,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of each document")
    args = parser.parse_args()
    settings = resolve_rag_settings({}, {})
    with tempfile.TemporaryDirectory() as work:
        uploads = Path(work)
        files = [
            source_file(path, index * args.repeat + copy, uploads)
            for index, path in enumerate(corpus())
            for copy in range(args.repeat)
        ]
        for file in files[:: args.repeat]:
            plan_file(file, settings, [file_collection_name(file.id)])  # imports, models
        by_type: dict[str, list[float]] = defaultdict(list)
        sizes: dict[str, int] = defaultdict(int)
        for file in files:
            started = time.perf_counter()
            plan_file(file, settings, [file_collection_name(file.id), "knowledge-bench"])
            by_type[extension_of(file.filename)].append(time.perf_counter() - started)
            sizes[extension_of(file.filename)] += file.upload_path.stat().st_size
        cores = os.cpu_count() or 1
        wall = {}
        for workers in sorted({1, cores}):
            started = time.perf_counter()
            work_items = ((f, [file_collection_name(f.id), "knowledge-bench"]) for f in files)
            outcomes = list(plan_files(work_items, settings, TextSource.UPLOAD, workers))
            wall[workers] = time.perf_counter() - started
            assert all(plan is not None for _, plan, _ in outcomes), [
                error for _, _, error in outcomes if error
            ]
    print("| type | files | KiB per file | files/s (one process) |")
    print("|---|---|---|---|")
    for extension in sorted(by_type):
        seconds = by_type[extension]
        kib = sizes[extension] / len(seconds) / 1024
        print(f"| {extension} | {len(seconds)} | {kib:.0f} | {len(seconds) / sum(seconds):.1f} |")
    print()
    for workers, seconds in wall.items():
        print(
            f"all {len(files)} files with plan_files on {workers} process(es): {seconds:.1f} s, "
            f"{len(files) / seconds:.1f} files/s"
        )


if __name__ == "__main__":
    main()
