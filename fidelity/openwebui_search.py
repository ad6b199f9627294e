"""Search a `document_chunk` table through Open WebUI 0.12.4's own `PgvectorClient`.

Runs in Open WebUI's venv (a subprocess of run_fidelity.py), with Open WebUI's environment:
`PGVECTOR_DB_URL` names the table to search (Open WebUI's own, or the migration's target).
Reads `[{"collection": ..., "vector": [...]}, ...]` as JSON on stdin and prints, per query, the
hits as `{"text", "distance", "file_id", "start_index"}` in the order Open WebUI returns them.
"""

import json
import sys

LIMIT = 5


def main() -> int:
    queries = json.load(sys.stdin)
    from open_webui.retrieval.vector.dbs.pgvector import PgvectorClient

    client = PgvectorClient()
    answers = []
    for query in queries:
        result = client.search(query["collection"], vectors=[query["vector"]], limit=LIMIT)
        hits = []
        if result is not None and result.ids:
            for text, distance, metadata in zip(
                result.documents[0], result.distances[0], result.metadatas[0], strict=True
            ):
                hits.append(
                    {
                        "text": text,
                        "distance": round(float(distance), 6),
                        "file_id": (metadata or {}).get("file_id"),
                        "start_index": (metadata or {}).get("start_index"),
                    }
                )
        answers.append(hits)
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
