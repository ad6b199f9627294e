"""The OpenAI embeddings protocol as the fake server checks and answers it: OpenAI-style error
bodies (``{"error": {"message", "type", "param", "code"}}``), retry headers, and the validation
of an embeddings request body (400s worded as OpenAI words them)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "OpenAIError",
    "injected_error",
    "retry_after_headers",
    "validate_embeddings_request",
]

Base64Support = Literal["answer", "ignore", "refuse"]


class OpenAIError(Exception):
    """An error answer: its status, OpenAI-style body and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _default_error_type(status)
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``retry-after-ms`` and ``retry-after`` for a wait of ``seconds``."""
    return {
        "retry-after-ms": str(max(0, round(seconds * 1000))),
        "retry-after": _format_seconds(seconds),
    }


def injected_error(status: int, retry_after_seconds: float) -> OpenAIError:
    """The error of a failure injected with ``fail_next``: a 429 carries retry headers."""
    if status == 429:
        return OpenAIError(
            429,
            "Rate limit reached for requests (injected by the test server).",
            code="rate_limit_exceeded",
            headers=retry_after_headers(retry_after_seconds),
        )
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return OpenAIError(status, f"{phrase} (injected by the test server).")


def validate_embeddings_request(
    body: Any,
    *,
    default_dimensions: int,
    max_inputs_per_request: int | None,
    base64_support: Base64Support,
) -> tuple[list[str], str, int, str]:
    """``(texts, model, dimensions, encoding_format)`` of a valid request body, else the 400
    OpenAI answers. ``base64_support`` says how the server treats ``encoding_format=base64``:
    ``"answer"`` it, ``"ignore"`` it (floats), or ``"refuse"`` it with a 400."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(
            400,
            "you must provide a model parameter",
            param="model",
            code="missing_required_parameter",
        )
    if "input" not in body:
        raise OpenAIError(
            400,
            "'input' is a required property",
            param="input",
            code="missing_required_parameter",
        )
    raw_input = body["input"]
    if isinstance(raw_input, str):
        texts = [raw_input]
    elif isinstance(raw_input, list) and all(isinstance(x, str) for x in raw_input):
        texts = list(raw_input)
    else:
        raise OpenAIError(
            400,
            "'$.input' is invalid: this test server accepts a string or a list of strings "
            "(token arrays are not supported).",
            param="input",
        )
    if not texts:
        raise OpenAIError(400, "'$.input' is invalid: the list must not be empty.", param="input")
    if any(t == "" for t in texts):
        raise OpenAIError(
            400, "'$.input' is invalid: input strings must not be empty.", param="input"
        )
    limit = max_inputs_per_request
    if limit is not None and len(texts) > limit:
        raise OpenAIError(
            400,
            f"'$.input' is invalid: too many inputs ({len(texts)}); "
            f"the maximum is {limit} inputs per request.",
            param="input",
        )
    dimensions = body.get("dimensions", None)
    if dimensions is None:
        dimensions = default_dimensions
    elif not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise OpenAIError(
            400, f"Invalid value for 'dimensions': {dimensions!r}.", param="dimensions"
        )
    encoding_format = body.get("encoding_format", None) or "float"
    if encoding_format == "base64" and base64_support == "ignore":
        encoding_format = "float"
    if encoding_format not in ("float", "base64") or (
        encoding_format == "base64" and base64_support == "refuse"
    ):
        raise OpenAIError(
            400,
            f"Invalid value for 'encoding_format': {encoding_format!r}; "
            "expected 'float' or 'base64'.",
            param="encoding_format",
        )
    return texts, model, dimensions, encoding_format
