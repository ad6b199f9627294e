"""A real Open WebUI 0.12.4 server, started offline and driven as a user through its HTTP API.

Offline start-up needs only Open WebUI's own settings: `OFFLINE_MODE` (no model downloads or
version checks), the OpenAI embedding engine pointed at a loopback server (so no local
sentence-transformers model is loaded), and the chat, web-search and image switches off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN = {"name": "Fidelity Admin", "email": "admin@fidelity.local", "password": "fidelity-pw-1"}
PROCESSING_TIMEOUT_SECONDS = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def openwebui_environment(
    data_dir: Path,
    database_url: str,
    embedding_base_url: str,
    api_key: str,
    model: str,
    dimensions: int,
) -> dict[str, str]:
    """Open WebUI's own environment names for an offline server on pgvector."""
    return {
        "DATA_DIR": str(data_dir),
        "FROM_INIT_PY": "true",  # the pip package's frontend and static folders
        "WEBUI_SECRET_KEY": "fidelity-secret",
        "DATABASE_URL": database_url,
        "VECTOR_DB": "pgvector",
        "PGVECTOR_DB_URL": database_url,
        "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(dimensions),
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": model,
        "RAG_OPENAI_API_BASE_URL": embedding_base_url,
        "RAG_OPENAI_API_KEY": api_key,
        "RAG_EMBEDDING_BATCH_SIZE": "32",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ENABLE_SIGNUP": "true",
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "false",
        "ENABLE_WEB_SEARCH": "false",
        "ENABLE_IMAGE_GENERATION": "false",
        "ENABLE_CODE_EXECUTION": "false",
        "ENABLE_CODE_INTERPRETER": "false",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ENABLE_COMMUNITY_SHARING": "false",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
        "TZ": "UTC",
    }


@dataclass
class OpenWebUI:
    """The uvicorn process and an admin's authenticated client."""

    python: Path
    environment: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    client: httpx.Client | None = None
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server writes it until stop()
        self.process = subprocess.Popen(
            [
                str(self.python),
                "-m",
                "uvicorn",
                "open_webui.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env={**os.environ, **self.environment},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.environment["DATA_DIR"],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Open WebUI exited with {self.process.returncode} during start-up; "
                    f"see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    self.client = httpx.Client(
                        base_url=self.url, timeout=PROCESSING_TIMEOUT_SECONDS
                    )
                    if self.token:
                        self.client.headers["Authorization"] = f"Bearer {self.token}"
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(
            f"Open WebUI did not answer /health in {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, **changes: str) -> None:
        """Stop and start again with some environment changed: what a setting read only at
        start (PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH, the embedding model) needs. The
        signed-in user stays signed in (same port, same token)."""
        self.stop()
        self.environment = {**self.environment, **changes}
        self.start()

    def _call(self, method: str, path: str, **kwargs) -> dict | list:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"Open WebUI {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def sign_up_admin(self) -> None:
        """The first user to sign up is the admin; its token authorises every later call."""
        answer = self._call("POST", "/api/v1/auths/signup", json=ADMIN)
        self.token = answer["token"]
        self.client.headers["Authorization"] = f"Bearer {self.token}"

    def create_knowledge(self, name: str) -> str:
        answer = self._call(
            "POST",
            "/api/v1/knowledge/create",
            json={"name": name, "description": f"{name} (fidelity corpus)"},
        )
        return answer["id"]

    def upload(self, path: Path, knowledge_id: str | None) -> dict:
        """Upload as the web UI does from a knowledge base's page, then wait for processing."""
        metadata = {"knowledge_id": knowledge_id} if knowledge_id else {}
        with open(path, "rb") as handle:
            answer = self._call(
                "POST",
                "/api/v1/files/",
                params={"process": "true"},
                files={"file": (path.name, handle)},
                data={"metadata": json.dumps(metadata)},
            )
        deadline = time.monotonic() + PROCESSING_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            row = self._call("GET", f"/api/v1/files/{answer['id']}")
            status = (row.get("data") or {}).get("status")
            if status in ("completed", "failed"):
                return row
            time.sleep(0.5)
        raise RuntimeError(f"Open WebUI did not finish processing {path.name} in time")

    def add_memory(self, content: str) -> dict:
        """A memory of the signed-in user, embedded by Open WebUI into its
        `user-memory-{user_id}` collection."""
        return self._call("POST", "/api/v1/memories/add", json={"content": content})

    def add_to_knowledge(self, knowledge_id: str, file_id: str) -> str | None:
        """Add a processed file to a knowledge base; returns Open WebUI's refusal, if any."""
        response = self.client.post(
            f"/api/v1/knowledge/{knowledge_id}/file/add", json={"file_id": file_id}
        )
        return None if response.status_code < 400 else f"{response.status_code} {response.text}"
