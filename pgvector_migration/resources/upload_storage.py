"""Uploads Open WebUI kept in object storage (`STORAGE_PROVIDER=s3`), fetched to a local cache.

Open WebUI's S3 provider records a file as `s3://{bucket}/{key}` in `file.path`, where the key
is `{S3_KEY_PREFIX}/{uuid}_{filename}`. It reads a file back from the bucket named by
`S3_BUCKET_NAME` with the key taken from the stored path, using a boto3 client built from:

- `S3_ACCESS_KEY_ID` / `S3_SECRET_ACCESS_KEY`: explicit keys, used only when both are set;
  otherwise boto3's default credential chain (AWS_* variables, profiles, IAM roles).
- `S3_REGION_NAME`, `S3_ENDPOINT_URL` (MinIO, R2, ...): passed as they are; default unset.
- `S3_USE_ACCELERATE_ENDPOINT`: "true" (any case) enables it; default false.
- `S3_ADDRESSING_STYLE`: "path", "virtual" or "auto"; default unset (botocore's auto).

`S3_KEY_PREFIX` (and `S3_ENABLE_TAGGING`) only matter when Open WebUI writes: the stored path
already holds the full key, so neither is needed to read. The same variables configure this
module, so an admin can reuse the deployment's env file.

Credentials are never logged, never part of a message, and not shown by `repr`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgvector_migration.resources.s3_settings import S3Settings, parse_s3_url

log = logging.getLogger(__name__)

# After this many consecutive failures to reach the endpoint, the remaining files fail fast
# instead of each waiting for its own connection timeout.
UNREACHABLE_AFTER = 3
_CHUNK_BYTES = 1024 * 1024
_MAX_NAME_BYTES = 200  # below NAME_MAX (255) with room for the temporary suffix

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "AccountProblem"}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}


@dataclass(frozen=True)
class S3Download:
    """The outcome of fetching one `s3://` upload.

    `path` is the local copy (None on failure, with `problem` saying why). `size` is the object's
    size when known; `over_limit` is set when that size is over the limit, so nothing was
    downloaded.
    """

    url: str
    path: Path | None = None
    problem: str | None = None
    size: int | None = None
    over_limit: bool = False


_process_dir: tuple[int, Path] | None = None


def _remove_process_dir(pid: int, path: Path) -> None:
    if os.getpid() == pid:  # a forked child must not remove its parent's folder
        shutil.rmtree(path, ignore_errors=True)


def process_download_dir() -> Path:
    """A temporary folder for this process's downloads, removed when the process exits."""
    global _process_dir
    if _process_dir is None or _process_dir[0] != os.getpid() or not _process_dir[1].is_dir():
        path = Path(tempfile.mkdtemp(prefix="pgvector-migration-s3-"))
        _process_dir = (os.getpid(), path)
        atexit.register(_remove_process_dir, os.getpid(), path)
    return _process_dir[1]


def _local_name(key: str) -> str:
    """The object's own name (`{uuid}_{filename}`), shortened to fit a file system's limit."""
    name = key.rsplit("/", 1)[-1].replace("\x00", "") or "upload"
    if name in (".", ".."):
        name = "upload"
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix.encode()) > 16:
        stem, suffix = name, ""
    budget = _MAX_NAME_BYTES - len(suffix.encode()) - 1
    shortened = stem.encode()[:budget].decode(errors="ignore")
    return f"{shortened}.{suffix}" if suffix else shortened


class _FetchFailed(Exception):
    def __init__(self, problem: str, unreachable: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.unreachable = unreachable


class S3Uploads:
    """Downloads `s3://` uploads once into a local folder and hands back their paths.

    `cache_dir` keeps downloads across runs (each object under a folder named by a digest of
    its bucket, key and ETag, so a changed object is fetched again); without it a temporary
    folder per process is used. Within one instance a URL is fetched at most once.
    """

    def __init__(
        self,
        settings: S3Settings | None = None,
        cache_dir: Path | str | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings if settings is not None else S3Settings.from_env()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._client = client
        self._fetched: dict[str, S3Download] = {}
        self._connection_failures = 0
        self._last_connection_problem: str | None = None

    def __repr__(self) -> str:
        return f"S3Uploads({self.settings!r}, cache_dir={self.cache_dir!r})"

    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            s3_options: dict[str, Any] = {
                "use_accelerate_endpoint": self.settings.use_accelerate_endpoint
            }
            if self.settings.addressing_style:
                s3_options["addressing_style"] = self.settings.addressing_style
            config = Config(
                s3=s3_options,
                # S3-compatible stores (MinIO, R2, ...) reject the newer default checksums;
                # Open WebUI sends them only when required too.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            keys: dict[str, str] = {}
            if self.settings.explicit_keys:
                keys = {
                    "aws_access_key_id": self.settings.access_key_id or "",
                    "aws_secret_access_key": self.settings.secret_access_key or "",
                }
            self._client = boto3.session.Session().client(
                "s3",
                region_name=self.settings.region_name,
                endpoint_url=self.settings.endpoint_url,
                config=config,
                **keys,
            )
        return self._client

    def cache_root(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else process_download_dir()

    def fetch(self, url: str, max_bytes: int | None = None) -> S3Download:
        """The local copy of `url`, downloading it unless already there.

        Never raises for a per-object problem (missing object, access denied, unreachable
        endpoint, object over `max_bytes`): the result's `problem` names the URL and the reason.
        """
        done = self._fetched.get(url)
        if (
            done is not None
            and done.path is not None
            and done.path.is_file()
            and (max_bytes is None or (done.size or 0) <= max_bytes)
        ):
            return done
        try:
            bucket, key = parse_s3_url(url)
        except ValueError as error:
            return S3Download(url, problem=f"malformed S3 path: {error}")
        if self._connection_failures >= UNREACHABLE_AFTER:
            return S3Download(
                url,
                problem=f"S3 upload {url} not downloaded: the endpoint failed "
                f"{self._connection_failures} times in a row ({self._last_connection_problem})",
            )
        try:
            result = self._download(url, bucket, key, max_bytes)
        except _FetchFailed as failure:
            if failure.unreachable:
                self._connection_failures += 1
                self._last_connection_problem = failure.problem
            return S3Download(url, problem=self._scrub(f"S3 upload {url}: {failure.problem}"))
        self._connection_failures = 0
        if result.path is not None:
            self._fetched[url] = result
        return result

    def _download(self, url: str, bucket: str, key: str, max_bytes: int | None) -> S3Download:
        bucket, head = self._locate(bucket, key)
        size = int(head.get("ContentLength") or 0)
        etag = str(head.get("ETag") or "")
        if max_bytes is not None and size > max_bytes:
            return S3Download(
                url,
                problem=f"S3 upload {url} is {size} bytes, over the {max_bytes} byte limit; "
                "not downloaded",
                size=size,
                over_limit=True,
            )
        digest = hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()[:24]
        folder = self.cache_root() / digest
        target = folder / _local_name(key)
        if target.is_file() and target.stat().st_size == size:
            log.debug("S3 upload %s already downloaded to %s", url, target)
            return S3Download(url, path=target, size=size)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, partial_name = tempfile.mkstemp(dir=folder, prefix=".partial-")
        except OSError as error:
            raise _FetchFailed(f"cannot write to the download folder {folder}: {error}") from error
        partial = Path(partial_name)
        try:
            with os.fdopen(handle, "wb") as out:
                written = self._stream(bucket, key, etag, out, max_bytes)
            if written != size:
                raise _FetchFailed(
                    f"received {written} of {size} bytes; the object changed or the "
                    "transfer was cut short"
                )
            os.replace(partial, target)
        except OSError as error:
            raise _FetchFailed(f"cannot write to the download folder {folder}: {error}") from error
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        log.debug("downloaded S3 upload %s (%d bytes) to %s", url, size, target)
        return S3Download(url, path=target, size=size)

    def _locate(self, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
        """The bucket holding the object and its HEAD response.

        Open WebUI reads from `S3_BUCKET_NAME` whatever bucket the path names (so a deployment
        whose bucket was copied and renamed keeps working); that bucket is tried first, then the
        one in the path.
        """
        candidates = list(dict.fromkeys(b for b in (self.settings.bucket_name, bucket) if b))
        failures: list[_FetchFailed] = []
        for candidate in candidates:
            try:
                return candidate, self._call("head_object", Bucket=candidate, Key=key)
            except _FetchFailed as failure:
                failures.append(failure)
                if failure.unreachable:
                    break
        other = [f for f in failures if not f.problem.startswith("not found")]
        if other:
            raise other[0]
        if len(candidates) > 1:
            looked = ", ".join(f"s3://{b}/{key}" for b in candidates)
            raise _FetchFailed(f"not found (looked for {looked})")
        raise failures[0]

    def _stream(self, bucket: str, key: str, etag: str, out: Any, max_bytes: int | None) -> int:
        extra = {"IfMatch": etag} if etag else {}
        response = self._call("get_object", Bucket=bucket, Key=key, **extra)
        body = response["Body"]
        chunks = body.iter_chunks(_CHUNK_BYTES)
        written = 0
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as error:
                    raise _FetchFailed(self._describe(error), unreachable=True) from error
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise _FetchFailed(f"grew over the {max_bytes} byte limit while downloading")
                out.write(chunk)
        finally:
            body.close()
        return written

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client(), operation)(**params)
        except Exception as error:
            raise _FetchFailed(
                self._describe(error), unreachable=self._is_connection_error(error)
            ) from error

    @staticmethod
    def _is_connection_error(error: Exception) -> bool:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        return isinstance(error, (BotoConnectionError, HTTPClientError))

    def _describe(self, error: Exception) -> str:
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = str(details.get("Code") or "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NOT_FOUND_CODES:
                return "not found (no such object)"
            if code == "NoSuchBucket":
                return "not found (no such bucket)"
            if code in _DENIED_CODES:
                return "access denied (check the bucket policy and the credentials' rights)"
            if code in _CREDENTIAL_CODES:
                return f"the S3 credentials were rejected ({code})"
            if code in ("412", "PreconditionFailed"):
                return "the object changed while it was being downloaded; run again"
            message = details.get("Message") or ""
            return self._scrub(f"S3 error {code or status}: {message}".rstrip(": "))
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return (
                "no S3 credentials: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or provide "
                "AWS credentials (environment, profile or IAM role)"
            )
        if self._is_connection_error(error):
            endpoint = self.settings.endpoint_url or "the AWS S3 endpoint"
            return self._scrub(f"cannot reach {endpoint}: {type(error).__name__}")
        return self._scrub(f"{type(error).__name__}: {error}")

    def _scrub(self, message: str) -> str:
        for secret in self.settings.secrets():
            message = message.replace(secret, "***")
        return message
