"""The dry run's look at the embedding engine: present, reachable, accepting its key, and how
fast it can go, with at most one request to a provider.

A local model is loaded (a missing one is a configuration error naming RAG_EMBEDDING_MODEL) and
timed on a few of the texts the run would embed. A provider gets one short request, without
retries: its answer gives the model's dimension and, in its x-ratelimit-limit-* headers, the
budget the run would be paced to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.errors import EmbeddingError, KeyRefusedError
from pgvector_migration.embedding.pacing import header_int
from pgvector_migration.embedding.registry import engine_for, setting_name
from pgvector_migration.pipeline.estimate import EngineSpeed
from pgvector_migration.settings import RagSettings, SettingsError

PROBE_TEXT = "dimension probe"
# Texts encoded to measure the local model: enough to average out, few enough for seconds.
SPEED_SAMPLE_TEXTS = 64
OPENAI_API_HOST = "api.openai.com"


@dataclass(frozen=True)
class EngineProbe:
    """What the probe learned: the model's vector length and the provider's budget (or, for a
    local model, nothing yet: its speed is measured on the run's own texts)."""

    dimension: int
    speed: EngineSpeed


def _caps(configured: int | None, learned: int | None) -> int | None:
    values = [value for value in (configured, learned) if value]
    return min(values) if values else None


def _per_minute(value: int | None) -> str:
    return f"{value:,}" if value else "unlimited"


def probe_engine(
    dispatcher: EmbeddingDispatcher,
    settings: RagSettings,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    requests_in_flight: int = 1,
) -> EngineProbe:
    """One request to a provider (none for the local model, already loaded by the dispatcher);
    a refused key or an unreachable URL is a `SettingsError` naming the setting."""
    if not dispatcher.is_api:
        return EngineProbe(dispatcher.embedder.dimension(), EngineSpeed())
    engine = engine_for(settings)
    url_env, key_env = setting_name(engine.url_setting), setting_name(engine.key_setting)
    key = getattr(settings, engine.key_setting)
    base_url = getattr(settings, engine.url_setting) or ""
    if settings.embedding_engine == "openai" and not key and OPENAI_API_HOST in base_url:
        raise SettingsError(
            f"{key_env} is empty but RAG_EMBEDDING_ENGINE=openai sends to {OPENAI_API_HOST}, "
            "which needs a key: set it (or the config table's rag.openai.api_key)"
        )
    started = time.monotonic()
    try:
        response = dispatcher.embedder.request([PROBE_TEXT])
    except EmbeddingError as error:
        if isinstance(error, KeyRefusedError):
            state = "is empty" if not key else "was refused"
            raise SettingsError(f"{key_env} {state}: {error}") from error
        raise SettingsError(f"{url_env}: the dry run's probe request failed: {error}") from error
    latency = time.monotonic() - started
    headers = response.headers
    rpm = _caps(requests_per_minute, header_int(headers, "x-ratelimit-limit-requests"))
    tpm = _caps(tokens_per_minute, header_int(headers, "x-ratelimit-limit-tokens"))
    if rpm or tpm:
        source = (
            f"at the provider's budget of {_per_minute(rpm)} requests and {_per_minute(tpm)} "
            "tokens per minute (x-ratelimit-limit-* headers of the probe, or the configured "
            "caps); runs reach about 0.9 of it"
        )
    else:
        source = (
            f"no rate-limit headers: {latency:.2f} s per request as the probe took, "
            f"{requests_in_flight} at once"
        )
    speed = EngineSpeed(
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        request_seconds=latency,
        source=source,
    )
    return EngineProbe(len(response.vectors[0]), speed)


def measure_local_speed(dispatcher: EmbeddingDispatcher, texts: Sequence[str]) -> EngineSpeed:
    """Texts per second of the local model on up to SPEED_SAMPLE_TEXTS of the run's texts,
    after one warm-up text (the first call pays for lazy initialisation)."""
    sample = list(texts[:SPEED_SAMPLE_TEXTS])
    if not sample:
        return EngineSpeed(source="nothing to embed")
    dispatcher.embedder.embed(sample[:1])
    started = time.monotonic()
    dispatcher.embedder.embed(sample)
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = len(sample) / elapsed
    return EngineSpeed(
        texts_per_second=rate,
        source=f"at {rate:.1f} texts/s, measured on {len(sample)} of these texts on this machine",
    )
