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
