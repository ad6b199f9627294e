"""Connection URLs as they may appear in messages and logs: never with their password."""

from __future__ import annotations

import re
import urllib.parse

import psycopg

from pgvector_migration.redaction import redact_url

# A password in a key=value connection string (`host=h password=secret dbname=d`).
KEYWORD_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<value>'[^']*'|\S+)", re.IGNORECASE)


def display_url(url: str) -> str:
    """A connection URL without its password, safe for messages and logs, even when the URL
    is malformed."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return without_password(url, url)
    user, host = info.get("user", ""), info.get("host", "")
    return f"postgresql://{user}@{host}:{info.get('port', '5432')}/{info.get('dbname', '')}"


def without_password(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with its URLs redacted and the URL's password
    removed wherever it is echoed, as libpq does with a string it cannot parse."""
    text = KEYWORD_PASSWORD.sub(r"\g<key>***", redact_url(text))
    userinfo = url.partition("://")[2].rpartition("@")[0]
    passwords = {userinfo.partition(":")[2]}
    passwords |= {match.group("value") for match in KEYWORD_PASSWORD.finditer(url)}
    for secret in (passwords | {urllib.parse.unquote(p) for p in passwords}) - {""}:
        text = text.replace(secret, "***")
    return text
