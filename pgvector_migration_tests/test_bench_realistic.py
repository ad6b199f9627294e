"""The logic of `make bench`: the deployment's shape and variants, and the budget share computed
from the loopback provider's request log (no Open WebUI server: that is the benchmark's job)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import PurePosixPath

import httpx
import pytest

from bench import budget_share, deployment_shape
from bench import deployment as bench_deployment
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import BudgetRateLimiter

NAMES = [f"doc{n:04d}.txt" for n in range(1200)]


def test_shape_is_many_small_knowledge_bases_a_few_large_ones_and_shared_files():
    shape = deployment_shape.deployment_shape(NAMES)
    assert sorted(shape) == NAMES
    members = Counter(k for kbs in shape.values() for k in kbs)
    large = [members[k] for k in deployment_shape.LARGE_KNOWLEDGE_BASES]
    small = [n for k, n in members.items() if k not in deployment_shape.LARGE_KNOWLEDGE_BASES]
    assert min(large) > 100
    assert len(small) >= 200
    assert sorted(Counter(small).elements())[len(small) // 2] <= 4  # the median is a few files
    standalone = [name for name, kbs in shape.items() if not kbs]
    assert len(standalone) == round(len(NAMES) * deployment_shape.STANDALONE_SHARE)
    shared = [kbs for kbs in shape.values() if len(kbs) > 1]
    assert len(shared) == round((len(NAMES) - len(standalone)) * deployment_shape.SHARED_SHARE)
    assert all(len(set(kbs)) == len(kbs) for kbs in shape.values())
    assert deployment_shape.deployment_shape(list(reversed(NAMES))) == shape


def test_few_and_many_hold_the_same_files_once_each():
    few, many = deployment_shape.few_and_many(NAMES, 300, 3, 150)
    assert len(few) == 3 and len(many) == 150
    few_files = [n for names in few.values() for n in names]
    many_files = [n for names in many.values() for n in names]
    assert sorted(few_files) == sorted(many_files)
    assert len(set(few_files)) == 300
    assert {len(names) for names in many.values()} == {2}
    with pytest.raises(ValueError, match="1200"):
        deployment_shape.few_and_many(NAMES, 5000, 3, 150)


def test_small_complete_knowledge_bases_use_the_smallest_documents():
    sizes = {name: 1000 + n for n, name in enumerate(NAMES)}
    shape = deployment_shape.small_complete(sizes, 1000, pool=200)
    assert len(shape) == 1000
    used = {n for names in shape.values() for n in names}
    assert used <= set(NAMES[:200])
    assert {len(names) for names in shape.values()} == {1, 2}


def test_budget_share_of_a_hand_made_log():
    requests = [
        budget_share.Request(arrived_at=10.0, answered_at=11.0, status=200, tokens=1000, inputs=4),
        budget_share.Request(arrived_at=10.5, answered_at=10.6, status=429, tokens=0, inputs=9),
        budget_share.Request(arrived_at=10.5, answered_at=71.0, status=200, tokens=5000, inputs=9),
    ]
    result = budget_share.budget_share(requests, tokens_per_minute=6000)
    assert result["window_seconds"] == pytest.approx(61.0)
    assert result["allowance_tokens"] == pytest.approx(6000 * (1 + 61 / 60))
    assert result["share_of_budget"] == pytest.approx(6000 / 12100)
    assert (result["tokens"], result["inputs"]) == (6000, 13)
    assert (result["requests"], result["rate_limited_requests"]) == (3, 1)
    assert result["most_in_flight"] == 3
    assert budget_share.budget_share([], 6000)["share_of_budget"] is None


def test_budget_share_from_the_providers_request_log_with_latency_per_input():
    """The loopback provider's log (times, tokens, 429s) gives the share; its latency grows
    with the batch."""
    limiter = BudgetRateLimiter(tokens_per_minute=600, requests_per_minute=1000)
    with EmbeddingServer(
        dimensions=4, latency_seconds=0.05, latency_per_input_seconds=0.02, rate_limiter=limiter
    ) as server:
        texts = ["x" * 40] * 10  # 10 tokens each
        started = time.monotonic()
        answers = [
            httpx.post(f"{server.base_url}/embeddings", json={"model": "m", "input": batch})
            for batch in (texts, texts[:5], texts * 6)  # 100, 50, then 600 tokens: over budget
        ]
        records = server.requests.snapshot()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [r.tokens for r in records] == [100, 50, 600]
    first = records[0]
    assert first.answered_at - first.arrived_at >= 0.05 + 0.02 * 10
    assert records[2].answered_at - records[2].arrived_at >= 0.05 + 0.02 * 60
    assert started <= first.arrived_at
    log = [
        budget_share.Request(r.arrived_at, r.answered_at, r.status, r.tokens, len(r.inputs))
        for r in records
    ]
    result = budget_share.budget_share(log, 600)
    window = records[1].answered_at - records[0].arrived_at
    assert result["tokens"] == 150 == limiter.stats()["admitted_tokens"]
    assert result["share_of_budget"] == pytest.approx(150 / (600 * (1 + window / 60)))
    assert result["rate_limited_requests"] == 1


def test_variant_database_rewrites_knowledge_rows_as_open_webui_writes_them(
    sample_deployment, tmp_path
):
    folder = tmp_path / "cached"
    shutil.copytree(sample_deployment, folder / "data")
    with sqlite3.connect(folder / "data" / "webui.db") as connection:
        files = connection.execute("SELECT id, filename FROM file ORDER BY id").fetchall()
    cached = {
        "documents": [
            {"name": f"{file_id}-{name}", "file_id": file_id, "status": "completed"}
            for file_id, name in files
        ]
    }
    names = [d["name"] for d in cached["documents"]]
    kept = names[:3]
    shape = {"Alpha": kept[:2], "Beta": [kept[2], kept[0]]}
    out = bench_deployment.variant_database(folder, cached, shape, tmp_path / "v" / "webui.db")
    with sqlite3.connect(out) as connection:
        knowledge = dict(connection.execute("SELECT name, id FROM knowledge").fetchall())
        members = connection.execute(
            "SELECT k.name, f.id FROM knowledge_file kf JOIN knowledge k ON k.id = kf.knowledge_id"
            " JOIN file f ON f.id = kf.file_id"
        ).fetchall()
        remaining = {row[0] for row in connection.execute("SELECT id FROM file")}
        owners = {row[0] for row in connection.execute("SELECT user_id FROM knowledge_file")}
    ids = {d["name"]: d["file_id"] for d in cached["documents"]}
    assert set(knowledge) == {"Alpha", "Beta"}
    assert sorted(members) == sorted(
        [
            ("Alpha", ids[kept[0]]),
            ("Alpha", ids[kept[1]]),
            ("Beta", ids[kept[2]]),
            ("Beta", ids[kept[0]]),
        ]
    )
    assert remaining == {ids[n] for n in kept}
    assert len(owners) == 1 and None not in owners
    with pytest.raises(ValueError, match="did not process"):
        bench_deployment.variant_database(
            folder, cached, {"Gamma": ["not-uploaded.pdf"]}, tmp_path / "w" / "webui.db"
        )


def test_replicated_database_holds_every_file_and_knowledge_base_once_per_copy(
    sample_deployment, tmp_path
):
    folder = tmp_path / "cached"
    shutil.copytree(sample_deployment, folder / "data")
    with sqlite3.connect(folder / "data" / "webui.db") as connection:
        files = dict(connection.execute("SELECT id, path FROM file").fetchall())
        links = connection.execute("SELECT knowledge_id, file_id FROM knowledge_file").fetchall()
        knowledge = connection.execute("SELECT count(*) FROM knowledge").fetchone()[0]
    out = bench_deployment.replicated_database(folder, 3, tmp_path / "r" / "webui.db")
    with sqlite3.connect(out) as connection:
        copies = connection.execute("SELECT id, path, meta FROM file").fetchall()
        copied_links = connection.execute(
            "SELECT knowledge_id, file_id FROM knowledge_file"
        ).fetchall()
        names = [row[0] for row in connection.execute("SELECT name FROM knowledge")]
    assert len(copies) == 3 * len(files)
    assert len({file_id for file_id, _, _ in copies}) == len(copies)
    # A UTF-8 text document's copies read uploads of their own, of the same length in
    # characters and different texts; the other documents' copies read the same upload.
    uploads = out.parent / "uploads"

    def alterable(path: str) -> bool:
        stored = PurePosixPath(path)
        if stored.suffix.lower() not in bench_deployment.ALTERED_SUFFIXES:
            return False
        try:
            (uploads / stored.name).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    by_name: dict[str, list[str]] = {}
    for original_path in files.values():
        same = [p for _, p, _ in copies if p == original_path]
        assert len(same) == (1 if alterable(original_path) else 3), original_path
    altered = [p for _, p, _ in copies if p not in set(files.values())]
    assert len(altered) == 2 * sum(alterable(p) for p in files.values())
    assert altered, "the sample deployment has text documents"
    for path in altered:
        name = PurePosixPath(path).name
        text = (uploads / name).read_text(encoding="utf-8")
        by_name.setdefault(name.split("_", 1)[1], []).append(text)
    for name, texts in by_name.items():
        [original] = [p for p in files.values() if p.endswith("_" + name)]
        source = (uploads / PurePosixPath(original).name).read_text(encoding="utf-8")
        assert len(set(texts + [source])) == 3 and {len(t) for t in texts} == {len(source)}
    originals = set(files)
    for file_id, _, meta in copies:
        if file_id not in originals and meta:
            assert not any(original in meta for original in originals), meta
    assert len(copied_links) == 3 * len(links) == len(set(copied_links))
    assert len(names) == 3 * knowledge and len(set(names)) == len(names)


def test_a_copied_database_holds_what_is_still_in_its_write_ahead_log(tmp_path):
    source = tmp_path / "webui.db"
    writer = sqlite3.connect(source)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as a running Open WebUI may leave it
    writer.execute("CREATE TABLE knowledge_file (knowledge_id TEXT, file_id TEXT)")
    writer.executemany(
        "INSERT INTO knowledge_file VALUES (?, ?)", [(f"k{n}", f"f{n}") for n in range(50)]
    )
    writer.commit()
    try:
        assert (tmp_path / "webui.db-wal").stat().st_size > 0
        shutil.copyfile(source, tmp_path / "file-only.db")
        with sqlite3.connect(tmp_path / "file-only.db") as copied_file:
            assert not copied_file.execute(
                "SELECT name FROM sqlite_master WHERE name = 'knowledge_file'"
            ).fetchall()
        out = bench_deployment.copy_database(source, tmp_path / "copy" / "webui.db")
        with sqlite3.connect(out) as copy:
            assert copy.execute("SELECT count(*) FROM knowledge_file").fetchone() == (50,)
    finally:
        writer.close()


def test_rows_are_compared_with_open_webuis_own_per_collection_and_file(fresh_database, tmp_path):
    import psycopg

    from bench.realistic import rows_against_openwebui

    database = tmp_path / "webui.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("CREATE TABLE file (id TEXT)")
        connection.executemany("INSERT INTO file VALUES (?)", [("f1",), ("f2",), ("f3",)])
        connection.execute("CREATE TABLE knowledge_file (knowledge_id TEXT, file_id TEXT)")
        connection.executemany(
            "INSERT INTO knowledge_file VALUES (?, ?)", [("kb1", "f1"), ("kb1", "f2")]
        )
    cached = {
        "documents": [
            {
                "name": "one.txt",
                "file_id": "f1",
                "openwebui_chunks": 2,
                "openwebui_knowledge_chunks": {"kb1": 3},
            },
            {"name": "two.txt", "file_id": "f2", "openwebui_chunks": 1},
            {"name": "empty.txt", "file_id": "f3", "openwebui_chunks": 0},
            # Not in this database (the quick mode's sample): not compared.
            {"name": "elsewhere.txt", "file_id": "f4", "openwebui_chunks": 5},
        ]
    }
    written = [("file-f1", "f1"), ("file-f1", "f1"), ("kb1", "f1"), ("kb1", "f1")]
    written += [("file-f2", "f2"), ("file-f2", "f2")]
    target = fresh_database()
    with psycopg.connect(target) as connection:
        connection.execute("CREATE TABLE document_chunk (collection_name text, vmetadata jsonb)")
        for collection, file_id in written:
            connection.execute(
                "INSERT INTO document_chunk VALUES (%s, jsonb_build_object('file_id', %s::text))",
                (collection, file_id),
            )
    result = rows_against_openwebui(target, cached, database)
    # file-f1 equal; kb1/f1 one row short; file-f2 one row too many; kb1/f2 missing, and
    # Open WebUI's count of it unknown (an older deployment.json): presence only.
    assert result["pairs_compared"] == 3
    assert result["pairs_differing"] == 2
    assert result["pairs_without_openwebui_count"] == 1
    assert result["pairs_missing"] == 1
    assert any(
        "kb1 / one.txt: Open WebUI 3, here 2" in line for line in result["pairs_differing_sample"]
    )
