"""Defaults of Open WebUI settings that are more than a literal: the embedding model and
extraction timeout other modules name, and the Ollama URL Open WebUI derives from other
environment variables."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_EXTRACTION_TIMEOUT_SECONDS = 600


def default_ollama_base_url(environ: Mapping[str, str]) -> str:
    """`OLLAMA_BASE_URL` as Open WebUI 0.12.4 derives it (config.py, "OLLAMA_BASE_URL"), the
    default of `RAG_OLLAMA_BASE_URL`.

    Open WebUI additionally probes port 11434 at start-up and switches to 12434 when only that
    one answers; a migration does not guess from the network, so that step is left out (set
    `RAG_OLLAMA_BASE_URL` when Ollama listens on 12434).
    """
    url = environ.get("OLLAMA_BASE_URL", "")
    if url.endswith("/"):
        url = url[:-1]
    api_url = environ.get("OLLAMA_API_BASE_URL", "http://localhost:11434/api")
    if url == "" and api_url != "":
        url = api_url[:-4] if api_url.endswith("/api") else api_url
    if environ.get("ENV", "dev") == "prod":
        k8s = environ.get("K8S_FLAG", "")
        if url == "/ollama" and not k8s:
            if environ.get("USE_OLLAMA_DOCKER", "false").lower() == "true":
                url = "http://localhost:11434"
            else:
                url = "http://host.docker.internal:11434"
        elif k8s:
            url = "http://ollama-service.open-webui.svc.cluster.local:11434"
    return url
