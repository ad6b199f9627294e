"""Building `idx_document_chunk_vector` after loading, the way pgvector recommends.

The new index is built under a temporary name (CONCURRENTLY by default, so searches go on)
and swapped in, with `maintenance_work_mem` and parallel workers sized to the index and the
server (index_sizing.py) unless configured; ivfflat `lists` is
sized to the table unless configured, since an ivfflat index built on too little data recalls
poorly. A halfvec column (PGVECTOR_USE_HALFVEC) is indexed with halfvec_cosine_ops, by hnsw
unless PGVECTOR_INDEX_METHOD says otherwise, as Open WebUI does; an encrypted table
(PGVECTOR_PGCRYPTO) gets no text-search index, since its text is ciphertext.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass

from pgvector_migration.resources.index_sizing import server_build_sizing
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError

INDEX_NAME = "idx_document_chunk_vector"
BUILDING_NAME = "idx_document_chunk_vector_building"


@dataclass(frozen=True)
class IndexBuild:
    """What the rebuild did, for the asset's metadata."""

    method: str
    options: str
    rows: int
    seconds: float
    concurrently: bool
    skipped_reason: str = ""
    text_search_skipped_reason: str = ""
    sizing: str = ""


def ivfflat_lists_for(rows: int) -> int:
    """pgvector's guidance: rows / 1000 up to a million rows, sqrt(rows) beyond."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return int(math.sqrt(rows))


def index_options(
    vector_store: PgVectorResource, rows: int, halfvec: bool | None = None
) -> tuple[str, str]:
    """(method, WITH clause) from resource config, then Open WebUI's environment names; with
    no method configured, hnsw for a halfvec column (None: PGVECTOR_USE_HALFVEC), else
    ivfflat."""
    if halfvec is None:
        halfvec = vector_store.resolved_use_halfvec()
    configured = vector_store.index_method or os.environ.get("PGVECTOR_INDEX_METHOD", "")
    method = configured.strip().lower() or ("hnsw" if halfvec else "ivfflat")
    if method == "hnsw":
        m = vector_store.hnsw_m or int(os.environ.get("PGVECTOR_HNSW_M", "16"))
        ef = vector_store.hnsw_ef_construction or int(
            os.environ.get("PGVECTOR_HNSW_EF_CONSTRUCTION", "64")
        )
        return method, f"WITH (m = {m}, ef_construction = {ef})"
    if method == "ivfflat":
        lists_setting = vector_store.ivfflat_lists or os.environ.get("PGVECTOR_IVFFLAT_LISTS")
        lists = int(lists_setting) if lists_setting else ivfflat_lists_for(rows)
        return method, f"WITH (lists = {lists})"
    raise TargetConfigurationError(
        f"PGVECTOR_INDEX_METHOD={method!r} is not supported; use ivfflat or hnsw"
    )


def rebuild_vector_index(vector_store: PgVectorResource) -> IndexBuild:
    """Build a fresh index over the whole table and swap it in for the old one."""
    concurrently = vector_store.build_index_concurrently
    table = vector_store.describe_table()
    if not table.exists:
        return IndexBuild("", "", 0, 0.0, concurrently, "document_chunk does not exist yet")
    halfvec = table.vector_type == "halfvec"
    opclass = "halfvec_cosine_ops" if halfvec else "vector_cosine_ops"
    with vector_store.connect(with_vectors=False) as connection:
        rows = connection.execute("SELECT count(*) FROM document_chunk").fetchone()[0]
        method, options = index_options(vector_store, rows, halfvec)
        if rows == 0:
            return IndexBuild(method, options, 0, 0.0, concurrently, "the table is empty")
        started = time.monotonic()
        m = re.search(r"\bm = (\d+)", options)
        sizing = server_build_sizing(
            connection, rows, table.dimension or 0, halfvec, method, int(m.group(1)) if m else 16
        )
        memory = vector_store.maintenance_work_mem or sizing.maintenance_work_mem
        workers = vector_store.max_parallel_maintenance_workers
        workers = sizing.workers if workers is None else workers
        connection.execute("SELECT set_config('maintenance_work_mem', %s, false)", (memory,))
        connection.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        # A build killed half-way leaves an invalid index under the temporary name.
        connection.execute(f"DROP INDEX IF EXISTS {BUILDING_NAME}")
        connection.execute(
            f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}{BUILDING_NAME} "
            f"ON document_chunk USING {method} (vector {opclass}) {options}"
        )
        with connection.transaction():
            connection.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
            connection.execute(f"ALTER INDEX {BUILDING_NAME} RENAME TO {INDEX_NAME}")
        text_search_skipped = ""
        if table.encrypted:
            text_search_skipped = "text and vmetadata are encrypted (PGVECTOR_PGCRYPTO)"
        else:
            connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_document_chunk_text_search ON document_chunk "
                "USING GIN (to_tsvector('simple', coalesce(text, '')))"
            )
    return IndexBuild(
        method,
        options,
        rows,
        time.monotonic() - started,
        concurrently,
        text_search_skipped_reason=text_search_skipped,
        sizing=f"maintenance_work_mem={memory}, {workers} workers ({sizing.reason})",
    )
