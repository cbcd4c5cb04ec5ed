"""The effective settings as they may be shown (`feedsvc config show`, the dashboard): secrets masked, each
with where its value came from (file, environment or default)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from feedsvc.config import Settings

SECRETS = {("web", "secret_key"), ("web", "admin_token"), ("hooks", "postmark_password"), ("hooks", "mailgun_signing_key")}
# URLs that may carry a password (user:password@host).
URLS_WITH_CREDENTIALS = {("store", "url"), ("mail", "smtp_url"), ("inbound", "imap_url")}
MASK = "********"


@dataclass(frozen=True, slots=True)
class ShownSetting:
    section: str
    key: str
    value: str  # JSON, secrets masked
    source: str


def masked(section: str, key: str, value: Any) -> Any:
    if (section, key) in SECRETS and value:
        return MASK
    if (section, key) in URLS_WITH_CREDENTIALS and value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))
    return value


def source_note(settings: Settings, section: str, key: str) -> str:
    source = settings.source_of(section, key)
    if (section, key) == ("web", "secret_key") and not settings.web.secret_key:
        return f"{source}: generated into {settings.store.dir / 'secret.key'}"
    return source


def shown_settings(settings: Settings) -> list[ShownSetting]:
    return [
        ShownSetting(section, key, json.dumps(masked(section, key, value), ensure_ascii=False),
                     source_note(settings, section, key))
        for section, values in settings.model_dump(mode="json").items()
        for key, value in values.items()
    ]


def origin(settings: Settings) -> str:
    """Where the configuration as a whole came from."""
    return str(settings.config_path or ("the bundled example" if settings.bundled_example else "no file"))
