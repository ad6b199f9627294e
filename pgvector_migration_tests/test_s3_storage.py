"""Uploads Open WebUI kept in S3 (STORAGE_PROVIDER=s3): downloaded only when their bytes are
needed, once, with clear problems that name the s3:// URL and never the credentials.

Offline: a moto S3 server on 127.0.0.1, no AWS."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pgvector_migration.pipeline.planning import plan_file
from pgvector_migration.pipeline.records import file_collection_name
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.openwebui_uploads import resolve_upload
from pgvector_migration.resources.s3_settings import S3Settings, parse_s3_url
from pgvector_migration.resources.upload_storage import S3Uploads
from pgvector_migration.sample_data import OPENWEBUI_SCHEMA, USER_ID

BUCKET = "owui-uploads"
PREFIX = "openwebui"
ACCESS_KEY_ID = "AKIAMOTOKEYNEVERSHOWN"
SECRET_ACCESS_KEY = "moto-secret-value-that-must-never-leak"
TEXT = ("The migration reads uploads kept in S3 exactly as Open WebUI wrote them. " * 40).encode()


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    """Open WebUI's S3_* variables pointing at moto, a fresh bucket, and no AWS config."""
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("S3_REGION_NAME", "us-east-1")
    monkeypatch.setenv("S3_BUCKET_NAME", BUCKET)
    monkeypatch.setenv("S3_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("S3_ADDRESSING_STYLE", "path")
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    for bucket in client.list_buckets().get("Buckets", []):
        objects = client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
        for item in objects:
            client.delete_object(Bucket=bucket["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket=BUCKET)
    return client


def s3_url(file_id: str, filename: str, bucket: str = BUCKET) -> str:
    return f"s3://{bucket}/{PREFIX}/{file_id}_{filename}"


def put(client, file_id: str, filename: str, body: bytes, bucket: str = BUCKET) -> str:
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{file_id}_{filename}", Body=body)
    return s3_url(file_id, filename, bucket)


@pytest.fixture
def deployment_db(tmp_path, monkeypatch):
    """An empty Open WebUI database; returns a function adding one file row."""
    data_dir = tmp_path / "openwebui"
    (data_dir / "uploads").mkdir(parents=True)
    database = data_dir / "webui.db"
    connection = sqlite3.connect(database)
    connection.executescript(OPENWEBUI_SCHEMA)
    connection.commit()
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    for name in ("UPLOAD_DIR", "RAG_FILE_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def add(file_id: str, filename: str, path: str, content: str | None = None) -> None:
        data = {"status": "completed", **({"content": content} if content is not None else {})}
        meta = {"name": filename, "content_type": "text/plain", "size": 0, "data": {}}
        connection.execute(
            "INSERT INTO file VALUES (?, ?, NULL, ?, ?, ?, ?, 1, 1)",
            (file_id, USER_ID, filename, path, json.dumps(data), json.dumps(meta)),
        )
        connection.commit()

    yield add
    connection.close()


def source(tmp_path: Path, **fields) -> OpenWebUIResource:
    return OpenWebUIResource(download_dir=str(tmp_path / "s3-cache"), **fields)


def files_by_id(resource: OpenWebUIResource, **kwargs) -> dict:
    return {file.id: file for file in resource.iter_files(resource.file_ids(), **kwargs)}


def assert_no_credentials(*texts: object) -> None:
    for text in texts:
        assert ACCESS_KEY_ID not in str(text)
        assert SECRET_ACCESS_KEY not in str(text)


def test_s3_uploads_are_downloaded_only_when_their_bytes_are_needed(
    s3, deployment_db, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="pgvector_migration")
    pdf_like = bytes(range(256)) * 8
    deployment_db("plain", "notes.txt", put(s3, "plain", "notes.txt", TEXT))
    deployment_db("binary", "scan.bin", put(s3, "binary", "scan.bin", pdf_like))
    stored_url = put(s3, "stored", "stored.txt", b"never downloaded")
    deployment_db("stored", "stored.txt", stored_url, content="Text Open WebUI extracted.")
    missing_url = s3_url("missing", "gone.txt")
    deployment_db("missing", "gone.txt", missing_url)
    nobucket_url = s3_url("nobucket", "x.txt", bucket="no-such-bucket-here")
    deployment_db("nobucket", "x.txt", nobucket_url)

    files = files_by_id(source(tmp_path))

    for file_id, body in (("plain", TEXT), ("binary", pdf_like)):
        file = files[file_id]
        assert file.upload_problem is None and file.oversize is None
        assert file.upload_path is not None and file.upload_path.read_bytes() == body
        assert file.upload_path.is_relative_to(tmp_path / "s3-cache")
        assert file.upload_path.name.endswith(f"{file_id}_{file.filename}")
        assert file.stored_path == s3_url(file_id, file.filename)

    stored = files["stored"]
    assert stored.upload_path is None and stored.stored_content is not None
    assert "s3" in stored.upload_problem and stored_url in stored.upload_problem
    cached = list((tmp_path / "s3-cache").rglob("*"))
    assert not any("stored" in path.name for path in cached), "stored content: not fetched"

    missing = files["missing"]
    assert missing.upload_path is None
    assert missing_url in missing.upload_problem and "not found" in missing.upload_problem

    nobucket = files["nobucket"]
    assert nobucket.upload_path is None
    assert nobucket_url in nobucket.upload_problem and "not found" in nobucket.upload_problem

    assert not list((tmp_path / "s3-cache").rglob(".partial-*")), "no partial files left"
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("pgv")]
    assert any("downloaded S3 upload" in message for message in ours)
    assert_no_credentials(
        *(file.upload_problem for file in files.values()),
        *ours,
        repr(OpenWebUIResource().s3_uploads()),
        repr(S3Settings.from_env()),
    )


def test_reextraction_can_ask_for_every_s3_upload(s3, deployment_db, tmp_path):
    url = put(s3, "stored", "stored.txt", TEXT)
    deployment_db("stored", "stored.txt", url, content="Text Open WebUI extracted.")

    assert files_by_id(source(tmp_path), fetch_s3="never")["stored"].upload_path is None
    file = files_by_id(source(tmp_path), fetch_s3="always")["stored"]
    assert file.upload_path is not None and file.upload_path.read_bytes() == TEXT


def test_each_object_is_downloaded_once(s3, deployment_db, tmp_path):
    url = put(s3, "once", "once.txt", TEXT)
    uploads = S3Uploads(S3Settings.from_env(), cache_dir=tmp_path / "cache")

    first = uploads.fetch(url)
    mtime = first.path.stat().st_mtime_ns
    s3.delete_object(Bucket=BUCKET, Key=parse_s3_url(url)[1])
    again = uploads.fetch(url)
    assert again.path == first.path and again.problem is None, "no second request at all"

    put(s3, "once", "once.txt", TEXT)
    later_run = S3Uploads(S3Settings.from_env(), cache_dir=tmp_path / "cache").fetch(url)
    assert later_run.path == first.path and later_run.path.stat().st_mtime_ns == mtime

    put(s3, "once", "once.txt", b"changed bytes")
    changed = S3Uploads(S3Settings.from_env(), cache_dir=tmp_path / "cache").fetch(url)
    assert changed.path != first.path and changed.path.read_bytes() == b"changed bytes"


def test_uploads_over_the_size_limit_are_not_downloaded(s3, deployment_db, tmp_path):
    deployment_db("big", "big.txt", put(s3, "big", "big.txt", b"x" * 4096))
    deployment_db("small", "small.txt", put(s3, "small", "small.txt", b"y" * 100))

    files = files_by_id(source(tmp_path, max_file_mb=0.002))  # about 2 KB

    big = files["big"]
    assert big.upload_path is None and "over the 0.002 MB limit" in big.oversize
    assert "4096 bytes" in big.upload_problem
    assert not any("big" in path.name for path in (tmp_path / "s3-cache").rglob("*"))
    assert files["small"].upload_path.read_bytes() == b"y" * 100 and files["small"].oversize is None


def test_open_webui_reads_from_the_configured_bucket(s3, deployment_db, tmp_path):
    """Open WebUI takes the key from file.path but the bucket from S3_BUCKET_NAME, so a
    deployment whose bucket was copied under a new name keeps working; so does the migration."""
    put(s3, "moved", "moved.txt", TEXT)
    old_url = s3_url("moved", "moved.txt", bucket="old-bucket-name")
    deployment_db("moved", "moved.txt", old_url)

    file = files_by_id(source(tmp_path))["moved"]
    assert file.upload_path is not None and file.upload_path.read_bytes() == TEXT


def test_rejected_credentials_and_unreachable_endpoint_are_clear(
    s3, deployment_db, tmp_path, monkeypatch
):
    url = put(s3, "doc", "doc.txt", TEXT)
    deployment_db("doc", "doc.txt", url)
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    uploads = S3Uploads(S3Settings.from_env(), cache_dir=tmp_path / "cache")

    problems = [uploads.fetch(url).problem for _ in range(5)]

    assert all(url in problem for problem in problems)
    assert "cannot reach http://127.0.0.1:9" in problems[0]
    assert "failed 3 times in a row" in problems[-1], "the rest fail fast"
    assert_no_credentials(*problems)


def test_other_storage_providers_are_named(tmp_path):
    found, problem = resolve_upload("gs://bucket/abc_report.txt", tmp_path)
    assert found is None and "gcs" in problem and "not supported yet" in problem
    azure = "https://account.blob.core.windows.net/container/abc_report.txt"
    found, problem = resolve_upload(azure, tmp_path)
    assert found is None and "azure" in problem and "not supported yet" in problem


def test_a_downloaded_upload_is_chunked(s3, deployment_db, tmp_path):
    deployment_db("doc", "doc.txt", put(s3, "doc", "doc.txt", TEXT))
    resource = source(tmp_path, chunk_size=300, chunk_overlap=0)
    file = files_by_id(resource)["doc"]

    plan = plan_file(file, resource.rag_settings(), [file_collection_name("doc")])

    chunks = plan.chunks_by_collection[file_collection_name("doc")]
    assert len(chunks) > 1 and plan.chunk_count == len(chunks)
    assert all(0 < len(chunk.text) <= 300 for chunk in chunks)
    assert "exactly as Open WebUI wrote them" in chunks[0].text
