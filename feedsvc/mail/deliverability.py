"""Settings that get mail refused or binned by the big mailbox providers, reported when the service starts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from feedsvc.config import Settings

_PRIVATE_SUFFIXES = (".localhost", ".local", ".test", ".internal", ".lan", ".home.arpa", ".example")


def is_public_host(host: str) -> bool:
    """Whether readers elsewhere would reach `host`: not a loopback/private address or a local-only name."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    return "." in host and host != "localhost" and not host.endswith(_PRIVATE_SUFFIXES)


def deliverability_warnings(settings: Settings) -> list[str]:
    warnings = []
    base = urlsplit(settings.web.base_url)
    if base.scheme == "http" and is_public_host(base.hostname or ""):
        warnings.append(
            f"web.public_url {settings.web.base_url} is plain http on a public host: one-click unsubscribe "
            "(RFC 8058) and Gmail's and Yahoo's sender rules need https links"
        )
    domain = settings.mail.from_address.rpartition("@")[2].lower()
    if settings.mail.smtp_url and not is_public_host(domain):
        warnings.append(
            f"mail goes out as {settings.mail.from_address}, which no mailbox provider accepts: "
            "set mail.from_address to an address of your own domain"
        )
    return warnings
