"""Assessing one file's collections: complete, partial, stale, missing, unsupported or
unreadable, reading the upload only when an answer needs it."""

from __future__ import annotations

import functools
from dataclasses import replace

from pgvector_migration.pipeline.completeness import NO_ROWS, Assessment, UnitStatus, assess
from pgvector_migration.pipeline.extraction_services import Transport
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType
from pgvector_migration.pipeline.planning import FilePlan, plan_file
from pgvector_migration.pipeline.records import SourceFile
from pgvector_migration.pipeline.splitting import EmptyContentError, content_hash_of
from pgvector_migration.pipeline.text_source import (
    TextOrigin,
    TextSource,
    fallback_note,
    source_fingerprint,
    with_note,
)
from pgvector_migration.settings import RagSettings


def _unprocessable(file: SourceFile, names: list[str], status: UnitStatus, reason: str):
    return [(file, name, Assessment(status, None, 0, reason)) for name in names]


def assess_file(
    file: SourceFile,
    collection_names: list[str],
    present,
    records,
    settings: RagSettings,
    text_source: TextSource = TextSource.UPLOAD,
    transport: Transport | None = None,
    plans: dict[str, FilePlan] | None = None,
) -> list[tuple[SourceFile, str, Assessment]]:
    """Assess every collection of one file. The upload is read only when an answer needs it:
    a unit already written from the same upload bytes under the same settings takes its content
    hash from our record, and a unit with neither rows nor a record needs no hash at all.
    `plans`: when given, a plan the assessment had to make is kept there under the file's id
    (it covers all `collection_names`), so a caller that needs the chunks too (the dry run's
    estimate) does not load and split the file a second time."""
    plan: FilePlan | None = None

    def planned() -> FilePlan:
        nonlocal plan
        if plan is None:
            plan = plan_file(file, settings, collection_names, text_source, transport)
            if plans is not None:
                plans[file.id] = plan
        return plan

    @functools.cache
    def identity() -> tuple[str, str]:
        content = file.stored_content
        if text_source is TextSource.STORED and content is not None:
            return content_hash_of(content), settings.splitting_fingerprint(False)
        if file.upload_path is not None:
            from_upload = source_fingerprint(
                settings.splitting_fingerprint(True), TextOrigin.UPLOAD, file
            )
            for name in collection_names:
                record = records.get((name, file.id))
                if record is not None and record.settings_fingerprint == from_upload:
                    return record.content_hash, from_upload
        return planned().content_hash, planned().settings_fingerprint

    try:
        if file.source_problem:
            raise LoaderError(file.source_problem)
        if file.oversize:
            raise UnsupportedFileType(file.oversize)
        if text_source is TextSource.UPLOAD_ONLY or not (file.stored_content or "").strip():
            planned()  # what cannot be planned is unsupported or unreadable, not "missing"
        assessed = [
            (
                file,
                name,
                assess(
                    present.get((name, file.id), NO_ROWS),
                    records.get((name, file.id)),
                    identity,
                    settings.embedding_model,
                    lambda name=name: len(planned().chunks_by_collection[name]),
                ),
            )
            for name in collection_names
        ]
    except (UnsupportedFileType, EmptyContentError) as error:
        return _unprocessable(file, collection_names, UnitStatus.UNSUPPORTED, str(error))
    except LoaderError as error:
        return _unprocessable(file, collection_names, UnitStatus.UNREADABLE, str(error))
    fallback = plan.fallback_reason if plan is not None else None
    if plan is None and text_source is TextSource.UPLOAD and file.upload_path is None:
        fallback = file.upload_problem or "the file has no upload path"
    if fallback:
        note = fallback_note(fallback)
        assessed = [(f, n, replace(a, reason=with_note(a.reason, note))) for f, n, a in assessed]
    return assessed
