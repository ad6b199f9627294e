"""The Dagster resource for Open WebUI's database and uploads folder, opened strictly read-only:
where they are, the settings Open WebUI would use, and the source rows one partition covers."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr, create_model

from pgvector_migration.pipeline.knowledge_membership import (
    KnowledgeMembership,
    knowledge_membership,
    partition_file_ids,
    partition_notes,
)
from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY, SourceFile
from pgvector_migration.pipeline.source_rows import read_file_row
from pgvector_migration.pipeline.system_collections import KnowledgeBase, Memory
from pgvector_migration.resources.openwebui_database import (
    SourceDatabaseError,
    json_object,
    json_value,
    readonly_engine,
)
from pgvector_migration.resources.openwebui_uploads import over_limit, resolve_upload
from pgvector_migration.resources.s3_settings import S3Settings, is_s3_url
from pgvector_migration.resources.upload_storage import S3Uploads
from pgvector_migration.setting_declarations import DECLARATIONS
from pgvector_migration.settings import RagSettings, flatten_legacy_config, resolve_rag_settings

DEFAULT_DATA_DIR = "/app/backend/data"
# Which `s3://` uploads `iter_files` downloads: only files without stored content (the only
# ones whose bytes are read unless re-extraction is asked), every one, or none.
S3Fetch = Literal["missing-content", "always", "never"]
FILE_BATCH = 50


# The settings an admin may override on the resource (launchpad, dagster.yaml), each an
# optional field described by its declaration; empty keeps Open WebUI's value.
OVERRIDABLE_SETTINGS = tuple(setting for setting in DECLARATIONS if setting.override)
_SettingOverrides = create_model(
    "OpenWebUISettingOverrides",
    __base__=ConfigurableResource,
    **{
        setting.name: (setting.kind | None, Field(default=None, description=setting.override))
        for setting in OVERRIDABLE_SETTINGS
    },
)


class OpenWebUIResource(_SettingOverrides):
    """Open WebUI's database (SQLite or PostgreSQL) and uploads folder, never written.

    Every field left empty takes Open WebUI's own environment variable, then Open WebUI's
    default, so an admin can reuse the env file of the deployment.
    """

    database_url: str | None = Field(
        default=None,
        description="Open WebUI's database URL. Empty: DATABASE_URL, else "
        "sqlite:///{DATA_DIR}/webui.db.",
    )
    data_dir: str | None = Field(
        default=None, description="Open WebUI's DATA_DIR. Empty: DATA_DIR, else /app/backend/data."
    )
    upload_dir: str | None = Field(
        default=None,
        description="Folder of the uploaded files. Empty: UPLOAD_DIR, else {DATA_DIR}/uploads.",
    )
    download_dir: str | None = Field(
        default=None,
        description="Folder that uploads kept in S3 (STORAGE_PROVIDER=s3, S3_* variables) are "
        "downloaded to and reused from on later runs. Empty: a temporary folder per process, "
        "removed when it exits.",
    )
    max_file_mb: float | None = Field(
        default=None,
        description="Uploads larger than this many MB are not read (skipped with a reason; "
        "stored text is still migrated). Empty: Open WebUI's rag.file.max_size (config table, "
        "then RAG_FILE_MAX_SIZE), else no limit, as in Open WebUI; 0: no limit.",
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)
    _s3_uploads: S3Uploads | None = PrivateAttr(default=None)

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir or os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR)

    def resolved_upload_dir(self) -> Path:
        explicit = self.upload_dir or os.environ.get("UPLOAD_DIR")
        return Path(explicit) if explicit else self.resolved_data_dir() / "uploads"

    def resolved_database_url(self) -> str:
        return (
            self.database_url
            or os.environ.get("DATABASE_URL")
            or f"sqlite:///{self.resolved_data_dir() / 'webui.db'}"
        )

    def display_url(self) -> str:
        """The database URL with any password hidden, for messages."""
        url = self.resolved_database_url().replace("postgres://", "postgresql://", 1)
        return sa.make_url(url).render_as_string(hide_password=True)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = readonly_engine(self.resolved_database_url())
        return self._engine

    def _query(self, sql: str, **params: Any) -> list[sa.Row]:
        try:
            with self.engine().connect() as connection:
                return list(connection.execute(sa.text(sql), params))
        except sa.exc.SQLAlchemyError as error:
            raise SourceDatabaseError(
                f"cannot read Open WebUI database {self.display_url()}: {error.orig or error}"
            ) from error

    def _tables(self) -> set[str]:
        try:
            return set(sa.inspect(self.engine()).get_table_names())
        except sa.exc.SQLAlchemyError as error:
            raise SourceDatabaseError(
                f"cannot open Open WebUI database {self.display_url()}: {error}"
            ) from error

    def check_schema(self) -> None:
        """Fail early, naming the database, when it is not an Open WebUI database."""
        missing = {"file", "knowledge"} - self._tables()
        if missing:
            raise SourceDatabaseError(
                f"{self.display_url()} is not an Open WebUI database: no table "
                f"{', '.join(sorted(missing))}"
            )

    def stored_config(self) -> dict[str, Any]:
        """Open WebUI's persistent settings as dotted keys, from either generation of the
        `config` table (one JSON row up to 0.9, one row per key from 0.10)."""
        if "config" not in self._tables():
            return {}
        columns = {c["name"] for c in sa.inspect(self.engine()).get_columns("config")}
        if "key" in columns:
            rows = self._query('SELECT "key", "value" FROM config')
            return {row[0]: json_value(row[1]) for row in rows}
        rows = self._query("SELECT data FROM config ORDER BY id DESC LIMIT 1")
        return flatten_legacy_config(json_object(rows[0][0])) if rows else {}

    def rag_settings(self, environ: Mapping[str, str] | None = None) -> RagSettings:
        """The settings Open WebUI would use now, with this resource's overrides applied."""
        environ = os.environ if environ is None else environ
        persistent = environ.get("ENABLE_PERSISTENT_CONFIG", "true").lower() == "true"
        settings = resolve_rag_settings(self.stored_config() if persistent else {}, environ)
        return settings.with_overrides(
            **{setting.name: getattr(self, setting.name) for setting in OVERRIDABLE_SETTINGS}
        )

    def knowledge_bases(self) -> list[KnowledgeBase]:
        """Every knowledge base with the name and description Open WebUI embeds."""
        rows = self._query("SELECT id, name, description FROM knowledge ORDER BY created_at, id")
        return [KnowledgeBase(row[0], row[1], row[2]) for row in rows]

    def memories(self) -> list[Memory]:
        """Every user memory; `type` and `path` exist from Open WebUI 0.9 on and are None
        before (no `memory` table at all: no memories)."""
        if "memory" not in self._tables():
            return []
        columns = {c["name"] for c in sa.inspect(self.engine()).get_columns("memory")}
        optional = [name if name in columns else f"NULL AS {name}" for name in ("type", "path")]
        rows = self._query(
            f"SELECT id, user_id, content, {', '.join(optional)}, created_at, updated_at "
            "FROM memory ORDER BY user_id, created_at, id"
        )
        return [Memory(*row) for row in rows]

    def file_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT id FROM file ORDER BY created_at, id")]

    def knowledge_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT id FROM knowledge ORDER BY created_at, id")]

    def knowledge_membership(self) -> KnowledgeMembership:
        """Files per knowledge base, from `knowledge_file` (0.6.41+) or `knowledge.data`."""
        if "knowledge_file" in self._tables():
            pairs = [
                (row[0], row[1])
                for row in self._query(
                    "SELECT knowledge_id, file_id FROM knowledge_file ORDER BY created_at, id"
                )
            ]
        else:
            pairs = []
            for knowledge_id, data in self._query("SELECT id, data FROM knowledge"):
                file_ids = json_object(data).get("file_ids") or []
                pairs.extend((knowledge_id, file_id) for file_id in file_ids)
        return knowledge_membership(pairs, self.file_ids(), self.knowledge_ids())

    def partition_notes(
        self, partition_key: str, membership: KnowledgeMembership | None = None
    ) -> list[tuple[str, str]]:
        """What the source holds that no file outcome shows (see
        `pipeline.knowledge_membership.partition_notes`). `membership`: one read of the source
        shared by every partition of a run."""
        return partition_notes(membership or self.knowledge_membership(), partition_key)

    def partition_file_ids(
        self, partition_key: str, membership: KnowledgeMembership | None = None
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """The file ids one partition covers, and the dangling ids its knowledge base lists.

        The standalone partition holds every file that no knowledge base lists. `membership`:
        one read of the source shared by every partition of a run.
        """
        membership = membership or self.knowledge_membership()
        if (
            partition_key != STANDALONE_PARTITION_KEY
            and partition_key not in membership.knowledge_ids
        ):
            raise SourceDatabaseError(
                f"knowledge base {partition_key!r} does not exist in {self.display_url()}"
            )
        return partition_file_ids(membership, partition_key)

    def s3_uploads(self) -> S3Uploads:
        """The downloader of `s3://` uploads, configured from Open WebUI's S3_* variables."""
        if self._s3_uploads is None:
            self._s3_uploads = S3Uploads(S3Settings.from_env(), cache_dir=self.download_dir)
        return self._s3_uploads

    def iter_files(
        self,
        file_ids: Sequence[str],
        fetch_s3: S3Fetch = "missing-content",
        membership: KnowledgeMembership | None = None,
    ) -> Iterator[SourceFile]:
        """Stream the given files (with their stored content) one at a time, in `file_ids`
        order, so a partition of thousands of files is never in memory at once.

        Uploads kept in S3 are downloaded (once) as `fetch_s3` says: by default only for files
        without stored content; pass "always" when the uploads will be re-extracted. A failed
        download leaves `upload_path` None with the reason in `upload_problem`. A row that
        cannot be migrated comes with `source_problem` set (see `pipeline.source_rows`); the
        JSON columns are fetched as text and parsed here, row by row, so no row can fail the
        query that reads its neighbours.
        """
        membership = membership or self.knowledge_membership()
        knowledge_of: dict[str, list[str]] = {}
        for knowledge_id, listed in membership.files_by_knowledge.items():
            for file_id in listed:
                knowledge_of.setdefault(file_id, []).append(knowledge_id)
        upload_dir = self.resolved_upload_dir()
        limit_mb = self.size_limit_mb()
        query = sa.text(
            "SELECT id, user_id, filename, path, CAST(meta AS TEXT), CAST(data AS TEXT), hash "
            "FROM file WHERE id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        for start in range(0, len(file_ids), FILE_BATCH):
            batch = list(file_ids[start : start + FILE_BATCH])
            try:
                with self.engine().connect() as connection:
                    rows = {row[0]: row for row in connection.execute(query, {"ids": batch})}
            except sa.exc.SQLAlchemyError as error:
                raise SourceDatabaseError(
                    f"cannot read files from {self.display_url()}: {error.orig or error}"
                ) from error
            for file_id in batch:
                if file_id not in rows:
                    continue
                _, user_id, filename, path, meta, data, content_hash = rows.pop(file_id)
                row = read_file_row(file_id, user_id, filename, path, meta, data, content_hash)
                base = SourceFile(
                    id=file_id,
                    user_id=user_id if isinstance(user_id, str) else None,
                    filename=row.filename,
                    stored_path=row.stored_path,
                    content_type=row.content_type,
                    meta=row.meta,
                    data=row.data,
                    content_hash_column=content_hash if isinstance(content_hash, str) else None,
                    knowledge_ids=tuple(knowledge_of.get(file_id, ())),
                )
                if row.problem:
                    yield replace(base, source_problem=row.problem, upload_problem=row.problem)
                    continue
                yield self._with_upload(base, path, upload_dir, fetch_s3, limit_mb)

    def _with_upload(
        self,
        file: SourceFile,
        path: str | None,
        upload_dir: Path,
        fetch_s3: S3Fetch,
        limit_mb: float | None,
    ) -> SourceFile:
        """The file with where its upload is and how it stands against the size limit.

        Open WebUI checks its limit (`rag.file.max_size`) only when a file is uploaded, so a
        file that exists was accepted: when its stored text is what gets migrated, an upload
        over a limit set since is only noted. An upload that must be read (no stored text,
        or re-extraction) and is over the limit is left out as unsupported, with the reason.
        """
        upload_path, problem = resolve_upload(path, upload_dir)
        reads_upload = file.stored_content is None or fetch_s3 == "always"
        size = None
        if is_s3_url(path) and (
            fetch_s3 == "always" or (fetch_s3 == "missing-content" and reads_upload)
        ):
            max_bytes = None if limit_mb is None else int(limit_mb * 1024 * 1024)
            download = self.s3_uploads().fetch(path, max_bytes=max_bytes)
            upload_path, problem = download.path, download.problem
            if download.over_limit:
                size = download.size
        if upload_path is not None:
            size = upload_path.stat().st_size
        elif size is None and isinstance(file.meta.get("size"), int):
            size = file.meta["size"]
        over = over_limit(size, limit_mb)
        file = replace(file, upload_path=upload_path, upload_problem=problem)
        if over is None:
            return file
        if file.stored_content is None:
            return replace(file, oversize=over)
        # Never read past the limit: the stored text stands in for the upload.
        return replace(
            file,
            upload_path=None,
            upload_problem=over,
            notes=(
                f"{over}; Open WebUI accepted it before that limit, and its stored text is "
                "migrated",
            ),
        )

    def size_limit_mb(self) -> float | None:
        """The upload size limit in MB: this resource's `max_file_mb`, else Open WebUI's
        `rag.file.max_size` (config table, then RAG_FILE_MAX_SIZE); None or 0: no limit, which
        is Open WebUI's default."""
        if self.max_file_mb is not None:
            return self.max_file_mb or None
        limit = self.rag_settings().file_max_size_mb
        return limit if limit and limit > 0 else None

    def partition_keys(self) -> list[str]:
        """Every partition the source calls for: each knowledge base and the standalone key."""
        return [*self.knowledge_ids(), STANDALONE_PARTITION_KEY]
