"""Which knowledge bases each benchmark document goes into: the shape of real deployments.

Real Open WebUI deployments hold hundreds to thousands of small knowledge bases (one or a few
per user, a few files each) next to a few large shared ones, some files in several knowledge
bases, and files uploaded into chats that belong to no knowledge base. The variants put the
same files in other shapes, to measure what the number of knowledge bases alone costs.

Pure functions of the document names (and sizes): the same corpus gives the same shape.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SEED = 13
LARGE_KNOWLEDGE_BASES = ("Engineering wiki", "Product manuals", "Support answers")
LARGE_SHARE = 0.36  # of the documents, spread over the large knowledge bases
STANDALONE_SHARE = 0.04  # uploaded into a chat, in no knowledge base
SHARED_SHARE = 0.08  # also added to a second knowledge base
SMALL_SIZES = (1, 1, 2, 2, 2, 3, 3, 4, 5, 6)  # files in a user's own knowledge base


def deployment_shape(names: Sequence[str], seed: int = SEED) -> dict[str, list[str]]:
    """Each document's knowledge bases, the one it is uploaded into first ([] for none)."""
    rng = random.Random(seed)
    order = sorted(names)
    rng.shuffle(order)
    standalone = round(len(order) * STANDALONE_SHARE)
    large = round(len(order) * LARGE_SHARE)
    shape: dict[str, list[str]] = {name: [] for name in order[:standalone]}
    for number, name in enumerate(order[standalone : standalone + large]):
        shape[name] = [LARGE_KNOWLEDGE_BASES[number % len(LARGE_KNOWLEDGE_BASES)]]
    rest = order[standalone + large :]
    small: list[str] = []
    while rest:
        size = rng.choice(SMALL_SIZES)
        knowledge = f"User {len(small) + 1:03d} notes"
        small.append(knowledge)
        for name in rest[:size]:
            shape[name] = [knowledge]
        rest = rest[size:]
    every = [*LARGE_KNOWLEDGE_BASES, *small]
    in_some = [name for name in order if shape[name]]
    for name in rng.sample(in_some, round(len(in_some) * SHARED_SHARE)):
        other = rng.choice([k for k in every if k not in shape[name]])
        shape[name].append(other)
    return shape


def few_and_many(names: Sequence[str], files: int, few: int, many: int) -> tuple[dict, dict]:
    """The same `files` documents (spread evenly over the sorted names) in `few` and in `many`
    knowledge bases, each file in exactly one: {knowledge base: [documents]} twice."""
    ordered = sorted(names)
    if files > len(ordered):
        raise ValueError(f"asked for {files} files, the deployment has {len(ordered)}")
    chosen = [ordered[i * len(ordered) // files] for i in range(files)]

    def spread(count: int, label: str) -> dict[str, list[str]]:
        shape: dict[str, list[str]] = {f"{label} {k + 1:04d}": [] for k in range(count)}
        keys = list(shape)
        for number, name in enumerate(chosen):
            shape[keys[number % count]].append(name)
        return shape

    return spread(few, "Few"), spread(many, "Many")


def small_complete(sizes: dict[str, int], knowledge_bases: int, pool: int) -> dict:
    """`knowledge_bases` small knowledge bases over the `pool` smallest documents: one file
    each, every third a second one (files recur across knowledge bases, as shared files do)."""
    smallest = sorted(sizes, key=lambda name: (sizes[name], name))[:pool]
    if not smallest:
        raise ValueError("no documents to build small knowledge bases from")
    shape = {}
    for k in range(knowledge_bases):
        files = [smallest[k % len(smallest)]]
        if k % 3 == 2 and len(smallest) > 1:
            files.append(smallest[(k * 7 + 3) % len(smallest)])
            if files[1] == files[0]:
                files.pop()
        shape[f"Small {k + 1:04d}"] = files
    return shape
