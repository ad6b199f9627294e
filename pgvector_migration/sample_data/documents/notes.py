"""Reading notes helpers for the bundled sample documents.

This small module is itself a sample document: it exercises the
"source code" text type. It has no third-party dependencies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WORD_RE = re.compile(r"[A-Za-z']+")


@dataclass
class Note:
    """A short note attached to a passage of a public-domain text."""

    source: str
    passage: str
    tags: list[str] = field(default_factory=list)

    def word_count(self) -> int:
        """Return the number of words in the noted passage."""
        return len(WORD_RE.findall(self.passage))


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences on terminal punctuation.

    >>> split_sentences("Four score. And seven years ago!")
    ['Four score.', 'And seven years ago!']
    """
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in parts if p]


def top_words(text: str, n: int = 5) -> list[tuple[str, int]]:
    """Return the ``n`` most frequent lowercase words of ``text``."""
    counts: dict[str, int] = {}
    for word in WORD_RE.findall(text.lower()):
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


if __name__ == "__main__":
    note = Note(
        source="Gettysburg Address",
        passage="government of the people, by the people, for the people",
        tags=["lincoln", "1863"],
    )
    print(note.word_count(), top_words(note.passage, 2))
    print(split_sentences("Four score. And seven years ago!"))
