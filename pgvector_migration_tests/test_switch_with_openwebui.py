"""A model switch with a dimension change (384 -> 768) against a real Open WebUI 0.12.4 server,
whose own search is asked throughout, through its HTTP API, on every collection kind.

Open WebUI (uvicorn, offline, on the embedded PostgreSQL: its database and `document_chunk` in
one database) embeds with model A from a loopback OpenAI server that answers model A with 384
dimensions and model B with 768. Its user uploads files into a knowledge base and adds a
memory; those rows are the live table. While `switch --model B` builds the shadow, a thread
keeps asking Open WebUI's `/api/v1/retrieval/query/doc` and `/query/collection` on every
collection kind (file, knowledge base, `knowledge-bases`, `user-memory-*`) and classifies every
answer: the fake models' vectors are independent per model, so the top-k chunks (or, for a
one-row collection, the score) for a query under A and under B differ (the queries are chosen
so), and an answer equal
to neither is a search that mixed vector spaces (query from one model, table from the other).
Then `--cutover --write-openwebui-settings`, a restart with B's vector length (Open WebUI reads
it, and its embedding model, only at start; its environment still names model A, the config
table wins), answers from B; `--rollback --write-openwebui-settings`, a restart, answers from A.
Between a swap and the restart, answers may fail (Open WebUI casts its query to the length it
started with, which the table no longer has) but never mix. Last, SIGKILL of the build leaves
Open WebUI on A and a re-run finishes; SIGKILL of a cutover waiting for its lock leaves A.

Needs Open WebUI 0.12.4 in OPENWEBUI_VENV (default ~/.cache/pgvector-migration/openwebui-0.12.4,
`fidelity/install_openwebui.sh`; `make test` installs it). Without it the test fails, unless
PGVECTOR_MIGRATION_SKIP_OPENWEBUI=1 says to skip it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest

from fidelity.openwebui_server import OpenWebUI, openwebui_environment
from pgvector_migration.demo import database_uri, ensure_database
from pgvector_migration_testing.embedding_vectors import expected_embedding_f32
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL_A, DIMENSIONS_A = "switch-model-a", 384
MODEL_B, DIMENSIONS_B = "switch-model-b", 768
API_KEY = "sk-switch-test"
OPENWEBUI_VENV = Path(
    os.environ.get("OPENWEBUI_VENV")
    or Path.home() / ".cache" / "pgvector-migration" / "openwebui-0.12.4"
)
SKIP_VARIABLE = "PGVECTOR_MIGRATION_SKIP_OPENWEBUI"
# Per collection kind: how many chunks a probe asks for. The knowledge-bases collection holds
# one row per knowledge base (its name and description), a user's memory collection one row
# per memory: there the score tells the models apart, not the ranking.
TOP_K = {"file": 2, "knowledge": 3, "knowledge-bases": 1, "memory": 1}
# Open WebUI's score is (2 - cosine distance) / 2; float32 vectors keep it to ~1e-6.
SCORE_TOLERANCE = 1e-4
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "island")


def openwebui_python() -> Path:
    python = OPENWEBUI_VENV / "bin" / "python"
    if python.exists():
        return python
    message = (
        f"no Open WebUI 0.12.4 in {OPENWEBUI_VENV}: run fidelity/install_openwebui.sh "
        f"(make test does), or set {SKIP_VARIABLE}=1 to skip this test"
    )
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(message)
    pytest.fail(message)


def document_text(number: int) -> str:
    """One line of ~2,500 characters (three chunks at Open WebUI's default 1,000/100), its
    words drawn per document so that no two chunks are alike."""
    rng = np.random.default_rng(number)
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), 420)]
    return f"Document {number}: " + " ".join(words) + "."


def similarities(model: str, dimensions: int, query: str, texts: list[str]) -> np.ndarray:
    """Cosine similarity of a query to each chunk under one fake model (unit vectors)."""
    wanted = expected_embedding_f32(model, query, dimensions).astype(np.float64)
    return np.array(
        [
            wanted @ expected_embedding_f32(model, text, dimensions).astype(np.float64)
            for text in texts
        ]
    )


@dataclass(frozen=True)
class Answer:
    """Open WebUI's top-k documents, best first, with their scores."""

    documents: tuple[str, ...]
    scores: tuple[float, ...]

    def matches(self, documents: tuple[str, ...], scores: list[float]) -> bool:
        return documents == self.documents and np.allclose(
            scores, self.scores, atol=SCORE_TOLERANCE
        )


def expected_answer(model: str, dimensions: int, query: str, texts: list[str], k: int) -> Answer:
    cosines = similarities(model, dimensions, query, texts)
    best = np.argsort(-cosines)[:k]
    return Answer(tuple(texts[i] for i in best), tuple(float((1 + cosines[i]) / 2) for i in best))


@dataclass(frozen=True)
class Probe:
    """One question to Open WebUI's search, with the answers model A and model B give."""

    route: str  # "doc" or "collection"
    kind: str  # "file" or "knowledge"
    collection: str
    query: str
    from_a: Answer
    from_b: Answer


def probes_for(kind: str, collection: str, texts: list[str]) -> list[Probe]:
    """A query whose answer differs between the models (other chunks in the top-k, or, with
    one chunk, a score apart by far more than the tolerance), its ranking not upset by any
    rounding of the stored vectors, asked through both routes."""
    k = TOP_K[kind]
    for attempt in range(200):
        query = f"Which {kind} mentions {WORDS[attempt % len(WORDS)]}, question {attempt}?"
        answers = []
        for model, dimensions in ((MODEL_A, DIMENSIONS_A), (MODEL_B, DIMENSIONS_B)):
            ordered = np.sort(similarities(model, dimensions, query, texts))[::-1]
            if len(ordered) > k and np.min(np.abs(np.diff(ordered[: k + 1]))) < 1e-3:
                break
            answers.append(expected_answer(model, dimensions, query, texts, k))
        if len(answers) < 2:
            continue
        apart = answers[0].documents != answers[1].documents or (
            abs(answers[0].scores[0] - answers[1].scores[0]) > 0.02
        )
        if apart:
            return [
                Probe(route, kind, collection, query, answers[0], answers[1])
                for route in ("doc", "collection")
            ]
    raise AssertionError(f"no query tells model A from B on {collection}")


@dataclass
class Searcher:
    """A thread asking Open WebUI's search every probe in turn, as a signed-in user, and
    recording each answer's verdict under the phase the test has set."""

    url: str
    token: str
    probes: list[Probe]
    phase: str = "start"
    answers: list[tuple[str, Probe, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Searcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            while not self._stop.is_set():
                for probe in self.probes:
                    phase = self.phase
                    verdict, detail = self.ask(client, probe)
                    self.answers.append((phase, probe, verdict, detail))

    @staticmethod
    def ask(client: httpx.Client, probe: Probe) -> tuple[str, str]:
        k = TOP_K[probe.kind]
        if probe.route == "doc":
            request = {"collection_name": probe.collection, "query": probe.query, "k": k}
        else:
            request = {"collection_names": [probe.collection], "query": probe.query, "k": k}
        try:
            response = client.post(f"/api/v1/retrieval/query/{probe.route}", json=request)
        except httpx.HTTPError as error:
            return "unreachable", repr(error)
        if response.status_code != 200:
            return "error", f"{response.status_code} {response.text[:200]}"
        body = response.json() or {}
        documents = tuple((body.get("documents") or [[]])[0])
        scores = (body.get("distances") or [[]])[0]
        if not documents:
            return "empty", response.text[:200]
        if probe.from_a.matches(documents, scores):
            return "A", ""
        if probe.from_b.matches(documents, scores):
            return "B", ""
        return "mixed", f"{documents!r} {scores!r}"

    def verdicts(self, phase: str) -> Counter:
        return Counter(verdict for name, _, verdict, _ in self.answers if name == phase)

    def kinds_answered(self, phase: str, verdict: str) -> set[tuple[str, str]]:
        return {
            (p.route, p.kind) for name, p, v, _ in self.answers if (name, v) == (phase, verdict)
        }

    def wait_for_answers(self, phase: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.verdicts(phase).values()) < count and time.monotonic() < deadline:
            time.sleep(0.2)


@dataclass
class Stack:
    ui: OpenWebUI
    embeddings: EmbeddingServer
    database_url: str
    environment: dict[str, str]
    probes: list[Probe]
    collections: dict[str, str]
    work: Path

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)

    def switch(self, *flags: str, dimensions: int) -> subprocess.Popen:
        """`pgvector-migrate switch ...` as its own process, in the deployment's environment
        (the Open WebUI settings come from its config table)."""
        script = Path(sys.executable).with_name("pgvector-migrate")
        log = open(self.work / "switch.log", "ab")  # noqa: SIM115 - the child writes it
        log.write(f"\n$ switch {' '.join(flags)}\n".encode())
        log.flush()
        return subprocess.Popen(
            [str(script), "switch", "--no-progress", *flags],
            env={
                **os.environ,
                **self.environment,
                "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(dimensions),
                "DAGSTER_HOME": str(self.work),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
        )

    def run_switch(self, *flags: str, dimensions: int) -> str:
        """Run to the end; returns what it printed, failing the test on a non-zero exit."""
        log = self.work / "switch.log"
        start = log.stat().st_size if log.exists() else 0
        code = self.switch(*flags, dimensions=dimensions).wait(timeout=300)
        printed = log.read_bytes()[start:].decode()
        assert code == 0, f"switch {' '.join(flags)} exited {code}:\n{printed}"
        return printed

    def dimension(self, table: str) -> int | None:
        with self.connect() as connection:
            row = connection.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attname = 'vector'",
                (table,),
            ).fetchone()
        return row[0] if row else None

    def config(self) -> dict:
        """Open WebUI's whole config table, key -> value."""
        with self.connect() as connection:
            return dict(connection.execute("SELECT key, value::text FROM config").fetchall())


def upload_deployment(ui: OpenWebUI, work: Path) -> dict[str, str]:
    """A knowledge base of three files uploaded as a user does, and a memory; returns
    collection -> kind."""
    ui.sign_up_admin()
    knowledge_id = ui.create_knowledge("Switch test")
    collections = {knowledge_id: "knowledge", "knowledge-bases": "knowledge-bases"}
    for number in range(3):
        path = work / f"document-{number}.txt"
        path.write_text(document_text(number))
        row = ui.upload(path, knowledge_id)
        assert row["data"]["status"] == "completed", row
        collections[f"file-{row['id']}"] = "file"
    memory = ui.add_memory("Prefers answers that name the granite harbor first.")
    collections[f"user-memory-{memory['user_id']}"] = "memory"
    return collections


@pytest.fixture(scope="module")
def stack(postgres_server_uri, tmp_path_factory):
    python = openwebui_python()
    work = tmp_path_factory.mktemp("switch-openwebui")
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    ensure_database(postgres_server_uri, "switch_openwebui")
    database_url = database_uri(postgres_server_uri, "switch_openwebui")
    with psycopg.connect(postgres_server_uri, autocommit=True) as connection:
        # Exact neighbours from every index (Open WebUI's ivfflat built on an empty table,
        # ours on the shadow): the answers compare rows, not two indexes' approximations.
        connection.execute("ALTER DATABASE switch_openwebui SET ivfflat.probes = 1000")
        connection.execute("ALTER DATABASE switch_openwebui SET hnsw.ef_search = 1000")
    embeddings = EmbeddingServer(dimensions=DIMENSIONS_A, api_key=API_KEY)
    embeddings.model_dimensions = {MODEL_A: DIMENSIONS_A, MODEL_B: DIMENSIONS_B}
    embeddings.start()
    data_dir = work / "openwebui-data"
    data_dir.mkdir()
    environment = openwebui_environment(
        data_dir, database_url, embeddings.base_url, API_KEY, MODEL_A, DIMENSIONS_A
    )
    ui = OpenWebUI(python=python, environment=environment, log_path=work / "openwebui.log")
    try:
        ui.start()
        collections = upload_deployment(ui, work)
        with psycopg.connect(database_url) as connection:
            rows = connection.execute(
                "SELECT collection_name, text, vector::text FROM document_chunk"
            ).fetchall()
        texts: dict[str, list[str]] = {}
        for collection, text, vector in rows:
            texts.setdefault(collection, []).append(text)
            # What the probes assume: Open WebUI embedded each chunk's text as it stored it.
            stored = np.array(vector.strip("[]").split(","), dtype=np.float32)
            assert np.allclose(
                stored, expected_embedding_f32(MODEL_A, text, DIMENSIONS_A), atol=1e-6
            )
        assert set(texts) == set(collections)
        probes = [
            probe
            for collection, kind in collections.items()
            for probe in probes_for(kind, collection, texts[collection])
        ]
        yield Stack(ui, embeddings, database_url, environment, probes, collections, work)
    finally:
        ui.stop()
        embeddings.stop()


def assert_all(searcher: Searcher, phase: str, verdict: str, at_least: int = 1) -> None:
    verdicts = searcher.verdicts(phase)
    others = [a for a in searcher.answers if a[0] == phase and a[2] != verdict]
    assert verdicts[verdict] >= at_least and not others, f"{phase}: {dict(verdicts)}; {others[:3]}"
    kinds = {(p.route, p.kind) for p in searcher.probes}
    assert searcher.kinds_answered(phase, verdict) == kinds


def test_switch_cutover_and_rollback_while_openwebui_searches(stack):
    config_a = stack.config()
    assert config_a["rag.embedding_model"] == f'"{MODEL_A}"'
    with Searcher(stack.ui.url, stack.ui.token, stack.probes) as searcher:
        searcher.phase = "before"
        searcher.wait_for_answers("before", 2 * len(stack.probes))
        # The build asks model B slowly, so Open WebUI is asked many times meanwhile.
        stack.embeddings.model_latency_seconds = {MODEL_B: 0.5}
        searcher.phase = "build"
        stack.run_switch(
            "--model", MODEL_B, "--dimension", str(DIMENSIONS_B), dimensions=DIMENSIONS_A
        )
        stack.embeddings.model_latency_seconds = {}
        assert stack.dimension("document_chunk_shadow") == DIMENSIONS_B
        searcher.wait_for_answers("build", len(stack.probes))

        searcher.phase = "cutover"
        printed = stack.run_switch(
            "--model",
            MODEL_B,
            "--dimension",
            str(DIMENSIONS_B),
            "--cutover",
            "--write-openwebui-settings",
            dimensions=DIMENSIONS_A,
        )
        assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={DIMENSIONS_B}" in printed
        assert stack.dimension("document_chunk") == DIMENSIONS_B
        # Only the model changed in Open WebUI's settings (the engine was openai already).
        assert stack.config() == {**config_a, "rag.embedding_model": f'"{MODEL_B}"'}

        searcher.phase = "restart to B"
        # Only the vector length changes in the environment, which still names model A:
        # the config table that the cutover wrote wins.
        stack.ui.restart(PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH=str(DIMENSIONS_B))
        searcher.phase = "after cutover"
        searcher.wait_for_answers("after cutover", 2 * len(stack.probes))

        searcher.phase = "rollback"
        printed = stack.run_switch(
            "--rollback", "--write-openwebui-settings", dimensions=DIMENSIONS_B
        )
        assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={DIMENSIONS_A}" in printed
        assert stack.dimension("document_chunk") == DIMENSIONS_A
        assert stack.config() == config_a

        searcher.phase = "restart to A"
        stack.ui.restart(PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH=str(DIMENSIONS_A))
        searcher.phase = "after rollback"
        searcher.wait_for_answers("after rollback", 2 * len(stack.probes))

    assert_all(searcher, "before", "A")
    assert_all(searcher, "build", "A", at_least=len(stack.probes))
    assert_all(searcher, "after cutover", "B")
    assert_all(searcher, "after rollback", "A")
    # Between a swap and the restart Open WebUI still embeds with the model it started with:
    # its answers are the old model's or none, never a search of one space with the other's
    # query.
    for phase in ("cutover", "restart to B", "rollback", "restart to A"):
        assert set(searcher.verdicts(phase)) <= {"A", "B", "error", "empty", "unreachable"}
    mixed = [answer for answer in searcher.answers if answer[2] == "mixed"]
    assert not mixed, mixed[:3]


def test_sigkill_during_the_build_leaves_openwebui_on_a_and_a_rerun_finishes(stack):
    stack.run_switch("--finish", dimensions=DIMENSIONS_A)
    stack.run_switch("--abandon", dimensions=DIMENSIONS_A)
    seen = len(stack.embeddings.requests)
    stack.embeddings.model_latency_seconds = {MODEL_B: 2.0}
    with Searcher(stack.ui.url, stack.ui.token, stack.probes) as searcher:
        searcher.phase = "build, killed"
        build = stack.switch(
            "--model", MODEL_B, "--dimension", str(DIMENSIONS_B), dimensions=DIMENSIONS_A
        )
        deadline = time.monotonic() + 120
        while not any(r.model == MODEL_B for r in stack.embeddings.requests[seen:]):
            assert build.poll() is None and time.monotonic() < deadline, "the build never asked B"
            time.sleep(0.1)
        build.send_signal(signal.SIGKILL)
        build.wait()
        stack.embeddings.model_latency_seconds = {}
        assert stack.dimension("document_chunk") == DIMENSIONS_A
        searcher.phase = "after kill"
        searcher.wait_for_answers("after kill", len(stack.probes))
        searcher.phase = "rerun"
        stack.run_switch(
            "--model", MODEL_B, "--dimension", str(DIMENSIONS_B), dimensions=DIMENSIONS_A
        )
    assert_all(searcher, "after kill", "A")
    assert set(searcher.verdicts("build, killed")) == {"A"}
    assert set(searcher.verdicts("rerun")) <= {"A"}
    with stack.connect() as connection:
        live, shadow = (
            connection.execute(
                f"SELECT collection_name, count(*) FROM {table} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            for table in ("document_chunk", "document_chunk_shadow")
        )
    assert shadow == live


def test_sigkill_of_a_cutover_waiting_for_its_lock_leaves_a(stack):
    assert stack.dimension("document_chunk_shadow") == DIMENSIONS_B
    config_a = stack.config()
    with (
        stack.connect() as holder,
        Searcher(stack.ui.url, stack.ui.token, stack.probes) as searcher,
    ):
        searcher.phase = "cutover, killed"
        # A reader that does not finish: the swap's ACCESS EXCLUSIVE lock waits behind it.
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE document_chunk IN ACCESS SHARE MODE")
        cutover = stack.switch(
            "--model",
            MODEL_B,
            "--dimension",
            str(DIMENSIONS_B),
            "--cutover",
            "--write-openwebui-settings",
            dimensions=DIMENSIONS_A,
        )
        deadline = time.monotonic() + 120
        with stack.connect() as watcher:
            while not watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'LOCK TABLE%ACCESS EXCLUSIVE%'"
            ).fetchone():
                assert cutover.poll() is None and time.monotonic() < deadline, (
                    "the cutover never waited for its lock"
                )
                time.sleep(0.05)
        cutover.send_signal(signal.SIGKILL)
        cutover.wait()
        holder.execute("COMMIT")
        searcher.phase = "after kill"
        searcher.wait_for_answers("after kill", len(stack.probes))
    assert stack.dimension("document_chunk") == DIMENSIONS_A
    assert stack.dimension("document_chunk_shadow") == DIMENSIONS_B
    assert stack.dimension("document_chunk_previous") is None
    assert stack.config() == config_a
    assert set(searcher.verdicts("cutover, killed")) <= {"A"}
    assert_all(searcher, "after kill", "A")
