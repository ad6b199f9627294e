"""Keeping credentials out of every message, log line, summary and table.

A URL may carry a password (`https://user:pass@host/v1`) or a key in its query
(`?api-key=...`); settings carry API keys. Anything we show passes through here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_QUERY_NAMES = ("key", "token", "secret", "password", "sig", "signature", "auth")
# scheme://userinfo@ inside free text; the userinfo ends at the last '@' before the host.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@]*:[^/\s]*)@")


def redact_url(url: str) -> str:
    """The URL with its password and any secret-looking query value masked; the user name and
    host stay, so the message still says where."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [
                    (name, MASK if any(s in name.lower() for s in SECRET_QUERY_NAMES) else value)
                    for name, value in pairs
                ],
                safe="*",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return redact_text(url)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Free text with every `scheme://user:password@` masked and each given secret (API keys,
    passwords) replaced wherever it appears."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['userinfo'].split(':', 1)[0]}:{MASK}@", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
