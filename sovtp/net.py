"""Is a URL this machine? One answer for the privacy notice, the plain-HTTP warning and
the backends' local-server conveniences."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse


def is_loopback_host(host: str) -> bool:
    """'localhost' or a loopback address; a name such as 127.example.com is not."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    return bool(url) and is_loopback_host(urlparse(url).hostname or "")


# Query parameters that carry secrets in some gateways (Azure's api-key, signed URLs).
_SECRET_PARAMS = ("key", "token", "secret", "sig", "password", "auth")


def redact_url(url: str | None) -> str:
    """``url`` safe to print or write: ``user:password@`` dropped and the values of
    query parameters named like secrets (``api-key``, ``token``, ``sig``...) replaced by
    ``***``. Every message, log line, manifest and stat that names an endpoint goes
    through here; only the HTTP client ever sees the URL as given."""
    if not url:
        return ""
    from urllib.parse import parse_qsl, urlencode

    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v) for k, v in pairs], safe="*")
    return parsed._replace(netloc=netloc, query=query).geturl()
