"""Writing and reading a chunk table's rows: one unit replaced per transaction (binary COPY,
halfvec or vector values, pgcrypto encryption by the server as Open WebUI's own inserts do),
deletions that forget our record of what they delete, and the rows a report compares."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg.types.json import Jsonb

from pgvector_migration.pipeline.completeness import PresentRows, WrittenRecord, models_of
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    WriteUnit,
    owns_whole_collection,
)
from pgvector_migration.store.ledger import forget_written, record_written
from pgvector_migration.store.names import state_schema
from pgvector_migration.store.target_table import ChunkTable, decryption_errors


def present_rows(
    table: ChunkTable, collection_names: Sequence[str]
) -> dict[tuple[str, str], PresentRows]:
    """Rows per (collection, file id) now in the table, with their content hashes and
    embedding models, for the completeness report."""
    shape = table.describe()
    if not shape.exists:
        return {}
    rows_sql, params = table.readable_rows(shape, "WHERE collection_name = ANY(%(names)s)")
    with table.connect() as connection, decryption_errors(table.name):
        rows = connection.execute(
            f"""
            SELECT collection_name, metadata->>'file_id', count(*),
                   array_agg(DISTINCT metadata->>'hash'),
                   array_agg(DISTINCT metadata->>'embedding_config')
            FROM {rows_sql}
            GROUP BY 1, 2
            """,
            {**params, "names": list(collection_names)},
        ).fetchall()
    return {
        (collection, file_id): PresentRows(count, frozenset(hashes), models_of(configs))
        for collection, file_id, count, hashes, configs in rows
    }


def row_ids(table: ChunkTable, collection_name: str) -> list[str]:
    if not table.describe().exists:
        return []
    with table.connect() as connection:
        rows = connection.execute(
            f"SELECT id FROM {table.name} WHERE collection_name = %s ORDER BY id",
            (collection_name,),
        ).fetchall()
    return [row[0] for row in rows]


def collections_with_prefix(table: ChunkTable, prefix: str) -> list[str]:
    if not table.describe().exists:
        return []
    with table.connect() as connection:
        rows = connection.execute(
            f"SELECT DISTINCT collection_name FROM {table.name} "
            "WHERE starts_with(collection_name, %s) ORDER BY 1",
            (prefix,),
        ).fetchall()
    return [row[0] for row in rows]


def delete_rows(table: ChunkTable, collection_name: str, ids: Sequence[str] | None = None) -> int:
    """Delete a whole collection, or the rows with these ids (rows whose id is their source
    id, as in `knowledge-bases`), and forget what we recorded for them; returns the number
    of rows deleted."""
    with table.connect() as connection, connection.transaction():
        if ids is None:
            deleted = connection.execute(
                f"DELETE FROM {table.name} WHERE collection_name = %s", (collection_name,)
            ).rowcount
        else:
            deleted = connection.execute(
                f"DELETE FROM {table.name} WHERE collection_name = %s AND id = ANY(%s)",
                (collection_name, list(ids)),
            ).rowcount
        forget_written(connection, state_schema(table.name), collection_name, ids)
    return deleted


def delete_file_rows(table: ChunkTable, collection_name: str, file_id: str) -> int:
    """Delete one file's rows from a shared collection and forget our record of them."""
    encrypted = table.describe().encrypted
    with (
        table.connect() as connection,
        decryption_errors(table.name),
        connection.transaction(),
        connection.cursor() as cursor,
    ):
        deleted = _delete_file_rows(table, cursor, collection_name, file_id, encrypted)
        forget_written(connection, state_schema(table.name), collection_name, [file_id])
    return deleted


def _delete_file_rows(
    table: ChunkTable, cursor: psycopg.Cursor, collection_name: str, file_id: str, encrypted: bool
) -> int:
    _, metadata, params = table.chunk_columns(encrypted)
    cursor.execute(
        f"DELETE FROM {table.name} WHERE collection_name = %(collection)s "
        f"AND ({metadata})->>'file_id' = %(file_id)s",
        {**params, "collection": collection_name, "file_id": file_id},
    )
    return cursor.rowcount


def replace_unit(
    table: ChunkTable,
    connection: psycopg.Connection,
    unit: WriteUnit,
    vectors: Sequence[np.ndarray],
    record: WrittenRecord,
) -> None:
    """Replace one unit in a single transaction: delete its old rows, COPY the new ones,
    record what was written. A crash leaves either the old rows or the new.

    With PGVECTOR_USE_HALFVEC the vectors are sent as halfvec; with PGVECTOR_PGCRYPTO the
    rows are COPYed into a temporary table and encrypted from there by the server, as
    Open WebUI's own inserts do, with the key bound as a parameter. `connection` has
    pgvector's types registered."""
    collection_name, source_id = unit.collection_name, unit.source_id
    vector_type = table.vector_type
    with (
        decryption_errors(table.name),
        connection.transaction(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"{collection_name}\x1f{source_id}",),
        )
        if owns_whole_collection(collection_name, source_id):
            cursor.execute(
                f"DELETE FROM {table.name} WHERE collection_name = %s", (collection_name,)
            )
        elif collection_name == KNOWLEDGE_BASES_COLLECTION:
            cursor.execute(
                f"DELETE FROM {table.name} WHERE collection_name = %s AND id = %s",
                (collection_name, source_id),
            )
        else:
            _delete_file_rows(table, cursor, collection_name, source_id, table.pgcrypto)
        rows = (
            (chunk.id, _vector_value(vector, vector_type), chunk.text, chunk.metadata)
            for chunk, vector in zip(unit.chunks, vectors, strict=True)
        )
        if table.pgcrypto:
            _copy_encrypted(table, cursor, collection_name, rows)
        else:
            with cursor.copy(
                f"COPY {table.name} (id, vector, collection_name, text, vmetadata) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", vector_type, "text", "text", "jsonb"])
                for chunk_id, vector, text, metadata in rows:
                    copy.write_row((chunk_id, vector, collection_name, text, Jsonb(metadata)))
        record_written(cursor, state_schema(table.name), collection_name, source_id, record)


def _vector_value(vector: np.ndarray, vector_type: str) -> np.ndarray | HalfVector:
    """What pgvector's dumper for the column type takes. halfvec: rounded from float32 to
    half precision, as PostgreSQL rounds the float4 values Open WebUI sends."""
    if vector_type == "halfvec":
        return HalfVector(np.asarray(vector, dtype=np.float32))
    return vector


def _copy_encrypted(
    table: ChunkTable,
    cursor: psycopg.Cursor,
    collection_name: str,
    rows: Iterator[tuple[str, object, str, Mapping]],
) -> None:
    """COPY plain rows into a temporary table dropped at commit, then insert them with text
    and metadata encrypted by pgp_sym_encrypt. The metadata is encrypted as the JSON text
    Open WebUI's pgcrypto insert writes (`json.dumps` of the metadata), which it decrypts
    and reads back as jsonb; the CHECK refuses, as a jsonb column would, what it could not
    read back (NaN, a NUL escape)."""
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE incoming_chunk (
            id text,
            vector {table.vector_type},
            text text,
            metadata text CHECK (metadata::jsonb IS NOT NULL)
        ) ON COMMIT DROP
        """
    )
    with cursor.copy(
        "COPY pg_temp.incoming_chunk (id, vector, text, metadata) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", table.vector_type, "text", "text"])
        for chunk_id, vector, text, metadata in rows:
            copy.write_row((chunk_id, vector, text, json.dumps(metadata)))
    cursor.execute(
        f"""
        INSERT INTO {table.name} (id, vector, collection_name, text, vmetadata)
        SELECT id, vector, %(collection)s,
               pgp_sym_encrypt(text, %(key)s), pgp_sym_encrypt(metadata, %(key)s)
        FROM pg_temp.incoming_chunk
        """,
        {"collection": collection_name, "key": table.pgcrypto_key()},
    )
