"""What a migration will cost before it runs: work, tokens, money and time.

Pure computation over figures a dry run gathered (units selected, texts not in the embedding
cache and their token counts, the engine's rate limits or measured speed); the dry run prints
`Estimate.lines()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# OpenAI's standard list prices in US dollars per million input tokens (OpenAI's pricing page as
# cited by price trackers in May 2026; unchanged since the -3 models' launch in January 2024).
# Batch API and other discounts are not applied; --price-per-million overrides.
LIST_PRICES_TAKEN = "May 2026"
OPENAI_LIST_PRICES_PER_MILLION = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}


@dataclass(frozen=True)
class EngineSpeed:
    """How fast the engine can go: a provider's per-minute budgets (from its x-ratelimit-limit-*
    headers or our configured caps), or texts per second measured on the local model, plus one
    request's latency when nothing else is known."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    texts_per_second: float | None = None
    request_seconds: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Estimate:
    """The work and cost of one run, as the dry run found it."""

    files: int
    units: int
    collections: int
    texts: int
    texts_cached: int
    tokens: int
    tokenizer: str
    engine: str
    model: str
    price_per_million: float | None
    price_source: str
    speed: EngineSpeed
    texts_per_request: int
    requests_in_flight: int = 1

    @property
    def texts_to_embed(self) -> int:
        return self.texts - self.texts_cached

    @property
    def cost(self) -> float | None:
        if self.price_per_million is None:
            return None
        return self.tokens * self.price_per_million / 1_000_000

    @property
    def requests(self) -> int:
        return math.ceil(self.texts_to_embed / max(1, self.texts_per_request))

    def seconds(self) -> float | None:
        """Embedding time: the slower of the token and request budgets for a provider, the
        measured speed for the local model, else requests at the probe's latency."""
        if self.texts_to_embed == 0:
            return 0.0
        speed = self.speed
        if speed.texts_per_second:
            return self.texts_to_embed / speed.texts_per_second
        budgets = []
        if speed.tokens_per_minute:
            budgets.append(60 * self.tokens / speed.tokens_per_minute)
        if speed.requests_per_minute:
            budgets.append(60 * self.requests / speed.requests_per_minute)
        if budgets:
            return max(budgets)
        if speed.request_seconds:
            return self.requests * speed.request_seconds / max(1, self.requests_in_flight)
        return None

    def lines(self) -> list[str]:
        cost = self.cost
        seconds = self.seconds()
        lines = [
            "estimate:",
            f"  files to process: {self.files:,}",
            f"  collections to write: {self.units:,} (file, collection) units in "
            f"{self.collections:,} collections",
            f"  texts: {self.texts:,}, of them in the embedding cache or repeated: "
            f"{self.texts_cached:,}, to embed: {self.texts_to_embed:,}",
            f"  tokens to embed: {self.tokens:,} ({self.tokenizer})",
        ]
        if self.engine == "":
            lines.append(f"  cost: none (the local model {self.model})")
        elif cost is None:
            lines.append(
                f"  cost: unknown for {self.model} (no list price): pass --price-per-million"
            )
        else:
            lines.append(
                f"  cost: ${cost:,.4f} at ${self.price_per_million:g} per million tokens "
                f"({self.price_source})"
            )
        if seconds is None:
            lines.append(
                "  time: unknown (the provider sent no x-ratelimit-limit-* headers and the "
                "probe's latency was not measured)"
            )
        else:
            lines.append(f"  time to embed: {describe_seconds(seconds)} ({self.speed.source})")
        lines.append(
            "  (the knowledge-base and memory collections, a few short texts, are not counted)"
        )
        return lines

    def text(self) -> str:
        return "\n".join(self.lines())


def list_price(engine: str, model: str) -> tuple[float | None, str]:
    """A known per-million-token price for the model and where it comes from."""
    if engine == "openai" and model in OPENAI_LIST_PRICES_PER_MILLION:
        return (
            OPENAI_LIST_PRICES_PER_MILLION[model],
            f"OpenAI's list price for {model}, taken {LIST_PRICES_TAKEN}",
        )
    return None, ""


def describe_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"about {round(minutes)} min"
    return f"about {minutes / 60:.1f} h"
