"""Where an Open WebUI upload's bytes are, and whether they are within the size limit."""

from __future__ import annotations

from pathlib import Path

from pgvector_migration.resources.s3_settings import is_s3_url

UNSUPPORTED_STORAGE_PREFIXES = {"gs://": "gcs"}


def over_limit(size: int | None, limit_mb: float | None) -> str | None:
    """Why an upload of `size` bytes is over the limit, or None."""
    if size is None or limit_mb is None or size <= limit_mb * 1024 * 1024:
        return None
    return (
        f"the upload is {size / 1024 / 1024:.1f} MB, over the {limit_mb:g} MB limit "
        "(RAG_FILE_MAX_SIZE / rag.file.max_size)"
    )


def resolve_upload(stored_path: str | None, upload_dir: Path) -> tuple[Path | None, str | None]:
    """Find a file's bytes inside the uploads folder, and only there.

    `file.path` is the path inside Open WebUI's container; outside it the folder differs, so a file
    is also looked up by its stored name (`{uuid}_{filename}`) in `upload_dir`. A path that
    resolves outside the uploads folder is never read.

    An `s3://` upload is not fetched here (that would download every file at inventory time):
    the note returned says so, and `OpenWebUIResource.iter_files` downloads the files whose
    bytes are needed.
    """
    if not stored_path:
        return None, "file.path is empty"
    if "\x00" in stored_path:
        return None, "file.path holds a NUL character, so no file system can hold it"
    if is_s3_url(stored_path):
        return None, (
            f"storage provider s3: {stored_path} is downloaded only for files without stored "
            "content"
        )
    for prefix, provider in UNSUPPORTED_STORAGE_PREFIXES.items():
        if stored_path.startswith(prefix):
            return None, f"storage provider {provider} ({stored_path}) is not supported yet"
    if stored_path.startswith(("http://", "https://")):
        return None, f"storage provider azure ({stored_path}) is not supported yet"
    root = upload_dir.resolve()
    candidate = Path(stored_path)
    options = [candidate] if candidate.is_absolute() else [root / candidate]
    options.append(root / candidate.name)
    for option in options:
        resolved = option.resolve()
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved, None
    if candidate.is_absolute() and candidate.exists():
        return None, f"file.path {stored_path} is outside the uploads folder {root}; not read"
    return None, f"upload {candidate.name} not found in {root}"
