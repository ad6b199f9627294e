"""Where Open WebUI keeps uploads in object storage: its `s3://{bucket}/{key}` paths and its
S3_* settings, read from the same environment variables (see upload_storage for how the
objects are fetched)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

S3_URL_PREFIX = "s3://"


def is_s3_url(stored_path: str | None) -> bool:
    return bool(stored_path) and stored_path.startswith(S3_URL_PREFIX)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); ValueError when either part is empty."""
    if not url.startswith(S3_URL_PREFIX):
        raise ValueError(f"{url} is not an s3:// path")
    bucket, _, key = url[len(S3_URL_PREFIX) :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{url} does not name a bucket and an object key")
    return bucket, key


@dataclass(frozen=True)
class S3Settings:
    """Open WebUI's S3_* settings; the keys are hidden from `repr`."""

    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    region_name: str | None = None
    bucket_name: str | None = None
    endpoint_url: str | None = None
    use_accelerate_endpoint: bool = False
    addressing_style: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        environ = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            return environ.get(name) or None

        return cls(
            access_key_id=value("S3_ACCESS_KEY_ID"),
            secret_access_key=value("S3_SECRET_ACCESS_KEY"),
            region_name=value("S3_REGION_NAME"),
            bucket_name=value("S3_BUCKET_NAME"),
            endpoint_url=value("S3_ENDPOINT_URL"),
            use_accelerate_endpoint=environ.get("S3_USE_ACCELERATE_ENDPOINT", "false").lower()
            == "true",
            addressing_style=value("S3_ADDRESSING_STYLE"),
        )

    @property
    def explicit_keys(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    def secrets(self) -> list[str]:
        """Strings that must never appear in a message."""
        return [s for s in (self.access_key_id, self.secret_access_key) if s and len(s) >= 4]
