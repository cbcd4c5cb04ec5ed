"""Configuration: `feedsvc.toml`, overridden key by key by `FEEDSVC_<SECTION>__<KEY>` environment variables.

Three ways to be configured, decided once at start:
- a config file (`--config`, `$FEEDSVC_CONFIG`, `./feedsvc.toml`), with the variables overriding it;
- no file but at least one `FEEDSVC_<SECTION>__<KEY>` variable (a container): the variables over the documented
  defaults are the whole configuration, and `[site] url` is required;
- neither: the bundled example site (the README's first command), announced in one line at start.

Relative paths are resolved against the folder of the config file (or the current folder when the value
comes from the environment or there is no file), so a config works from wherever feedsvc is started.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from feedsvc.resources import bundled_path

CONFIG_ENV = "FEEDSVC_CONFIG"
CONFIG_FILENAME = "feedsvc.toml"
ENV_PREFIX = "FEEDSVC_"
ENV_DELIMITER = "__"

# Secrets and tokens published with feedsvc (examples, docs, earlier compose files): anyone can sign links or
# call the admin API with them, so they are refused like a short one.
PUBLIC_SECRETS = frozenset({"change-me-to-a-long-random-string"})
MIN_SECRET_BYTES = 32


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


# Defaults are values, the mutable ones and the sections' too: pydantic copies them for each model it makes. A
# default_factory costs an inspection of its signature when the class is built, and a builtin's (`list`, `dict`)
# is parsed from text: together a sixth of the instructions of building these models, at every start.
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSettings(_Section):
    title: str = "My blog"
    url: str = Field(description="Public base URL of the blog, e.g. https://example.org")
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: str = ""
    author_email: str = ""

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "://" not in value or len(value) < 11:
            raise ValueError("must be an absolute http(s) URL such as https://example.org")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Asia/Jakarta)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PostsSettings(_Section):
    dir: Path = Path("posts")
    # Placeholders: {site_url} {slug} {year} {month} {day}
    url_pattern: str = "{site_url}/{slug}/"
    # Relative link prefix (as written in posts) -> absolute URL prefix, e.g. "../../assets/" -> "https://example.org/assets/"
    asset_urls: dict[str, str] = {}
    # Relative link prefix -> folder on disk, so `feedsvc check` can tell whether an image exists
    asset_dirs: dict[str, Path] = {}
    max_file_bytes: int = 5 * 1024 * 1024
    # Tags past this many in one post are not used (and `feedsvc check` says so): each tag is a feed of its own.
    max_tags: Annotated[int, Field(ge=1, le=1000)] = 32
    extensions: list[str] = [".md", ".markdown", ".txt"]
    # Whose rules the folder is read by: "auto" (detected from the folder's hugo.toml, _config.yml + _posts/...),
    # "feedsvc" (any post file, url_pattern), or a site generator's name.
    convention: Literal["auto", "feedsvc", "hugo", "jekyll", "pelican", "eleventy"] = "auto"

    @field_validator("url_pattern")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(site_url="", slug="", year="", month="", day="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad placeholder {exc} (use {{site_url}} {{slug}} {{year}} {{month}} {{day}})") from None
        if "{slug}" not in value:
            raise ValueError("must contain {slug}, or every post would get the same URL")
        return value


class FeedsSettings(_Section):
    output_dir: Path = Path("public")
    items: int = Field(20, ge=1, le=1000)
    websub_hub: str = ""


class StoreSettings(_Section):
    dir: Path = Path("subscribers")
    # Empty: SQLite at {dir}/feedsvc.db. Otherwise any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db
    url: str = ""
    # At start, a database server that does not answer yet (still coming up) is retried for this long.
    connect_timeout: float = Field(30.0, ge=0)

    @property
    def database_url(self) -> str:
        return self.url or f"sqlite:///{self.dir / 'feedsvc.db'}"

    @property
    def outbox_dir(self) -> Path:
        return self.dir / "outbox"


class MailSettings(_Section):
    # Empty: mail goes into the Maildir {store.dir}/outbox. smtp://user:pass@host:587 (STARTTLS) or smtps://…:465
    smtp_url: str = ""
    from_address: str = "feedsvc@localhost"
    from_name: str = ""
    reply_to: str = ""
    connections: int = Field(8, ge=1, le=64)
    rate_limit: float = Field(0.0, ge=0, description="messages per second over all connections; 0 = unlimited")
    messages_per_connection: int = Field(100, ge=1)
    timeout: float = Field(30.0, gt=0)
    # With retry_base_seconds = 60 and backoff doubling (capped at 12 h), 12 attempts span a day or more:
    # a relay that is down for hours loses nothing, as with a mail server's own queue lifetime.
    max_attempts: int = Field(12, ge=1)
    retry_base_seconds: float = Field(60.0, ge=0)
    batch_size: int = Field(200, ge=1)
    # How long a claimed batch stays reserved for one sender process; a process killed mid-batch leaves its
    # unsent claims to others after this long. Must outlast sending one batch (at rate_limit, if set).
    lease_seconds: float = Field(300.0, gt=0)
    templates_dir: Path | None = None
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: Path | None = None
    # Envelope sender for bounces, e.g. bounces@bounces.example.org: each mail goes out from
    # bounces+<signed delivery token>@…, and the mailto unsubscribe is unsubscribe+<signed token>@the same domain.
    # Empty: mail goes out from from_address and bounces are learnt only from SMTP refusals.
    bounce_address: str = ""
    # The name given in EHLO; empty: this machine's name.
    ehlo_name: str = ""
    # The sender's postal address, shown at the foot of every mail (CAN-SPAM asks for one).
    postal_address: str = ""
    # Mail a welcome (templates mail/welcome.*) once a subscription is confirmed.
    welcome: bool = False


class InboundSettings(_Section):
    """Where bounces, complaints and mailto unsubscribes arrive (see README "Bounces and complaints")."""

    # A Maildir the site's MTA delivers the bounce address to; empty: none.
    maildir: Path | None = None
    # imaps://user:password@host:993/INBOX, or imap://… (STARTTLS is required); empty: none.
    imap_url: str = ""
    # Processed messages are moved here (created if missing); empty: they are only flagged \Seen.
    imap_processed_folder: str = ""
    # A CA bundle to trust for the IMAP server's certificate besides the system's (a private CA).
    imap_ca_file: Path | None = None
    poll_seconds: float = Field(default=60.0, gt=0)
    # host:port for feedsvc's own receiving SMTP server (MX of the bounce domain); empty: none.
    smtp_listen: str = ""
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Soft bounces suppress an address after this many within this many days.
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_window_days: float = Field(default=14.0, gt=0)


class HooksSettings(_Section):
    """Provider webhooks under /hooks/<provider>; a provider whose secret is empty is refused."""

    # Amazon SES through SNS: the topic ARNs to accept (empty: any topic whose message verifies).
    ses_topic_arns: list[str] = []
    # Certificate URLs that may sign besides https://sns.<region>.amazonaws.com/ (only for tests).
    ses_extra_cert_url_prefixes: list[str] = []
    ses_enabled: bool = False
    postmark_username: str = ""
    postmark_password: str = ""
    mailgun_signing_key: str = ""
    # SendGrid's signed event webhook: the verification key as shown by SendGrid (base64 DER).
    sendgrid_public_key: str = ""
    # Signed requests older than this are refused (replays).
    max_age_seconds: int = Field(default=900, ge=60)


class DigestSettings(_Section):
    daily_time: time = time(8, 0)
    weekly_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    weekly_time: time = time(8, 0)
    # The day of the month (1-31; past a shorter month's end, its last day) and the time of the monthly digest.
    monthly_day: int = Field(default=1, ge=1, le=31)
    monthly_time: time = time(8, 0)
    # Past this many bytes of HTML a digest shows summaries and links instead of full posts (Gmail clips at 102 KB).
    html_budget_bytes: int = 90_000


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Base URL of this service as readers reach it (links in mails). Empty: http://{host}:{port}
    public_url: str = ""
    # Signs confirmation/unsubscribe tokens. Empty: generated once into {store.dir}/secret.key
    secret_key: str = ""
    admin_token: str = ""
    confirm_token_max_age: int = 7 * 24 * 3600
    subscribe_rate_per_client: int = Field(10, ge=1, description="subscribe requests per client per hour")
    subscribe_rate_per_address: int = Field(3, ge=1, description="confirmation mails per address per hour")
    # Feed responses may be cached this long (Cache-Control max-age); revalidation by ETag is cheap anyway.
    feed_max_age: int = Field(300, ge=0)
    # Larger request bodies get 413; the admin API's CSV import has its own, larger limit.
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_import_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # /metrics and /api/openapi.json answer these networks without a token (anyone else needs the admin token).
    metrics_networks: list[str] = ["127.0.0.1/32", "::1/128"]
    # A client must send its request headers within this many seconds of connecting (or of its last answer).
    header_timeout: float = Field(10.0, gt=0)
    # Open HTTP connections at most; past it the one waiting longest for its headers is closed. 0: as many as
    # the open-file limit allows, keeping 256 descriptors for the store, SMTP and the feeds.
    max_connections: int = Field(0, ge=0)
    # Web copies: every published post at /posts/<slug>/ (or at its own URL when site.url is this service),
    # every sent edition at /archive/<edition>/ (the mails' "view in browser") and the archive index.
    archive: bool = False

    @field_validator("metrics_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP network such as 10.0.0.0/8 or ::1/128") from None
        return value

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @field_validator("secret_key", "admin_token")
    @classmethod
    def _private_secret(cls, value: str) -> str:
        if not value:
            return value
        if value in PUBLIC_SECRETS:
            raise ValueError("is the placeholder published with feedsvc's examples; set a random value of your own")
        size = len(value.encode())
        if size < MIN_SECRET_BYTES:
            raise ValueError(
                f"is {size} bytes, fewer than {MIN_SECRET_BYTES}; use a random value such as the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value


class SchedulerSettings(_Section):
    watch: Literal["events", "poll"] = "events"
    poll_interval: float = Field(2.0, gt=0)
    # The quiet time a save of several events waits for (a post renamed, removed or emptied midway; `watch.py`).
    debounce_ms: int = Field(50, ge=0)
    drain_interval: float = Field(5.0, gt=0)
    # With several instances on PostgreSQL, the leader (which runs watch/publish/digest jobs) holds a lease this
    # long and renews it every third of it; a leader that dies is replaced within this time.
    leader_ttl: float = Field(15.0, ge=3)
    # On SIGTERM/SIGINT, in-flight deliveries get this long to finish before the process exits anyway.
    shutdown_timeout: float = Field(20.0, gt=0)
    # A feed build (scan and write) taking longer is stopped, logged and tried again later.
    rebuild_timeout: float = Field(120.0, gt=0)


class FediverseSettings(_Section):
    """The blog as an ActivityPub actor (README "Fediverse"): followable as @handle@host, posts delivered."""

    enabled: bool = False
    # The account name: @handle@<host of web.public_url>.
    handle: str = "blog"
    # Empty: the site's title and description.
    display_name: str = ""
    summary: str = ""
    # Absolute URL of the profile picture; empty: none.
    icon: str = ""
    # Talk to servers at private or loopback addresses (tests on 127.0.0.1); off, so that a remote actor cannot
    # make feedsvc fetch from the machine's own network.
    allow_private_addresses: bool = False
    # Requests per minute one host may make to the inboxes; past it, 429.
    inbox_rate_limit: int = Field(300, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    # A signature older (or newer) than this is refused.
    signature_max_age: int = Field(3600, ge=60)
    # Actors' public keys are fetched once and kept this long.
    key_cache_seconds: int = Field(3600, ge=0)
    # Outgoing: requests in flight at once, and to any one host at once.
    concurrency: int = Field(16, ge=1, le=512)
    max_requests_per_host: int = Field(4, ge=1)
    timeout: float = Field(10.0, gt=0)
    # With retry_base_seconds = 60, doubling up to 12 h: a server down for a day gets the post when it is back.
    max_attempts: int = Field(10, ge=1)
    retry_base_seconds: float = Field(60.0, ge=0)
    batch_size: int = Field(500, ge=1)
    lease_seconds: float = Field(120.0, gt=0)
    # Items per page of the outbox.
    outbox_page_size: int = Field(20, ge=1, le=200)

    @field_validator("handle")
    @classmethod
    def _plain_handle(cls, value: str) -> str:
        if not value or not all(char.isascii() and (char.isalnum() or char in "._-") for char in value):
            raise ValueError("must be letters, digits, '.', '_' or '-', e.g. \"blog\"")
        return value

    @field_validator("icon")
    @classmethod
    def _absolute_icon(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL of an image")
        return value


class LogSettings(_Section):
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDSVC_", env_nested_delimiter="__", extra="forbid")

    site: SiteSettings
    posts: PostsSettings = PostsSettings()
    feeds: FeedsSettings = FeedsSettings()
    store: StoreSettings = StoreSettings()
    mail: MailSettings = MailSettings()
    digest: DigestSettings = DigestSettings()
    web: WebSettings = WebSettings()
    inbound: InboundSettings = InboundSettings()
    hooks: HooksSettings = HooksSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    fediverse: FediverseSettings = FediverseSettings()
    log: LogSettings = LogSettings()

    # The config file the values came from; None when configured by the environment or the bundled example.
    config_path: Path | None = Field(default=None, exclude=True)
    _bundled_example: bool = PrivateAttr(default=False)
    _sources: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    @property
    def bundled_example(self) -> bool:
        """True when nothing was configured and feedsvc runs the example site shipped with it."""
        return self._bundled_example

    def source_of(self, section: str, key: str) -> str:
        """Where a setting's value came from: `file <path>`, `environment <NAME>` or `default`."""
        return self._sources.get((section, key), "default")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment overrides them key by key.
        return env_settings, init_settings


_PATH_KEYS = {
    ("posts", "dir"),
    ("feeds", "output_dir"),
    ("store", "dir"),
    ("mail", "templates_dir"),
    ("mail", "dkim_key_file"),
    ("inbound", "maildir"),
    ("inbound", "imap_ca_file"),
}


def find_config(explicit: Path | str | None = None) -> Path | None:
    """The config file to use: --config, else $FEEDSVC_CONFIG, else ./feedsvc.toml, else None."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path.cwd() / CONFIG_FILENAME
    return local if local.is_file() else None


def example_config_path() -> Path:
    return bundled_path("examples") / CONFIG_FILENAME


def environment_keys() -> dict[tuple[str, str], str]:
    """(section, key) -> the FEEDSVC_<SECTION>__<KEY> variable that sets it (names are case-insensitive)."""
    keys = {}
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and ENV_DELIMITER in upper:
            section, _, key = upper.removeprefix(ENV_PREFIX).lower().partition(ENV_DELIMITER)
            keys[(section, key)] = name
    return keys


def load_settings(path: Path | str | None = None) -> Settings:
    """Load and validate the configuration; raise ConfigError with a message naming the bad key."""
    config_path = find_config(path)
    from_environment = environment_keys()
    bundled_example = config_path is None and not from_environment
    source = example_config_path() if bundled_example else config_path
    raw: dict[str, Any] = {}
    if source is not None:
        raw = _read_toml(source)
        # Paths in the file are relative to the file; a run on the bundled example site keeps its feeds and
        # data in the current folder, never inside the package.
        _resolve_paths(raw, source.resolve().parent, Path.cwd() if bundled_example else None)
    raw.setdefault("site", {})  # so a missing URL is reported as site.url, the key to set
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path)) from None
    _resolve_env_paths(settings)
    settings.config_path = config_path
    settings._bundled_example = bundled_example
    file_label = "bundled example" if bundled_example else f"file {config_path}"
    settings._sources = {
        (section, key): file_label for section, values in raw.items() if isinstance(values, dict) for key in values
    }
    settings._sources.update({key: f"environment {name}" for key, name in from_environment.items()})
    return settings


def _read_toml(source: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(source.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist (run `feedsvc init` to write one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {source} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None


_OUTPUT_KEYS = {("feeds", "output_dir"), ("store", "dir")}


def _resolve_paths(raw: dict[str, Any], base: Path, output_base: Path | None) -> None:
    for section, key in _PATH_KEYS:
        value = raw.get(section, {}).get(key)
        if isinstance(value, str) and value:
            anchor = output_base if output_base and (section, key) in _OUTPUT_KEYS else base
            raw[section][key] = str(_absolute(Path(value).expanduser(), anchor))
    asset_dirs = raw.get("posts", {}).get("asset_dirs")
    if isinstance(asset_dirs, dict):
        raw["posts"]["asset_dirs"] = {k: str(_absolute(Path(v), base)) for k, v in asset_dirs.items()}


def _resolve_env_paths(settings: Settings) -> None:
    # Values from the environment (or defaults) that are still relative are taken from the current folder.
    cwd = Path.cwd()
    for section, key in _PATH_KEYS:
        part = getattr(settings, section)
        value = getattr(part, key)
        if isinstance(value, Path) and not value.is_absolute():
            setattr(part, key, _absolute(value, cwd))


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _describe(exc: ValidationError, config_path: Path | None) -> str:
    """One line per bad key (a single problem is a single line), naming the key and how to set it."""
    where = f"set it in {config_path} or with" if config_path else "set it with"
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = "is required but missing" if error["type"] == "missing" else error["msg"]
        if error["type"] == "extra_forbidden":
            message = "is not a known setting"
        env = ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in error["loc"])
        problems.append(f"{key}: {message} ({where} {env})")
    origin = f"in {config_path}" if config_path else "from the environment"
    if len(problems) == 1:
        return f"invalid configuration {origin}: {problems[0]}"
    return "\n  ".join([f"invalid configuration {origin}:", *problems])
