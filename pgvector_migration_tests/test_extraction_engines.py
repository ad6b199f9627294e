"""CONTENT_EXTRACTION_ENGINE=tika, docling and external against real loopback services.

The services (golden/generate_extraction_golden.py's `ExtractionService`) speak each engine's
protocol and record what they receive. For every case there, golden/extraction/<case>.json holds
what Open WebUI 0.12.4's own `Loader` sent and returned against the same service and answer; our
engines must send the same requests and return the same documents.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from pgvector_migration import cli
from pgvector_migration.pipeline.extraction_engines import (
    extract_documents,
    is_text_file,
    refusal_reason,
)
from pgvector_migration.pipeline.loaders import LoaderError
from pgvector_migration.pipeline.planning import plan_file, source_documents
from pgvector_migration.pipeline.records import SourceFile, file_collection_name
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.resources.extraction_http import send_over_http
from pgvector_migration.sample_data import sample_file_id
from pgvector_migration.settings import (
    SettingsError,
    flatten_legacy_config,
    resolve_rag_settings,
)
from pgvector_migration_tests.golden.generate_extraction_golden import (
    CASES,
    FILE_ID,
    GOLDEN_DIR,
    SERVICE_URL_PLACEHOLDER,
    UPLOAD_PATH_PLACEHOLDER,
    ExtractionService,
    case_config,
    serve_case,
    stored_name,
)

CASES_BY_NAME = {case["name"]: case for case in CASES}
ENGINE_URL_SETTINGS = {
    "tika": "TIKA_SERVER_URL",
    "docling": "DOCLING_SERVER_URL",
    "external": "EXTERNAL_DOCUMENT_LOADER_URL",
}


@pytest.fixture(scope="module")
def service():
    with ExtractionService() as running:
        yield running


def golden(name: str) -> dict:
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text(encoding="utf-8"))


def settings_for(config: dict, environ: dict | None = None):
    return resolve_rag_settings(config, environ or {})


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_case(service: ExtractionService, case: dict, tmp_path: Path):
    upload = tmp_path / stored_name(case)
    upload.write_bytes(case["upload"])
    serve_case(service, case)
    settings = settings_for(case_config(case, service.base_url))
    return upload, extract_documents(
        upload,
        case["filename"],
        case["content_type"],
        settings,
        file_id=FILE_ID,
        transport=send_over_http,
    )


def test_every_case_has_a_golden():
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.json")) == sorted(CASES_BY_NAME)


@pytest.mark.parametrize("name", [c["name"] for c in CASES if "error" not in golden(c["name"])])
def test_documents_and_requests_match_open_webui(service, tmp_path, name):
    case, expected = CASES_BY_NAME[name], golden(name)

    upload, documents = run_case(service, case, tmp_path)

    got = [{"text": d.text, "metadata": d.metadata} for d in documents]
    got = json.loads(
        json.dumps(got).replace(json.dumps(str(upload))[1:-1], UPLOAD_PATH_PLACEHOLDER)
    )
    assert got == expected["documents"]
    requests = [r.summary(case["upload"]) for r in service.requests]
    assert (
        json.loads(json.dumps(requests).replace(service.base_url, SERVICE_URL_PLACEHOLDER))
        == expected["requests"]
    )


@pytest.mark.parametrize("name", [c["name"] for c in CASES if "error" in golden(c["name"])])
def test_answers_open_webui_refuses_fail_the_file_naming_engine_and_url(service, tmp_path, name):
    case, expected = CASES_BY_NAME[name], golden(name)
    engine = case["config"]["rag.content_extraction_engine"]

    with pytest.raises(LoaderError) as raised:
        run_case(service, case, tmp_path)

    message = str(raised.value)
    assert f"engine {engine}" in message and ENGINE_URL_SETTINGS[engine] in message
    assert service.base_url in message
    assert [r.summary(case["upload"]) for r in service.requests] == json.loads(
        json.dumps(expected["requests"]).replace(SERVICE_URL_PLACEHOLDER, service.base_url)
    )
    for secret in ("ext-not-a-secret", "dk-not-a-secret"):
        assert secret not in message


def test_http_error_names_the_status(service, tmp_path):
    with pytest.raises(LoaderError, match=r"answered HTTP 500 Internal Server Error: .*crashed"):
        run_case(service, CASES_BY_NAME["tika_http_500"], tmp_path)


@pytest.mark.parametrize("engine", ["tika", "docling", "external"])
def test_service_down_names_engine_and_url(tmp_path, engine):
    url = closed_port_url()
    upload = tmp_path / "report.pdf"
    upload.write_bytes(b"%PDF-1.4")
    settings = settings_for(
        {
            "rag.content_extraction_engine": engine,
            "rag.tika_server_url": url,
            "rag.docling_server_url": url,
            "rag.external_document_loader_url": url,
            "rag.external_document_loader_api_key": "ext-not-a-secret",
        }
    )
    with pytest.raises(LoaderError) as raised:
        extract_documents(
            upload, "report.pdf", "application/pdf", settings, transport=send_over_http
        )
    message = str(raised.value)
    assert f"engine {engine} ({ENGINE_URL_SETTINGS[engine]}) at {url}" in message
    assert "cannot be reached" in message


def test_a_service_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        upload = tmp_path / "report.pdf"
        upload.write_bytes(b"%PDF-1.4")
        settings = settings_for(
            {"rag.content_extraction_engine": "tika", "rag.tika_server_url": url},
            {"PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT": "1"},
        )
        with pytest.raises(LoaderError, match="did not answer within 1 s"):
            extract_documents(
                upload, "report.pdf", "application/pdf", settings, transport=send_over_http
            )


def test_credentials_in_a_service_url_are_not_shown(tmp_path):
    url = closed_port_url().replace("http://", "http://user:hunter2@")
    upload = tmp_path / "report.pdf"
    upload.write_bytes(b"%PDF-1.4")
    settings = settings_for({"rag.content_extraction_engine": "tika", "rag.tika_server_url": url})
    with pytest.raises(LoaderError) as raised:
        extract_documents(
            upload, "report.pdf", "application/pdf", settings, transport=send_over_http
        )
    assert "hunter2" not in str(raised.value)


def test_external_header_templates_get_the_uploader_id(service, tmp_path):
    case = CASES_BY_NAME["external_object"]
    upload = tmp_path / stored_name(case)
    upload.write_bytes(case["upload"])
    serve_case(service, case)
    settings = settings_for(case_config(case, service.base_url))

    extract_documents(
        upload,
        case["filename"],
        case["content_type"],
        settings,
        FILE_ID,
        "u-1",
        transport=send_over_http,
    )

    assert service.requests[0].headers["x-who"] == "user=u-1||"


# --- which files go to the engine ----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("notes.txt", "text/plain", True),
        ("table.csv", "text/csv", True),
        ("page.html", "text/html", False),
        ("script.py", None, True),
        ("Dockerfile", None, True),
        ("report.pdf", "application/pdf", False),
        ("data.json", "application/octet-stream", True),
        ("table.csv", "application/vnd.ms-excel", False),
    ],
)
def test_text_files_stay_on_the_text_loader_as_in_open_webui(filename, content_type, expected):
    assert is_text_file(filename, content_type) is expected


@pytest.mark.parametrize(
    ("engine", "supported", "content_type", "refused"),
    [
        ("", None, "image/png", True),
        ("tika", None, "image/png", True),
        ("external", None, "image/png", False),
        ("external", None, "video/mp4", False),
        ("external", "", "image/png", True),
        ("tika", "image/*", "image/png", False),
        ("docling", "image/png, image/jpeg", "image/jpeg", False),
        ("docling", "image/png", "image/tiff", True),
        ("tika", "image/*", "application/pdf", False),
    ],
)
def test_media_go_to_an_engine_only_when_open_webui_sends_them(
    engine, supported, content_type, refused
):
    environ = {"CONTENT_EXTRACTION_ENGINE": engine}
    if supported is not None:
        environ["CONTENT_EXTRACTION_SUPPORTED_MEDIA_MIME_TYPES"] = supported
    settings = settings_for({}, environ)
    assert (refusal_reason("upload", content_type, settings) is not None) is refused


# --- settings -----------------------------------------------------------------------------


def test_engine_settings_resolve_from_config_environment_and_defaults():
    defaults = settings_for({})
    assert defaults.tika_server_url == "http://tika:9998"
    assert defaults.tika_server_version == "3"
    assert defaults.docling_server_url == "http://docling:5001"
    assert defaults.docling_params == {}
    assert defaults.external_document_loader_url == ""
    assert defaults.content_extraction_supported_media_mime_types is None

    settings = settings_for(
        {"rag.docling_params": '{"do_ocr": false}', "rag.tika_server_version": 4},
        {
            "CONTENT_EXTRACTION_ENGINE": "Docling",
            "EXTERNAL_DOCUMENT_LOADER_HEADERS": "not json",
            "DOCLING_PARAMS": '{"ignored": "the config table wins"}',
        },
    )
    assert settings.content_extraction_engine == "docling", "Open WebUI lower-cases the env"
    assert settings.docling_params == {"do_ocr": False}
    assert settings.tika_server_version == "4"
    assert settings.external_document_loader_headers == {}


def test_legacy_json_config_keeps_object_settings_whole():
    flat = flatten_legacy_config(
        {"rag": {"docling_params": {"do_ocr": True, "ocr": {"lang": "en"}}, "chunk_size": 5}}
    )
    assert flat == {
        "rag.docling_params": {"do_ocr": True, "ocr": {"lang": "en"}},
        "rag.chunk_size": 5,
    }


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"rag.content_extraction_engine": "tika", "rag.tika_server_url": ""}, "TIKA_SERVER_URL"),
        (
            {"rag.content_extraction_engine": "docling", "rag.docling_server_url": ""},
            "DOCLING_SERVER_URL",
        ),
        ({"rag.content_extraction_engine": "external"}, "EXTERNAL_DOCUMENT_LOADER_URL"),
        (
            {
                "rag.content_extraction_engine": "external",
                "rag.external_document_loader_url": "http://loader",
            },
            "EXTERNAL_DOCUMENT_LOADER_API_KEY",
        ),
    ],
)
def test_engine_without_its_url_is_refused_naming_the_setting(config, setting):
    with pytest.raises(SettingsError, match=setting):
        settings_for(config).validate()


@pytest.mark.parametrize(
    "engine", ["document_intelligence", "mistral_ocr", "datalab_marker", "mineru", "paddleocr_vl"]
)
def test_engines_we_do_not_call_are_refused_by_name(engine):
    with pytest.raises(
        SettingsError, match=rf"CONTENT_EXTRACTION_ENGINE='{engine}'.*not supported"
    ):
        settings_for({"rag.content_extraction_engine": engine}).validate()


def test_unknown_engine_is_refused():
    with pytest.raises(SettingsError, match="'ocr-magic'.*not an engine Open WebUI knows"):
        settings_for({"rag.content_extraction_engine": "ocr-magic"}).validate()


def test_fingerprint_follows_the_engine_and_its_output_options_only():
    default = settings_for({})
    # Digest of the defaults before the engine settings existed: old fingerprints stay valid.
    assert default.splitting_fingerprint() == "2dec9860f87d9a89"
    tika = settings_for({"rag.content_extraction_engine": "tika"})
    assert tika.splitting_fingerprint() != default.splitting_fingerprint()
    moved = tika.with_overrides(tika_server_url="http://elsewhere:9998", docling_params={"x": 1})
    assert moved.splitting_fingerprint() == tika.splitting_fingerprint()
    version_4 = tika.with_overrides(tika_server_version="4")
    assert version_4.splitting_fingerprint() != tika.splitting_fingerprint()
    docling = settings_for({"rag.content_extraction_engine": "docling"})
    ocr = docling.with_overrides(docling_params={"do_ocr": False})
    assert ocr.splitting_fingerprint() != docling.splitting_fingerprint()
    # Text split from stored content never met the engine.
    for engine in (tika, version_4, docling, ocr):
        assert engine.splitting_fingerprint(reads_upload=False) == default.splitting_fingerprint()


# --- the pipeline -------------------------------------------------------------------------


def tika_source_file(tmp_path: Path, content: str | None) -> SourceFile:
    upload = tmp_path / f"{FILE_ID}_report.pdf"
    upload.write_bytes(b"%PDF-1.4 not parsed by us")
    return SourceFile(
        id=FILE_ID,
        user_id="user-1",
        filename="report.pdf",
        stored_path=f"/app/backend/data/uploads/{upload.name}",
        content_type="application/pdf",
        meta={"name": "report.pdf", "content_type": "application/pdf", "data": {}},
        data={"status": "completed", **({"content": content} if content is not None else {})},
        content_hash_column=None,
        upload_path=upload,
    )


def test_stored_content_never_calls_the_engine_and_reextraction_does(service, tmp_path):
    serve_case(service, CASES_BY_NAME["tika_pdf"])
    settings = settings_for(
        {
            "rag.content_extraction_engine": "tika",
            "rag.tika_server_url": service.base_url,
            "rag.enable_markdown_header_text_splitter": False,
        }
    )
    file = tika_source_file(tmp_path, content="What Open WebUI stored.")

    text = source_documents(file, TextSource.STORED, settings, send_over_http).text
    assert text == "What Open WebUI stored." and service.requests == []

    plan = plan_file(file, settings, [file_collection_name(FILE_ID)], transport=send_over_http)

    assert len(service.requests) == 1
    [chunk] = plan.chunks_by_collection[file_collection_name(FILE_ID)]
    assert chunk.text == golden("tika_pdf")["documents"][0]["text"]
    assert chunk.metadata["Content-Type"] == "application/pdf"
    assert chunk.metadata["source"] == chunk.metadata["name"] == "report.pdf"
    assert chunk.metadata["created_by"] == "user-1"
    assert plan.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()


# --- end to end through the CLI -----------------------------------------------------------

TIKA_ROUTED = ("constitution.pdf", "broken_report.pdf", "pride_and_prejudice.docx", "walden.html")


def tika_text_for(request) -> dict:
    """What the fake Tika extracts: a text that names the upload's digest, so files differ."""
    digest = hashlib.sha256(request.body).hexdigest()[:12]
    return {
        "Content-Type": "application/x-sample",
        "X-TIKA:Parsed-By": ["org.apache.tika.parser.DefaultParser"],
        "X-TIKA:content": f"\n  Tika read upload {digest}.\n\nIt has {len(request.body)} bytes.\n",
    }


def upload_digest(data_dir: Path, filename: str) -> str:
    upload = data_dir / "uploads" / f"{sample_file_id(filename)}_{filename}"
    return hashlib.sha256(upload.read_bytes()).hexdigest()


def run_cli(tmp_path: Path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(["--no-progress", "--summary-json", str(summary_path), *flags])
    return code, json.loads(summary_path.read_text()) if summary_path.exists() else {}


def test_cli_reextracts_with_tika(deployment, service, tmp_path, monkeypatch):
    service.requests.clear()
    service.answers.clear()
    service.answer("/tika/text", tika_text_for)
    monkeypatch.setenv("CONTENT_EXTRACTION_ENGINE", "tika")
    monkeypatch.setenv("TIKA_SERVER_URL", service.base_url)

    code, summary = run_cli(tmp_path, "--reextract", "--only", "files")

    assert code == cli.EXIT_OK, summary
    assert summary["files_failed"] == [], "Tika reads the PDF the default loader cannot"
    assert [e["file_id"] for e in summary["unsupported"]] == [sample_file_id("moon_photo.png")]
    # The completeness check extracts again to learn each text's hash, then the chunking step.
    sent = {hashlib.sha256(r.body).hexdigest() for r in service.requests}
    assert sent == {upload_digest(deployment.data_dir, name) for name in TIKA_ROUTED}, (
        "text files stay on the text loader"
    )
    assert all(r.method == "PUT" and r.path == "/tika/text" for r in service.requests)
    assert "content-type" not in service.requests[0].headers, "Open WebUI sends no type to Tika"
    with deployment.connect() as connection:
        rows = connection.execute(
            "SELECT text, vmetadata FROM document_chunk WHERE collection_name = %s",
            (file_collection_name(sample_file_id("constitution.pdf")),),
        ).fetchall()
        text_rows = connection.execute(
            "SELECT vmetadata FROM document_chunk WHERE collection_name = %s",
            (file_collection_name(sample_file_id("federalist_10.txt")),),
        ).fetchall()
    [(text, metadata)] = rows
    assert text.startswith("Tika read upload ") and text.endswith("bytes.")
    assert metadata["Content-Type"] == "application/x-sample"
    assert metadata["name"] == metadata["source"] == "constitution.pdf"
    assert "page" not in metadata
    assert text_rows and all("Content-Type" not in m for (m,) in text_rows)


def test_a_dry_run_reads_each_upload_once(deployment, service, tmp_path, monkeypatch):
    """The dry run's estimate splits the files the assessment already had to read: each
    upload reaches the extraction engine once, not once to assess and again to count."""
    service.requests.clear()
    service.answers.clear()
    service.answer("/tika/text", tika_text_for)
    monkeypatch.setenv("CONTENT_EXTRACTION_ENGINE", "tika")
    monkeypatch.setenv("TIKA_SERVER_URL", service.base_url)

    code, _ = run_cli(tmp_path, "--dry-run", "--reextract", "--only", "files")

    assert code == cli.EXIT_OK
    sent = sorted(hashlib.sha256(r.body).hexdigest() for r in service.requests)
    assert sent == sorted(upload_digest(deployment.data_dir, name) for name in TIKA_ROUTED)


def test_cli_with_tika_down_fails_those_files_and_migrates_the_rest(
    deployment, tmp_path, monkeypatch
):
    url = closed_port_url()
    monkeypatch.setenv("CONTENT_EXTRACTION_ENGINE", "tika")
    monkeypatch.setenv("TIKA_SERVER_URL", url)

    code, summary = run_cli(tmp_path, "--reextract", "--only", "files")

    assert code == cli.EXIT_FAILED
    failed = {entry["file_id"]: entry["error"] for entry in summary["files_failed"]}
    assert set(failed) == {sample_file_id(name) for name in TIKA_ROUTED}
    assert all("engine tika (TIKA_SERVER_URL)" in e and url in e for e in failed.values())
    counts = deployment.counts()
    assert file_collection_name(sample_file_id("federalist_10.txt")) in counts
    assert file_collection_name(sample_file_id("constitution.pdf")) not in counts


def test_switching_engine_rewrites_only_files_read_from_their_upload(
    deployment, tmp_path, monkeypatch
):
    code, first = run_cli(tmp_path, "--stored-text", "--only", "files")
    read_from_upload = {"notes.py"}  # the sample file without stored content that migrates
    monkeypatch.setenv("CONTENT_EXTRACTION_ENGINE", "tika")
    monkeypatch.setenv("TIKA_SERVER_URL", closed_port_url())

    code, second = run_cli(tmp_path, "--stored-text", "--only", "files")

    assert second["files_processed"] == len(read_from_upload)
    assert second["files_skipped_complete"] == first["files_processed"] - len(read_from_upload)


def test_cli_refuses_an_engine_it_cannot_call(deployment, monkeypatch, capsys):
    monkeypatch.setenv("CONTENT_EXTRACTION_ENGINE", "mistral_ocr")

    code = cli.main(["--no-progress"])

    assert code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "configuration error" in err and "CONTENT_EXTRACTION_ENGINE='mistral_ocr'" in err
