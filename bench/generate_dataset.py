"""Generate a scaled Open WebUI deployment for the throughput benchmark.

A SQLite `webui.db` with Open WebUI's schema (the one `pgvector_migration.sample_data` builds)
plus an uploads folder: N text files of synthetic but varied English (words drawn with their
real frequencies from the bundled public-domain documents, each file with its own topic words,
sentences, commas and paragraphs of ~2-3 KB), stored in `file.data.content` as Open WebUI
stores extracted text. Lengths are log-normal around ~36 KB (1.5 KB to 400 KB): with these
paragraphs the recursive splitter at chunk_size 1000 / overlap 100 makes ~48 chunks of ~790
characters per file, so 2000 files are ~97k file chunks (a file's chunks are written again in
each of its knowledge bases, so document_chunk ends up with about twice as many rows).

Files are spread over K knowledge bases of uneven sizes (~10% in two, ~10% in none), ~2% are
exact copies of another file's content under a new id (the embedding cache's case), and a few
users have memories.

Everything comes from one seeded RNG: the same arguments always give the same deployment.

    python bench/generate_dataset.py --files 2000 --knowledge-bases 20 --out /tmp/openwebui
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sqlite3
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pgvector_migration.sample_data import OPENWEBUI_SCHEMA

DOCUMENTS_DIR = (
    Path(__file__).resolve().parents[1] / "pgvector_migration" / "sample_data" / "documents"
)
CONTAINER_UPLOAD_DIR = "/app/backend/data/uploads"
DEFAULT_SEED = 20_240_604
MEAN_FILE_BYTES = 36_000
# Separators after a word, with their probabilities: most words end in a space, some end a
# clause, a sentence or a paragraph.
SEPARATORS = (" ", ", ", ". ", ".\n\n", "? ", "; ", ": ", "\n")
SEPARATOR_P = (0.8545, 0.06, 0.07, 0.0025, 0.004, 0.006, 0.002, 0.001)
SENTENCE_ENDS = (2, 3, 4)  # indexes into SEPARATORS after which a capital follows
# Common words, added to the documents' vocabulary (and enough on their own without them).
FALLBACK_TEXT = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if so "
    "no will more time other into could what some about than them only its our these may "
    "first any new like two then now people over such most also after way many must years "
    "work through back much where before very should well long state great under even good "
    "government power public world water river country history letter report system market"
)


@dataclass
class DatasetSummary:
    """What was generated, for the benchmark's report."""

    out: str
    files: int
    knowledge_bases: int
    duplicate_files: int
    files_in_no_knowledge_base: int
    files_in_two_knowledge_bases: int
    memories: int
    memory_users: int
    total_bytes: int
    mean_file_bytes: float
    seconds: float
    expected_collections: list[str] = field(default_factory=list, repr=False)


def vocabulary() -> tuple[list[str], np.ndarray]:
    """Lower-case ASCII words of the bundled documents with their counts (the fallback list
    when the documents are not there), sorted so the order never depends on the file system."""
    counts: Counter[str] = Counter()
    for path in sorted(DOCUMENTS_DIR.glob("*")):
        if path.suffix not in (".txt", ".md", ".html", ".csv"):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        if path.suffix == ".html":
            text = re.sub(r"<[^>]+>|&\w+;", " ", text)
        counts.update(word.lower() for word in re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text))
    for word in FALLBACK_TEXT.split():
        counts[word] += 1
    words = sorted(w for w in counts if len(w) <= 24)
    return words, np.array([counts[w] for w in words], dtype=np.float64)


class TextSampler:
    """Builds texts by gathering bytes of pre-encoded words and separators with numpy, so a
    45 KB file costs a handful of vectorised operations, not 8,000 Python string joins."""

    def __init__(self, words: list[str], weights: np.ndarray) -> None:
        self.size = len(words)
        pieces = [w.encode() for w in words]
        pieces += [w.capitalize().encode() for w in words]
        pieces += [s.encode() for s in SEPARATORS]
        self.lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))
        self.buffer = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        self.weights = weights / weights.sum()
        self.separator_p = np.array(SEPARATOR_P) / sum(SEPARATOR_P)
        word_bytes = float(self.weights @ self.lengths[: self.size])
        separator_bytes = float(
            self.separator_p @ self.lengths[2 * self.size : 2 * self.size + len(SEPARATORS)]
        )
        self.bytes_per_word = word_bytes + separator_bytes

    def text(self, rng: np.random.Generator, target_bytes: int) -> str:
        n = max(8, int(target_bytes / self.bytes_per_word))
        # Each file has its own topic: a few dozen words much more frequent than usual.
        weights = self.weights.copy()
        topic = rng.choice(self.size, size=min(40, self.size), replace=False)
        weights[topic] *= rng.uniform(5, 25, size=topic.size)
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        word_ids = np.minimum(np.searchsorted(cdf, rng.random(n)), self.size - 1)
        separator_ids = rng.choice(len(SEPARATORS), size=n, p=self.separator_p)
        separator_ids[-1] = 3  # end with a full stop
        starts_sentence = np.isin(separator_ids[:-1], SENTENCE_ENDS)
        word_ids[1:][starts_sentence] += self.size
        word_ids[0] += self.size
        sequence = np.empty(2 * n, dtype=np.int64)
        sequence[0::2] = word_ids
        sequence[1::2] = separator_ids + 2 * self.size
        lengths = self.lengths[sequence]
        ends = np.cumsum(lengths)
        gather = np.repeat(self.offsets[sequence] - (ends - lengths), lengths)
        gather += np.arange(int(ends[-1]))
        return self.buffer[gather].tobytes().decode("ascii").rstrip()

    def title(self, rng: np.random.Generator, words: int) -> str:
        ids = np.searchsorted(np.cumsum(self.weights), rng.random(words))
        ids = np.minimum(ids, self.size - 1) + self.size
        return " ".join(
            self.buffer[self.offsets[i] : self.offsets[i] + self.lengths[i]].tobytes().decode()
            for i in ids
        )


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def generate(
    out: Path,
    files: int = 2000,
    knowledge_bases: int = 20,
    seed: int = DEFAULT_SEED,
    mean_file_bytes: int = MEAN_FILE_BYTES,
    duplicate_fraction: float = 0.02,
    memory_users: int = 4,
    force: bool = False,
) -> DatasetSummary:
    """Write `{out}/webui.db` and `{out}/uploads/`; returns what was generated."""
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (use --force to replace it)")
        shutil.rmtree(out)
    uploads = out / "uploads"
    uploads.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sampler = TextSampler(*vocabulary())
    users = [_uuid(rng) for _ in range(max(1, memory_users))]
    created = 1_760_000_000

    knowledge = []
    for k in range(knowledge_bases):
        name = f"{sampler.title(rng, 2)} {k + 1}"
        description = sampler.text(rng, 120) if k % 3 else ""
        knowledge.append((_uuid(rng), users[k % len(users)], name, description))
    # Knowledge bases of uneven sizes, as in a real deployment.
    knowledge_p = rng.lognormal(0.0, 0.7, size=max(1, knowledge_bases))
    knowledge_p /= knowledge_p.sum()

    sigma = 0.6
    mu = np.log(mean_file_bytes) - sigma**2 / 2
    sizes = np.clip(rng.lognormal(mu, sigma, size=files), 1_500, 400_000).astype(int)
    file_rows, membership = [], []
    texts: list[str] = []
    duplicates = none = two = 0
    total_bytes = 0
    for i in range(files):
        file_id = _uuid(rng)
        if texts and rng.random() < duplicate_fraction:
            text = texts[int(rng.integers(len(texts)))]
            duplicates += 1
        else:
            text = sampler.text(rng, int(sizes[i]))
            texts.append(text)
        filename = "-".join(sampler.title(rng, 3).lower().split()) + f"-{i:05d}.txt"
        stored_name = f"{file_id}_{filename}"
        encoded = text.encode()
        (uploads / stored_name).write_bytes(encoded)
        total_bytes += len(encoded)
        meta = {
            "name": filename,
            "content_type": "text/plain",
            "size": len(encoded),
            "data": {},
            "collection_name": f"file-{file_id}",
        }
        file_rows.append(
            (
                file_id,
                users[i % len(users)],
                hashlib.sha256(encoded).hexdigest(),
                filename,
                f"{CONTAINER_UPLOAD_DIR}/{stored_name}",
                json.dumps({"status": "completed", "content": text}),
                json.dumps(meta),
                created + i,
                created + i,
            )
        )
        draw = rng.random() if knowledge_bases else 0.0
        if draw < 0.10 or not knowledge_bases:
            none += 1
            continue
        count = 2 if draw < 0.20 and knowledge_bases > 1 else 1
        two += count == 2
        for k in rng.choice(knowledge_bases, size=count, replace=False, p=knowledge_p):
            membership.append((knowledge[int(k)][0], file_id, created + i))

    memories = []
    for u, user_id in enumerate(users):
        for m in range(3 + u % 3):
            path = None if m % 2 else f"notes/{sampler.title(rng, 1).lower()}"
            memories.append((_uuid(rng), user_id, path, sampler.text(rng, 90), created + m))

    partial = out / "webui.db.partial"
    connection = sqlite3.connect(partial)
    try:
        connection.executescript(OPENWEBUI_SCHEMA)
        connection.executemany("INSERT INTO file VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", file_rows)
        connection.executemany(
            "INSERT INTO knowledge VALUES (?, ?, ?, ?, '{}', ?, ?)",
            [
                (kid, uid, n, d, created + k, created + k)
                for k, (kid, uid, n, d) in enumerate(knowledge)
            ],
        )
        connection.executemany(
            "INSERT INTO knowledge_file VALUES (?, ?, ?, ?, ?, ?)",
            [
                (str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kid}:{fid}")), users[0], kid, fid, t, t)
                for kid, fid, t in membership
            ],
        )
        connection.executemany(
            "INSERT INTO memory VALUES (?, ?, 'context', ?, ?, NULL, ?, ?)",
            [(mid, uid, path, content, t, t) for mid, uid, path, content, t in memories],
        )
        connection.execute(
            "INSERT INTO config VALUES ('rag.chunk_size', '1000', ?), "
            "('rag.chunk_overlap', '100', ?)",
            (created, created),
        )
        connection.commit()
    finally:
        connection.close()
    partial.rename(out / "webui.db")

    used_knowledge = sorted({kid for kid, _, _ in membership})
    expected = sorted(
        [f"file-{row[0]}" for row in file_rows]
        + used_knowledge
        + (["knowledge-bases"] if knowledge else [])
        + [f"user-memory-{uid}" for uid in sorted({m[1] for m in memories})]
    )
    summary = DatasetSummary(
        out=str(out),
        files=files,
        knowledge_bases=knowledge_bases,
        duplicate_files=duplicates,
        files_in_no_knowledge_base=none,
        files_in_two_knowledge_bases=two,
        memories=len(memories),
        memory_users=len(users),
        total_bytes=total_bytes,
        mean_file_bytes=round(total_bytes / max(1, files), 1),
        seconds=round(time.perf_counter() - started, 2),
        expected_collections=expected,
    )
    (out / "manifest.json").write_text(json.dumps(asdict(summary), indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--knowledge-bases", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/.work/openwebui"))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--mean-file-bytes", type=int, default=MEAN_FILE_BYTES)
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        args.files,
        args.knowledge_bases,
        seed=args.seed,
        mean_file_bytes=args.mean_file_bytes,
        force=args.force,
    )
    shown = {k: v for k, v in asdict(summary).items() if k != "expected_collections"}
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
