"""Secrets out of URLs before they are shown, logged or stored."""

from __future__ import annotations

import re

_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^\s?#]*@")
_SECRET_PARAMETER = re.compile(r"(?P<head>[?&;](?:api_key|key|token)=)[^&#\s]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo and the values of its `api_key`, `key` and
    `token` query parameters replaced by `***`. Works on text that contains URLs too, and on
    malformed URLs (a password with an unescaped `@` or `/` is still hidden whole)."""
    url = _USERINFO_PASSWORD.sub(r"\g<head>***@", url)
    return _SECRET_PARAMETER.sub(r"\g<head>***", url)
