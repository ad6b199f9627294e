"""Sends the content-extraction engines' requests (tika, docling, external) over HTTP.

`pipeline.extraction_engines` builds every request and reads every answer; this is the one
place that opens a connection for them, so the pipeline stays free of network code. No
retries, as in Open WebUI; the request's timeout bounds the wait, so one hung service fails
its file instead of the run.
"""

from __future__ import annotations

import httpx

from pgvector_migration.pipeline.extraction_services import ServiceAnswer, ServiceRequest


def send_over_http(request: ServiceRequest) -> ServiceAnswer:
    """Send one request and return the answer, whatever its status (a `Transport`); a service
    that cannot be reached or does not answer in time fails the file, naming engine and URL.

    A plain function, so the planning processes (`plan_files` with workers) can be handed it.
    """
    try:
        response = httpx.request(
            request.method,
            request.url,
            timeout=request.timeout,
            follow_redirects=True,
            headers=request.headers,
            content=request.content,
            data=request.data,
            files=request.files,
        )
    except httpx.TimeoutException as error:
        raise request.error(
            f"did not answer within {request.timeout} s (PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT)"
        ) from error
    except httpx.HTTPError as error:
        raise request.error(f"cannot be reached: {type(error).__name__}: {error}") from error
    return ServiceAnswer(
        response.status_code, response.reason_phrase, response.content, response.text
    )
