"""The one redaction of secrets in URLs and text: whatever may reach a log, run metadata, an alert or the UI goes
through here first. A URL keeps what a person needs to recognise it (scheme, host, port, path) and loses its
userinfo and every path segment or query value that is, or looks like, a credential."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query keys that carry credentials by name (AWS presigning, OAuth, API keys, webhooks, basic tokens).
_SECRET_KEY = re.compile(r"token|secret|passw|pwd|key|sig|auth|credential|session|code|hash", re.IGNORECASE)
# A value that looks generated whatever its key: long, one word, letters mixed with digits. Lowercase hex is an
# identifier here (run ids, digests), not a credential: the platform's own secrets are mixed-case base62.
_TOKEN_LIKE = re.compile(r"(?=.*[A-Za-z])(?=.*\d)(?![0-9a-f]+$)[A-Za-z0-9_\-.~+=]{20,}")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str, keep_path: bool = True) -> str:
    """``url`` without userinfo and with credential-like query values masked; ``keep_path=False`` keeps only
    scheme and host (a webhook's path is often its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL after all (a bad port, a broken IPv6 literal): show nothing of it
        return MASK
    if ":" in host:
        host = f"[{host}]"
    userinfo = f"{MASK}@" if "@" in parts.netloc else ""
    if not keep_path:
        return urlunsplit((parts.scheme, f"{userinfo}{host}{port}", "", "", ""))
    path = "/".join(MASK if _TOKEN_LIKE.fullmatch(segment) else segment for segment in parts.path.split("/"))
    query = urlencode(
        [
            (k, MASK if _SECRET_KEY.search(k) or _TOKEN_LIKE.fullmatch(v) else v)
            for k, v in parse_qsl(parts.query, True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, f"{userinfo}{host}{port}", path, query, parts.fragment))


def redact(text: str) -> str:
    """Every URL inside ``text`` redacted (error messages quote the URL they failed on)."""
    return _URL.sub(lambda found: redact_url(found.group(0)), text)
