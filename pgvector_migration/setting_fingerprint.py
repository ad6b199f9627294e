"""The fingerprint that decides when a collection is stale, and the rules by which settings
take part in it.

A setting's declaration (`setting_declarations`) names its rule; a setting without one is not
part of the fingerprint. The rules keep fingerprints made before a setting existed valid: an
option counts only when it can change anything, and some only when they differ from their
default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

# The value a fingerprint rule returns for a setting that does not count in these settings.
LEFT_OUT = object()
# (the setting's value, every setting's value by name, whether an upload is read) -> the value
# the fingerprint hashes, or LEFT_OUT.
FingerprintRule = Callable[[Any, Mapping[str, Any], bool], Any]


def always(value: Any, _values: Mapping[str, Any], _reads_upload: bool) -> Any:
    """The setting always shapes chunk texts, ids, metadata or vectors."""
    return value


def engine_when_reading_uploads(value: Any, _values: Mapping[str, Any], reads_upload: bool) -> Any:
    """The extraction engine only shapes text read from an upload: for a file split from its
    stored content it counts as the default engine."""
    return value if reads_upload else ""


def while_engine_is(engine: str) -> FingerprintRule:
    """An engine's own output option counts only while that engine reads the upload, so
    fingerprints made before the option existed stay valid."""

    def rule(value: Any, values: Mapping[str, Any], reads_upload: bool) -> Any:
        return value if reads_upload and values["content_extraction_engine"] == engine else LEFT_OUT

    return rule


def pdf_mode_other_than_page(value: Any, _values: Mapping[str, Any], reads_upload: bool) -> Any:
    """The PDF loader's mode shapes text only when an upload is read, and is left out at its
    default so fingerprints made before the setting existed stay valid."""
    return value if reads_upload and value != "page" else LEFT_OUT


def ocr_while_extracting_images(value: Any, values: Mapping[str, Any], reads_upload: bool) -> Any:
    """The OCR parameters shape text only when images of an upload are read."""
    return value if reads_upload and values["pdf_extract_images"] else LEFT_OUT


def when_set(value: Any, _values: Mapping[str, Any], _reads_upload: bool) -> Any:
    """How the prefix reaches the provider changes vectors, but counts only when set, so
    fingerprints made before the setting existed stay valid."""
    return LEFT_OUT if value is None else value


def settings_fingerprint(
    values: Mapping[str, Any], reads_upload: bool, rules: Mapping[str, FingerprintRule]
) -> str:
    """A digest of the settings that change chunk texts, ids, metadata or vectors: exactly the
    settings `rules` names (those declared with a fingerprint rule), each as its rule says.

    Listing what counts (rather than what does not) keeps a setting added later out of the
    digest, so adding one leaves every existing collection complete.
    """
    relevant = {}
    for name, rule in rules.items():
        value = rule(values[name], values, reads_upload)
        if value is not LEFT_OUT:
            relevant[name] = value
    encoded = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
