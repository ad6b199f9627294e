"""Keeping credentials out of every message, log line, summary and table.

A URL may carry a password (`https://user:pass@host/v1`) or a key in its query
(`?api-key=...`); settings carry API keys. Anything we show passes through here first. Both
functions work on free text that contains URLs, and on malformed URLs (a password with an
unescaped `@` or `/` is hidden whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
SECRET_QUERY_NAMES = ("key", "token", "secret", "password", "sig", "signature", "auth")
_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^\s?#]*@")
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<name>[^=&#\s?;]+)=)[^&#\s;]*")


def _masked_parameter(match: re.Match) -> str:
    name = match["name"].lower()
    return match["head"] + MASK if any(s in name for s in SECRET_QUERY_NAMES) else match[0]


def redact_url(url: str) -> str:
    """The URL (or text holding URLs) with its userinfo password and any secret-looking query
    value masked; the user name and host stay, so the message still says where."""
    url = _USERINFO_PASSWORD.sub(rf"\g<head>{MASK}@", url)
    return _QUERY_PARAMETER.sub(_masked_parameter, url)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Free text with every URL redacted and each given secret (API keys, passwords) replaced
    wherever it appears."""
    text = redact_url(text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
