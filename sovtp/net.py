"""Is a URL this machine? One answer for the privacy notice, the plain-HTTP warning and
the backends' local-server conveniences."""

from __future__ import annotations

import ipaddress
import re
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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d*)?(?=[/?#;]|$)")
# Parameters (query, fragment or ;params) whose names say they carry a secret.
_SECRET_PARAM = re.compile(r"([?&#;][^=&#;?]*(?:key|token|secret|sig|pass|pwd|auth|cred)[^=&#;?]*=)[^&#;?]*", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def redact_url(url: str | None) -> str:
    """``url`` safe to print or write: credentials (``user:password@``, even with a
    ``/``, ``#`` or ``?`` in the password, with or without a scheme) dropped, and the
    values of parameters named like secrets (``api-key``, ``token``, ``sig``, ``pwd``...)
    replaced by ``***``. Every message, log line, manifest and stat that names an
    endpoint goes through here; only the HTTP client ever sees the URL as given.

    The credentials end at the last ``@`` followed by a host[:port]; when a path holds
    an ``@`` too, more than the credentials may be hidden, never less."""
    if not url:
        return ""
    scheme = _SCHEME.match(url)
    head = scheme.group(0) if scheme else ""
    rest = url[len(head) :]
    for at in reversed([i for i, ch in enumerate(rest) if ch == "@"]):
        if _HOST_PORT.match(rest, at + 1):
            rest = rest[at + 1 :]
            break
    return head + _SECRET_PARAM.sub(lambda m: m.group(1) + "***", rest)


def scrub_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (error texts of
    HTTP libraries quote the URL they failed on)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
