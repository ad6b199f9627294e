"""The `ollama` and `azure_openai` engines against real loopback servers: the requests are the
ones Open WebUI 0.12.4 sends (retrieval/utils.py, agenerate_ollama_batch_embeddings and
agenerate_azure_openai_batch_embeddings, behind generate_embeddings), the vectors come back in
order, and failures are retried, split or reported the way the OpenAI engine's are."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest

from pgvector_migration.embedding.api import APIEmbedder
from pgvector_migration.embedding.azure_openai import AzureOpenAIEmbedder
from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.errors import EmbeddingError, TransientEmbeddingError
from pgvector_migration.embedding.model_key import compose_model_key
from pgvector_migration.embedding.ollama import OllamaEmbedder
from pgvector_migration.embedding.registry import check_engine_settings
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.setting_defaults import default_ollama_base_url
from pgvector_migration.settings import (
    SettingsError,
    flatten_legacy_config,
    resolve_rag_settings,
)
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.provider_servers import AzureOpenAIServer, OllamaServer

DIMENSIONS = 8
OLLAMA_MODEL = "nomic-embed-text"
DEPLOYMENT = "embeddings-small"
API_VERSION = "2024-10-21"
AZURE_KEY = "azure-secret"
TEXTS = ["first chunk", "zweiter Abschnitt – ü", "third chunk\twith a tab", "🙂 emoji"]


def ollama_config(server: OllamaServer, **extra) -> dict:
    return {
        "rag.embedding_engine": "ollama",
        "rag.embedding_model": OLLAMA_MODEL,
        "rag.ollama.base_url": server.base_url,
        **extra,
    }


def azure_config(server: AzureOpenAIServer, **extra) -> dict:
    return {
        "rag.embedding_engine": "azure_openai",
        "rag.embedding_model": DEPLOYMENT,
        "rag.azure_openai.base_url": server.base_url,
        "rag.azure_openai.api_key": AZURE_KEY,
        "rag.azure_openai.api_version": API_VERSION,
        **extra,
    }


@contextmanager
def dispatching(config: dict, environ: dict | None = None, **resource_options):
    options = {"max_in_flight": 1, "max_retries": 4, "request_timeout_seconds": 5}
    resource = EmbeddingResource(**{**options, **resource_options})
    settings = resource.effective_settings(resolve_rag_settings(config, environ or {}))
    dispatcher = resource.dispatcher(settings)
    try:
        yield dispatcher
    finally:
        dispatcher.close()


def assert_vectors(model: str, inputs: list[str], vectors) -> None:
    assert len(vectors) == len(inputs)
    for text, vector in zip(inputs, vectors, strict=True):
        assert vector.dtype == np.float32
        np.testing.assert_array_equal(vector, np.float32(expected_embedding(model, text, 8)))


def aiohttp_body(payload: dict) -> bytes:
    """What Open WebUI's aiohttp session puts on the wire for `json=payload`."""
    return json.dumps(payload).encode("utf-8")


# --- Ollama -------------------------------------------------------------------------------


def test_ollama_request_is_what_open_webui_sends():
    with OllamaServer(DIMENSIONS) as server, dispatching(ollama_config(server)) as dispatcher:
        assert isinstance(dispatcher.embedder, OllamaEmbedder)
        assert_vectors(OLLAMA_MODEL, TEXTS, dispatcher.embed(TEXTS))
        (request,) = server.requests
        assert request.method == "POST" and request.path == "/api/embed"
        assert request.body == {"input": TEXTS, "model": OLLAMA_MODEL, "truncate": True}
        assert request.raw_body == aiohttp_body(
            {"input": TEXTS, "model": OLLAMA_MODEL, "truncate": True}
        )
        assert request.headers["content-type"] == "application/json"
        assert "authorization" not in request.headers  # no key, no header
        assert "api-key" not in request.headers
        assert dispatcher.stats.tokens > 0  # prompt_eval_count


def test_ollama_key_is_a_stripped_bearer_token_from_env_and_trailing_slash_is_dropped():
    with OllamaServer(DIMENSIONS, api_key="ollama-key") as server:
        environ = {
            "RAG_EMBEDDING_ENGINE": "ollama",
            "RAG_EMBEDDING_MODEL": OLLAMA_MODEL,
            "RAG_OLLAMA_BASE_URL": server.base_url + "/",
            "RAG_OLLAMA_API_KEY": "  ollama-key \n",
        }
        with dispatching({}, environ) as dispatcher:
            assert_vectors(OLLAMA_MODEL, ["a"], dispatcher.embed(["a"]))
        assert server.requests[0].path == "/api/embed"
        assert server.requests[0].headers["authorization"] == "Bearer ollama-key"


def test_ollama_content_prefix_is_prepended_without_a_field_name():
    environ = {"RAG_EMBEDDING_CONTENT_PREFIX": "search_document: "}
    with (
        OllamaServer(DIMENSIONS) as server,
        dispatching(ollama_config(server), environ) as dispatcher,
    ):
        prefixed = [f"search_document: {text}" for text in TEXTS]
        assert_vectors(OLLAMA_MODEL, prefixed, dispatcher.embed(TEXTS))
        assert server.requests[0].body == {
            "input": prefixed,
            "model": OLLAMA_MODEL,
            "truncate": True,
        }
        assert dispatcher.model_key == compose_model_key(
            "ollama", OLLAMA_MODEL, "search_document: "
        )


def test_ollama_prefix_goes_in_the_named_field_when_a_field_name_is_set():
    environ = {
        "RAG_EMBEDDING_CONTENT_PREFIX": "search_document: ",
        "RAG_EMBEDDING_PREFIX_FIELD_NAME": "prompt",
    }
    with (
        OllamaServer(DIMENSIONS) as server,
        dispatching(ollama_config(server), environ) as dispatcher,
    ):
        assert_vectors(OLLAMA_MODEL, TEXTS, dispatcher.embed(TEXTS))
        payload = {
            "input": TEXTS,
            "model": OLLAMA_MODEL,
            "truncate": True,
            "prompt": "search_document: ",
        }
        assert server.requests[0].raw_body == aiohttp_body(payload)
        assert dispatcher.model_key.endswith("|field=prompt")


def test_ollama_retries_429_and_503_then_succeeds():
    with OllamaServer(DIMENSIONS, retry_after_seconds=0.01) as server:
        server.fail_next(2, status=429)
        server.fail_next(1, status=503)
        with dispatching(ollama_config(server)) as dispatcher:
            assert_vectors(OLLAMA_MODEL, TEXTS, dispatcher.embed(TEXTS))
            assert dispatcher.stats.rate_limited == 2
            assert dispatcher.stats.retries == 3
        assert [r.status for r in server.requests] == [429, 429, 503, 200]


def test_ollama_401_is_not_retried_and_names_url_and_status():
    with OllamaServer(DIMENSIONS, api_key="right") as server:
        config = ollama_config(server, **{"rag.ollama.api_key": "wrong"})
        with dispatching(config) as dispatcher, pytest.raises(EmbeddingError) as raised:
            dispatcher.embed(["a"])
        assert not isinstance(raised.value, TransientEmbeddingError)
        message = str(raised.value)
        assert f"{server.base_url}/api/embed" in message
        assert "HTTP 401" in message and "unauthorized" in message
        assert server.request_count == 1


def test_ollama_missing_model_reports_ollamas_error():
    with OllamaServer(DIMENSIONS, models={"other"}) as server:
        with dispatching(ollama_config(server)) as dispatcher, pytest.raises(EmbeddingError) as e:
            dispatcher.dimension()
        assert "HTTP 404" in str(e.value) and "try pulling it first" in str(e.value)
        assert server.request_count == 1


def test_ollama_dimension_probe():
    with OllamaServer(DIMENSIONS) as server, dispatching(ollama_config(server)) as dispatcher:
        assert dispatcher.dimension() == DIMENSIONS
        assert server.requests[0].inputs == ["dimension probe"]


def test_unreachable_ollama_is_transient_and_names_the_url():
    with OllamaServer(DIMENSIONS) as server:
        url = server.base_url
    engine = OllamaEmbedder(OLLAMA_MODEL, url, "", None, timeout=2)
    with pytest.raises(TransientEmbeddingError) as raised:
        engine.request(["a"])
    assert f"{url}/api/embed" in str(raised.value) and raised.value.status is None
    engine.close()


# --- Azure OpenAI -------------------------------------------------------------------------


def test_azure_request_is_what_open_webui_sends():
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY) as server:
        with dispatching(azure_config(server)) as dispatcher:
            assert isinstance(dispatcher.embedder, AzureOpenAIEmbedder)
            assert_vectors(DEPLOYMENT, TEXTS, dispatcher.embed(TEXTS))
            assert dispatcher.stats.tokens > 0  # usage.prompt_tokens
        (request,) = server.requests
        assert request.method == "POST"
        assert (
            request.path == f"/openai/deployments/{DEPLOYMENT}/embeddings?api-version={API_VERSION}"
        )
        # The deployment is the model: no model field. Open WebUI's body plus base64, which
        # this server ignores (it answers floats, as some deployments do).
        assert request.body == {"input": TEXTS, "encoding_format": "base64"}
        assert request.raw_body == aiohttp_body({"input": TEXTS, "encoding_format": "base64"})
        assert request.headers["api-key"] == AZURE_KEY
        assert request.headers["content-type"] == "application/json"
        assert "authorization" not in request.headers


def test_azure_settings_from_environment_and_resource_overrides():
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY) as server:
        environ = {
            "RAG_EMBEDDING_ENGINE": "azure_openai",
            "RAG_EMBEDDING_MODEL": DEPLOYMENT,
            "RAG_AZURE_OPENAI_BASE_URL": "http://127.0.0.1:9",  # replaced by the override
            "RAG_AZURE_OPENAI_API_KEY": "stale",
            "RAG_AZURE_OPENAI_API_VERSION": "2024-02-01",
        }
        overrides = {
            "azure_openai_base_url": server.base_url + "/",
            "azure_openai_api_key": AZURE_KEY,
            "azure_openai_api_version": API_VERSION,
        }
        with dispatching({}, environ, **overrides) as dispatcher:
            assert_vectors(DEPLOYMENT, ["x"], dispatcher.embed(["x"]))
        assert server.requests[0].path.endswith(f"/embeddings?api-version={API_VERSION}")
        assert server.requests[0].path.startswith("/openai/deployments/")


@pytest.mark.parametrize(
    ("environ", "expected_inputs", "expected_body_extra"),
    [
        ({"RAG_EMBEDDING_CONTENT_PREFIX": "passage: "}, [f"passage: {t}" for t in TEXTS], {}),
        (
            {
                "RAG_EMBEDDING_CONTENT_PREFIX": "passage: ",
                "RAG_EMBEDDING_PREFIX_FIELD_NAME": "input_type",
            },
            TEXTS,
            {"input_type": "passage: "},
        ),
        ({"RAG_EMBEDDING_PREFIX_FIELD_NAME": "input_type"}, TEXTS, {}),  # no prefix: no field
    ],
)
def test_azure_prefix_handling(environ, expected_inputs, expected_body_extra):
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY) as server:
        with dispatching(azure_config(server), environ) as dispatcher:
            assert_vectors(DEPLOYMENT, expected_inputs, dispatcher.embed(TEXTS))
        assert server.requests[0].raw_body == aiohttp_body(
            {"input": expected_inputs, **expected_body_extra, "encoding_format": "base64"}
        )


def test_azure_retries_429_and_503_after_retry_after_then_succeeds():
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY, retry_after_seconds=0.01) as server:
        server.fail_next(3, status=429)
        server.fail_next(1, status=503)
        with dispatching(azure_config(server)) as dispatcher:
            assert_vectors(DEPLOYMENT, TEXTS, dispatcher.embed(TEXTS))
            assert dispatcher.stats.rate_limited == 3
            assert dispatcher.stats.retries == 4
        assert [r.status for r in server.requests] == [429, 429, 429, 503, 200]


def test_azure_retry_after_is_read_from_the_response():
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY, retry_after_seconds=0.25) as server:
        server.fail_next(1, status=429)
        engine = AzureOpenAIEmbedder(DEPLOYMENT, server.base_url, AZURE_KEY, API_VERSION, None, 5)
        with pytest.raises(TransientEmbeddingError) as raised:
            engine.request(["a"])
        engine.close()
    assert raised.value.status == 429
    assert raised.value.retry_after == pytest.approx(0.25)  # retry-after-ms wins
    assert "HTTP 429" in str(raised.value) and "injected failure 429" in str(raised.value)


def test_azure_401_is_not_retried_and_names_url_and_status():
    with AzureOpenAIServer(DIMENSIONS, api_key="the-real-key") as server:
        with dispatching(azure_config(server)) as dispatcher, pytest.raises(EmbeddingError) as e:
            dispatcher.embed(["a"])
        assert not isinstance(e.value, TransientEmbeddingError)
        message = str(e.value)
        assert (
            f"{server.base_url}/openai/deployments/{DEPLOYMENT}/embeddings"
            f"?api-version={API_VERSION}" in message
        )
        assert "HTTP 401" in message and "Access denied" in message
        assert server.request_count == 1


def test_azure_unknown_api_version_names_url_and_status():
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY, api_versions={"2024-10-21"}) as server:
        config = azure_config(server, **{"rag.azure_openai.api_version": "1999-01-01"})
        with dispatching(config) as dispatcher, pytest.raises(EmbeddingError) as raised:
            dispatcher.embed(["a"])
        assert "api-version=1999-01-01" in str(raised.value) and "HTTP 404" in str(raised.value)


def test_azure_too_many_inputs_is_split_until_it_passes():
    texts = [f"t{i}" for i in range(10)]
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY, max_inputs_per_request=3) as server:
        with dispatching(azure_config(server)) as dispatcher:
            assert_vectors(DEPLOYMENT, texts, dispatcher.embed(texts))
            assert dispatcher.stats.splits >= 2
        assert max(len(r.inputs) for r in server.requests if r.status == 200) <= 3


def test_concurrent_azure_batches_come_back_in_order():
    texts = [f"text number {i}" for i in range(50)]
    with AzureOpenAIServer(DIMENSIONS, api_key=AZURE_KEY) as server:
        with dispatching(azure_config(server), max_in_flight=4, max_batch_size=8) as dispatcher:
            assert_vectors(DEPLOYMENT, texts, dispatcher.embed(texts))
        assert server.request_count == 7


# --- dispatcher genericity ------------------------------------------------------------------


def test_any_engine_with_request_gets_retries_and_splitting():
    class Flaky:
        engine, model, model_key = "custom", "m", "custom|m|"

        def __init__(self):
            self.calls = 0

        def request(self, texts):
            from pgvector_migration.embedding.responses import EmbeddingResponse

            self.calls += 1
            if self.calls == 1:
                raise TransientEmbeddingError("http://custom failed with HTTP 503", 503, 0.0)
            return EmbeddingResponse([np.zeros(2, np.float32) for _ in texts], len(texts), {})

    engine = Flaky()
    assert isinstance(engine, APIEmbedder)
    dispatcher = EmbeddingDispatcher(engine, max_batch_inputs=8, max_in_flight=1, max_retries=2)
    assert len(dispatcher.embed(["a", "b"])) == 2
    assert dispatcher.stats.retries == 1 and engine.calls == 2
    dispatcher.close()


# --- settings -----------------------------------------------------------------------------


def resolve(config=None, env=None):
    return resolve_rag_settings(config or {}, env or {})


def test_new_engines_validate_with_their_settings():
    check_engine_settings(resolve({"rag.embedding_engine": "ollama"}))  # default base URL
    check_engine_settings(
        resolve(
            {
                "rag.embedding_engine": "azure_openai",
                "rag.embedding_model": DEPLOYMENT,
                "rag.azure_openai.base_url": "https://res.openai.azure.com",
                "rag.azure_openai.api_version": API_VERSION,
            }
        )
    )


@pytest.mark.parametrize(
    ("config", "env", "named"),
    [
        ({"rag.azure_openai.api_version": API_VERSION}, {}, "RAG_AZURE_OPENAI_BASE_URL"),
        ({"rag.azure_openai.base_url": "https://r"}, {}, "RAG_AZURE_OPENAI_API_VERSION"),
        ({}, {"RAG_AZURE_OPENAI_BASE_URL": "https://r"}, "RAG_AZURE_OPENAI_API_VERSION"),
        (
            {
                "rag.azure_openai.base_url": "https://r",
                "rag.azure_openai.api_version": API_VERSION,
                "rag.embedding_model": "",
            },
            {},
            "RAG_EMBEDDING_MODEL",
        ),
    ],
)
def test_azure_without_a_required_setting_names_it(config, env, named):
    settings = resolve({"rag.embedding_engine": "azure_openai", **config}, env)
    with pytest.raises(SettingsError, match=named):
        check_engine_settings(settings)
    with pytest.raises(SettingsError, match=named):  # and before any request is built
        EmbeddingResource().dispatcher(settings)


def test_ollama_without_base_url_names_it():
    settings = resolve({"rag.embedding_engine": "ollama", "rag.ollama.base_url": ""})
    with pytest.raises(SettingsError, match="RAG_OLLAMA_BASE_URL") as raised:
        check_engine_settings(settings)
    assert "rag.ollama.base_url" in str(raised.value)


def test_unknown_engine_names_the_setting_and_lists_the_supported_ones():
    with pytest.raises(SettingsError) as raised:
        check_engine_settings(resolve({"rag.embedding_engine": "cohere"}))
    message = str(raised.value)
    assert "RAG_EMBEDDING_ENGINE='cohere'" in message
    for engine in ("'openai'", "'ollama'", "'azure_openai'"):
        assert engine in message


def test_new_settings_resolve_from_config_then_environment_then_default():
    settings = resolve(
        {"rag.ollama.base_url": "http://cfg:11434", "rag.azure_openai.api_version": "2024-02-01"},
        {
            "RAG_OLLAMA_BASE_URL": "http://env:11434",
            "RAG_OLLAMA_API_KEY": "ok",
            "RAG_AZURE_OPENAI_BASE_URL": "https://env.openai.azure.com",
            "RAG_AZURE_OPENAI_API_KEY": "ak",
            "RAG_AZURE_OPENAI_API_VERSION": "2023-05-15",
        },
    )
    assert settings.ollama_base_url == "http://cfg:11434"
    assert settings.ollama_api_key == "ok"
    assert settings.azure_openai_base_url == "https://env.openai.azure.com"
    assert settings.azure_openai_api_key == "ak"
    assert settings.azure_openai_api_version == "2024-02-01"
    defaults = resolve()
    assert defaults.ollama_base_url == "http://localhost:11434"
    assert defaults.ollama_api_key == ""
    assert defaults.azure_openai_base_url == ""
    assert defaults.azure_openai_api_version == ""
    assert defaults.embedding_prefix_field_name is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://localhost:11434"),
        ({"OLLAMA_BASE_URL": "http://ollama:11434/"}, "http://ollama:11434"),
        ({"OLLAMA_API_BASE_URL": "http://box:11434/api"}, "http://box:11434"),
        ({"ENV": "prod", "OLLAMA_BASE_URL": "/ollama"}, "http://host.docker.internal:11434"),
        (
            {"ENV": "prod", "OLLAMA_BASE_URL": "/ollama", "USE_OLLAMA_DOCKER": "true"},
            "http://localhost:11434",
        ),
        (
            {"ENV": "prod", "K8S_FLAG": "1", "OLLAMA_BASE_URL": "http://x:1"},
            "http://ollama-service.open-webui.svc.cluster.local:11434",
        ),
        ({"ENV": "dev", "OLLAMA_BASE_URL": "/ollama"}, "/ollama"),
    ],
)
def test_ollama_base_url_defaults_to_open_webuis_ollama_base_url(environ, expected):
    assert default_ollama_base_url(environ) == expected
    assert resolve(env=environ).ollama_base_url == expected
    assert resolve(env={**environ, "RAG_OLLAMA_BASE_URL": "http://rag:1"}).ollama_base_url == (
        "http://rag:1"
    )


def test_legacy_config_paths_of_ollama_and_openai_are_read():
    flat = flatten_legacy_config(
        {
            "rag": {
                "ollama": {"url": "http://legacy:11434", "key": "lk"},
                "openai_api_base_url": "http://legacy-openai/v1",
                "openai_api_key": "sk-legacy",
                "azure_openai": {"base_url": "https://az", "api_version": "2024-02-01"},
            }
        }
    )
    settings = resolve(flat, {"RAG_OLLAMA_BASE_URL": "http://env:11434"})
    assert settings.ollama_base_url == "http://legacy:11434"
    assert settings.ollama_api_key == "lk"
    assert settings.openai_api_base_url == "http://legacy-openai/v1"
    assert settings.openai_api_key == "sk-legacy"
    assert settings.azure_openai_base_url == "https://az"
    assert settings.azure_openai_api_version == "2024-02-01"


def test_a_blank_prefix_field_name_is_a_value_as_in_open_webui():
    assert resolve(env={"RAG_EMBEDDING_PREFIX_FIELD_NAME": ""}).embedding_prefix_field_name == ""
    assert resolve(env={"RAG_EMBEDDING_PREFIX_FIELD_NAME": "p"}).embedding_prefix_field_name == "p"


@pytest.mark.parametrize(
    "override",
    [
        {"ollama_base_url": "http://other:11434"},
        {"ollama_api_key": "rotated"},
        {"azure_openai_base_url": "https://other.openai.azure.com"},
        {"azure_openai_api_key": "rotated"},
        {"azure_openai_api_version": "2025-01-01"},
    ],
)
def test_fingerprint_ignores_new_secrets_and_transport(override):
    base = resolve()
    assert base.with_overrides(**override).splitting_fingerprint() == base.splitting_fingerprint()


def test_fingerprint_counts_the_prefix_field_name_only_when_set():
    base = resolve(env={"RAG_EMBEDDING_CONTENT_PREFIX": "p: "})
    field = base.with_overrides(embedding_prefix_field_name="prompt")
    assert field.splitting_fingerprint() != base.splitting_fingerprint()
    engine = resolve({"rag.embedding_engine": "ollama"})
    assert engine.splitting_fingerprint() != resolve().splitting_fingerprint()


def test_fingerprints_written_before_the_new_settings_stay_valid():
    # The digest of Open WebUI's defaults as computed before the ollama/azure/prefix-field
    # settings existed: adding them must not make every migrated collection stale.
    assert resolve().splitting_fingerprint() == "2dec9860f87d9a89"
