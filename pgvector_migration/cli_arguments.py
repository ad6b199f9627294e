"""The flags of `pgvector-migrate`: the old migration script's, plus the Dagster-era ones.

Kept apart from the command so that reading the flags needs neither Dagster nor a database.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgvector_migration.pipeline.pruning import DEFAULT_MAX_PRUNE_SHARE
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.pipeline.transplant import (
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_SAMPLES_PER_COLLECTION,
)
from pgvector_migration.verify_command import add_verify_arguments

# The kinds of collection --only chooses among, in the order they are rebuilt.
KINDS = ("files", "knowledge-bases", "memories")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgvector-migrate",
        description="Re-process every Open WebUI file into pgvector's document_chunk table, "
        "configured by Open WebUI's own environment variables.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["migrate", "status", "verify", "switch"],
        default="migrate",
        help="migrate (the default); status: per knowledge base completeness from the database; "
        "verify: does search find what it should, per knowledge base (--tune, --untune); "
        "switch: change the embedding model with no downtime (--model, then --cutover)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the whole setup and report what would be done and cost; write nothing",
    )
    parser.add_argument(
        "--price-per-million",
        type=float,
        metavar="USD",
        help="the provider's price per million tokens, for the dry run's cost estimate "
        "(default: the list price of known OpenAI models)",
    )
    text_source = parser.add_mutually_exclusive_group()
    text_source.add_argument(
        "--reextract",
        dest="text_source",
        action="store_const",
        const=TextSource.UPLOAD_ONLY,
        help="read every upload with Open WebUI's upload-time loaders and fail a file whose "
        "upload cannot be read (by default such a file falls back to the text Open WebUI "
        "stored, and the summary says so)",
    )
    text_source.add_argument(
        "--stored-text",
        dest="text_source",
        action="store_const",
        const=TextSource.STORED,
        help="split the text Open WebUI stored (file.data.content) instead of reading uploads: "
        "fast and works without the uploads folder, but one document per file, without the "
        "page, row or element documents and metadata Open WebUI made at upload",
    )
    parser.set_defaults(text_source=TextSource.UPLOAD)
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-run only the files recorded as failed by earlier runs",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite collections that are already complete"
    )
    parser.add_argument(
        "--knowledge-id", action="append", default=[], help="only this knowledge base (repeatable)"
    )
    parser.add_argument(
        "--file-id", action="append", default=[], help="only this file (repeatable)"
    )
    parser.add_argument(
        "--knowledge-only",
        action="store_true",
        help="only files in a knowledge base; leave files in no knowledge base alone",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=KINDS,
        help="rebuild only this kind of collection (repeatable); default: all three, or only "
        "files when --knowledge-id or --file-id is given",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete rows whose source is gone: deleted files, files removed from a knowledge "
        "base, deleted knowledge bases and memories (--overwrite also prunes the "
        "knowledge-bases and memory collections)",
    )
    parser.add_argument(
        "--prune-max-share",
        type=float,
        default=DEFAULT_MAX_PRUNE_SHARE,
        metavar="SHARE",
        help="refuse (exit 2, nothing deleted) a prune that would delete more than this share "
        "of document_chunk, or anything when Open WebUI has no files, knowledge bases or "
        "memories (default %(default)s); --dry-run --prune shows the plan",
    )
    parser.add_argument(
        "--force-prune",
        action="store_true",
        help="prune even beyond --prune-max-share or from an empty Open WebUI database",
    )
    parser.add_argument(
        "--reembed",
        action="store_true",
        help="ignore the embedding cache: embed every text again and replace its cached vector",
    )
    transplant = parser.add_argument_group(
        "reusing vectors of an old vector store (pip install 'pgvector-migration[chroma]')"
    )
    transplant.add_argument(
        "--from-chroma",
        metavar="PATH",
        help="Open WebUI's Chroma directory ({DATA_DIR}/vector_db): vectors it holds for the "
        "same model are reused instead of embedded again (the store is only read)",
    )
    transplant.add_argument(
        "--chroma-model",
        metavar="MODEL",
        help="the embedding model that made stored vectors without an embedding_config "
        "(old Open WebUI versions); without it those vectors are not used",
    )
    transplant.add_argument(
        "--transplant-samples",
        type=int,
        default=DEFAULT_SAMPLES_PER_COLLECTION,
        metavar="N",
        help="stored chunks per collection embedded afresh and compared before the store is "
        "trusted (default %(default)s; 0 trusts it unchecked)",
    )
    transplant.add_argument(
        "--transplant-min-similarity",
        type=float,
        default=DEFAULT_MIN_SIMILARITY,
        metavar="COSINE",
        help="cosine similarity every sample must reach, else no stored vector is used "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--partitions-per-run",
        type=int,
        default=0,
        metavar="N",
        help="knowledge bases per Dagster run (default 0: all of them in one run, so files are "
        "loaded once and then embedded in one stream that keeps the provider busy; a smaller "
        "N makes runs the UI can re-execute one by one)",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--no-index", action="store_true", help="do not rebuild the vector index")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress: by default a bar on a terminal, else a line every few seconds",
    )
    add_verify_arguments(parser)
    add_switch_arguments(parser)
    return parser


def add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    """`switch`: build a complete second table (document_chunk_shadow) with another model
    while Open WebUI keeps searching the live one, then swap them in one transaction."""
    switch = parser.add_argument_group(
        "switch: change the embedding model with no downtime (a shadow table beside "
        "document_chunk, swapped in at once)"
    )
    switch.add_argument(
        "--model",
        metavar="MODEL",
        help="the new RAG_EMBEDDING_MODEL: `switch --model M` builds (or brings up to date) "
        "document_chunk_shadow with it; Open WebUI keeps searching document_chunk meanwhile",
    )
    switch.add_argument(
        "--engine",
        metavar="ENGINE",
        help="the new RAG_EMBEDDING_ENGINE ('' local, openai, ollama, azure_openai; default: "
        "the current one)",
    )
    switch.add_argument(
        "--dimension",
        type=int,
        metavar="N",
        help="the new model's vector length (default: asked of the engine); the cutover "
        "refuses a shadow of another dimension",
    )
    step = switch.add_mutually_exclusive_group()
    step.add_argument(
        "--cutover",
        action="store_true",
        help="bring the shadow up to date (files uploaded, changed or deleted meanwhile), "
        "check it is complete, then swap it in for document_chunk in one transaction and "
        "print the Open WebUI settings to change",
    )
    step.add_argument(
        "--rollback",
        action="store_true",
        help="swap the previous table (and its ledger) back in and print the old settings",
    )
    step.add_argument(
        "--finish",
        action="store_true",
        help="drop the previous table and its ledger (pgvector_migration_previous): no "
        "rollback after this",
    )
    step.add_argument(
        "--abandon",
        action="store_true",
        help="drop an unfinished shadow table and its ledger (pgvector_migration_shadow)",
    )
    switch.add_argument(
        "--write-openwebui-settings",
        action="store_true",
        help="with --cutover: after the swap, write the new embedding engine and model "
        "(rag.embedding_engine, rag.embedding_model, nothing else) to Open WebUI's config "
        "table in its database (DATABASE_URL), the values found recorded with the switch; "
        "with --rollback: put back exactly what was there. The vector length is environment "
        "only in Open WebUI (PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH, printed), and Open WebUI "
        "reads both at start: restart it. Without this flag the settings are only printed",
    )
