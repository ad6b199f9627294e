"""Which of Open WebUI's persistent settings a model switch writes, and the exact change that
restores what was there before (a value, or the key's absence).

Open WebUI 0.12.4 keeps its settings in its `config` table, one row per dotted key (`key`,
JSON `value`); up to 0.9 they were one JSON object in the newest row's `data` column. It reads
the embedding engine and model from that table at start (`main.py`, `Config.get_many`), and
the table wins over the environment: at start it only inserts the keys it lacks, from the
environment's values. The environment wins only when Open WebUI ignores the table
(`ENABLE_PERSISTENT_CONFIG=false`) or clears it at each start (`RESET_CONFIG_ON_START=true`).
The vector length (`PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH`) and `PGVECTOR_USE_HALFVEC` are
environment only, read once at start: no write here can change them.

Pure functions: the database is read and written by
`resources.openwebui_settings_writer`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EMBEDDING_ENGINE_KEY = "rag.embedding_engine"
EMBEDDING_MODEL_KEY = "rag.embedding_model"
# The only keys a switch writes: what the vectors in document_chunk were made with. The
# engines' base URLs and keys stay as they are (the switch embeds with them).
SWITCH_KEYS = (EMBEDDING_ENGINE_KEY, EMBEDDING_MODEL_KEY)


@dataclass(frozen=True)
class ConfigChange:
    """Rows to set and keys to delete, and the values of those keys before (present keys
    only: a key missing from `before` was absent), so the change can be undone exactly."""

    set: dict[str, Any]
    delete: tuple[str, ...] = ()
    before: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.set, *self.delete)

    def as_record(self) -> dict[str, Any]:
        """The JSON kept with the switch's record (`model_switch.openwebui_config`)."""
        return {"keys": list(self.keys), "before": self.before, "after": self.set}

    def describe(self) -> str:
        shown = [f"{key}={value!r}" for key, value in self.set.items()]
        shown += [f"{key} removed" for key in self.delete]
        return ", ".join(shown)


def switch_change(stored: Mapping[str, Any], engine: str, model: str) -> ConfigChange:
    """Set the embedding engine and model to the live table's, given the stored values."""
    return ConfigChange(
        set={EMBEDDING_ENGINE_KEY: engine, EMBEDDING_MODEL_KEY: model},
        before=present(stored, SWITCH_KEYS),
    )


def undo_change(record: Mapping[str, Any], stored: Mapping[str, Any]) -> ConfigChange:
    """Put back what a recorded change found (`as_record`), key by key: its value, or no
    row where there was none."""
    keys = tuple(record["keys"])
    previous = record["before"]
    return ConfigChange(
        set={key: previous[key] for key in keys if key in previous},
        delete=tuple(key for key in keys if key not in previous),
        before=present(stored, keys),
    )


def present(stored: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: stored[key] for key in keys if key in stored}


def legacy_config_data(data: Mapping[str, Any], change: ConfigChange) -> dict[str, Any]:
    """The one-row JSON `config.data` of Open WebUI up to 0.9 with `change` applied (a dotted
    key is a path of nested objects there)."""
    updated = copy.deepcopy(dict(data))
    for key, value in change.set.items():
        *parents, leaf = key.split(".")
        node = updated
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    for key in change.delete:
        *parents, leaf = key.split(".")
        node = updated
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return updated


def environment_overrides(environ: Mapping[str, str]) -> list[str]:
    """Why Open WebUI, started with `environ`, would not use what is written to its config
    table; none when it would."""
    reasons = []
    if environ.get("ENABLE_PERSISTENT_CONFIG", "true").lower() != "true":
        reasons.append(
            "ENABLE_PERSISTENT_CONFIG is not true: Open WebUI ignores its config table and "
            "takes RAG_EMBEDDING_ENGINE and RAG_EMBEDDING_MODEL from its environment"
        )
    if environ.get("RESET_CONFIG_ON_START", "false").lower() == "true":
        reasons.append(
            "RESET_CONFIG_ON_START is true: Open WebUI empties its config table at start and "
            "fills it from its environment (RAG_EMBEDDING_ENGINE, RAG_EMBEDDING_MODEL)"
        )
    return reasons
