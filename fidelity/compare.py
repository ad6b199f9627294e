"""Compare two `document_chunk` tables collection by collection: Open WebUI's and ours.

Pure functions over rows `(id, collection_name, text, vmetadata, vector)`; the runner reads the
rows and prints what these return.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

EXAMPLES_PER_KEY = 3
# Keys that order the rows of one text so that repeated texts are paired position by position.
POSITION_KEYS = ("page", "row", "start_index")
ABSENT = "<absent>"


@dataclass
class Row:
    id: str
    collection: str
    text: str
    metadata: dict
    vector: str


@dataclass
class CollectionComparison:
    collection: str
    theirs: int
    ours: int
    reproduced: int  # their chunks (file, text) we have, as a multiset
    vectors_equal: int  # of the paired rows
    ids_equal: int  # of the paired rows
    differing_keys: dict[str, int] = field(default_factory=dict)  # key -> paired rows differing
    examples: dict[str, list] = field(default_factory=dict)  # key -> [[theirs, ours], ...]

    @property
    def share(self) -> float:
        return 1.0 if self.theirs == 0 and self.ours == 0 else self.reproduced / max(self.theirs, 1)


def _position(row: Row) -> tuple:
    """Any total order does: both sides of a pair are sorted by the same one."""
    return tuple(str(row.metadata.get(key, "")) for key in POSITION_KEYS)


def _chunk(row: Row) -> tuple[str, str]:
    """What a chunk is, across the two tables: its text and the file it came from (Open WebUI's
    chunk ids are random; two files of one knowledge base may share a text)."""
    return str(row.metadata.get("file_id", "")), row.text


def compare_collection(collection: str, theirs: list[Row], ours: list[Row]) -> CollectionComparison:
    """Share of their chunks (text of a file, as a multiset) that we reproduce, and for the
    rows of the same chunk (paired in the order of page, row and start index) which metadata
    values, vectors and ids differ."""
    their_chunks, our_chunks = Counter(map(_chunk, theirs)), Counter(map(_chunk, ours))
    result = CollectionComparison(
        collection=collection,
        theirs=len(theirs),
        ours=len(ours),
        reproduced=sum((their_chunks & our_chunks).values()),
        vectors_equal=0,
        ids_equal=0,
    )
    by_chunk_theirs, by_chunk_ours = defaultdict(list), defaultdict(list)
    for row in theirs:
        by_chunk_theirs[_chunk(row)].append(row)
    for row in ours:
        by_chunk_ours[_chunk(row)].append(row)
    differing: Counter = Counter()
    for chunk, their_rows in by_chunk_theirs.items():
        pairs = zip(
            sorted(their_rows, key=_position),
            sorted(by_chunk_ours.get(chunk, []), key=_position),
            strict=False,
        )
        for their_row, our_row in pairs:
            result.vectors_equal += their_row.vector == our_row.vector
            result.ids_equal += their_row.id == our_row.id
            for key in sorted(set(their_row.metadata) | set(our_row.metadata)):
                their_value = their_row.metadata.get(key, ABSENT)
                our_value = our_row.metadata.get(key, ABSENT)
                if their_value != our_value:
                    differing[key] += 1
                    examples = result.examples.setdefault(key, [])
                    if len(examples) < EXAMPLES_PER_KEY:
                        examples.append([_short(their_value), _short(our_value)])
    result.differing_keys = dict(differing)
    return result


def _short(value: object, limit: int = 120) -> object:
    """A metadata value for the report: as it is, or its text cut at `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    return value if len(text) <= limit else text[:limit]


def compare_tables(theirs: list[Row], ours: list[Row]) -> list[CollectionComparison]:
    """One comparison per collection that either table holds."""
    grouped_theirs, grouped_ours = defaultdict(list), defaultdict(list)
    for row in theirs:
        grouped_theirs[row.collection].append(row)
    for row in ours:
        grouped_ours[row.collection].append(row)
    return [
        compare_collection(name, grouped_theirs.get(name, []), grouped_ours.get(name, []))
        for name in sorted(set(grouped_theirs) | set(grouped_ours))
    ]


def same_search_results(theirs: list[dict], ours: list[dict]) -> bool:
    """Same hits in the same order: texts, cosine scores (to 1e-5), files and positions.
    Ties in score may come back in either order, so hits of equal score compare as sets."""
    if len(theirs) != len(ours):
        return False

    def grouped(hits: list[dict]) -> list:
        groups: dict[float, list] = {}
        for hit in hits:
            key = round(hit["distance"], 5)
            groups.setdefault(key, []).append(
                (hit["text"], str(hit["file_id"]), str(hit["start_index"]))
            )
        return [(score, sorted(group)) for score, group in groups.items()]

    return grouped(theirs) == grouped(ours)
