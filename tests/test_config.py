import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from pydantic import ValidationError

from feedsvc.config import PUBLIC_SECRETS, ConfigError, Settings, environment_keys, load_settings

LONG_SECRET = "a-private-secret-of-forty-bytes-length!!"


@pytest.fixture
def no_environment_config(monkeypatch):
    """No FEEDSVC_<SECTION>__<KEY> variable from the shell that runs the tests."""
    for name in environment_keys().values():
        monkeypatch.delenv(name)
    monkeypatch.delenv("FEEDSVC_CONFIG", raising=False)


def _clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.upper().startswith("FEEDSVC_") and "__" in k)}
    env.pop("FEEDSVC_CONFIG", None)
    return env | variables


def _feedsvc(*args: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *args], cwd=cwd, env=_clean_env(**variables),
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_relative_paths_resolve_against_the_config_file(make_settings, tmp_path):
    settings = make_settings()
    assert settings.posts.dir == tmp_path / "posts"
    assert settings.feeds.output_dir == tmp_path / "public"
    assert settings.store.database_url == f"sqlite:///{tmp_path / 'subscribers' / 'feedsvc.db'}"


def test_environment_overrides_one_key_and_keeps_the_rest(make_settings, monkeypatch):
    monkeypatch.setenv("FEEDSVC_SITE__TITLE", "From the environment")
    monkeypatch.setenv("FEEDSVC_FEEDS__ITEMS", "7")
    settings = make_settings()
    assert settings.site.title == "From the environment"
    assert settings.site.url == "https://blog.example.org"
    assert settings.feeds.items == 7


def test_missing_site_url_is_named(tmp_path):
    path = tmp_path / "feedsvc.toml"
    path.write_text('[site]\ntitle = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "site.url: is required but missing" in str(caught.value)
    assert "FEEDSVC_SITE__URL" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[site]\nurl = "example.org"\n', "site.url: Value error, must be an absolute http(s) URL"),
        ('[site]\nurl = "https://example.org"\ntimezone = "Mars/Olympus"\n', "site.timezone: Value error, unknown timezone"),
        ('[site]\nurl = "https://example.org"\ntitel = "typo"\n', "site.titel: is not a known setting"),
        ('[site\nurl = "https://example.org"\n', "is not valid TOML"),
    ],
)
def test_bad_values_are_reported_by_key(tmp_path, body, expected):
    path = tmp_path / "feedsvc.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in str(caught.value)


def test_no_config_uses_the_example_site_and_writes_to_the_current_folder(tmp_path, monkeypatch, no_environment_config):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.config_path is None and settings.bundled_example
    assert (settings.posts.dir / "hello-toml.md").is_file()
    assert settings.feeds.output_dir == tmp_path / "public"
    assert settings.store.dir == tmp_path / "subscribers"


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path(tmp_path / "nope.toml"))


def test_the_environment_alone_is_the_whole_configuration_over_the_documented_defaults(
    tmp_path, monkeypatch, no_environment_config
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEEDSVC_SITE__URL", "https://blog.example.org")
    monkeypatch.setenv("FEEDSVC_STORE__DIR", "data")
    settings = load_settings()
    assert settings.config_path is None and not settings.bundled_example
    defaults = Settings(site={"url": "https://blog.example.org"})
    # Nothing of the bundled example (Indonesian, its description, author and asset URLs) leaks in.
    assert settings.site == defaults.site and settings.site.language == "en"
    for section in ("posts", "feeds", "mail", "digest", "web", "scheduler", "log"):
        for key, value in getattr(settings, section):
            if not isinstance(value, Path):
                assert value == getattr(getattr(defaults, section), key), f"{section}.{key}"
    assert settings.posts.dir == tmp_path / "posts" and settings.posts.asset_urls == {}
    assert settings.store.dir == tmp_path / "data"
    assert settings.source_of("site", "url") == "environment FEEDSVC_SITE__URL"
    assert settings.source_of("site", "language") == "default"


def test_environment_without_the_site_url_names_the_variable_in_one_line(tmp_path, monkeypatch, no_environment_config):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEEDSVC_STORE__URL", "postgresql+psycopg://feedsvc@db/feedsvc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid configuration from the environment: site.url: is required but missing (set it with FEEDSVC_SITE__URL)"
    )


def test_the_bundled_example_runs_only_with_nothing_configured_and_says_so(tmp_path):
    shown = _feedsvc("config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "running the bundled example site" in shown.stderr
    assert 'language = "id"  # bundled example' in shown.stdout

    configured = _feedsvc("config", "show", cwd=tmp_path, FEEDSVC_SITE__URL="https://blog.example.org")
    assert configured.returncode == 0, configured.stderr
    assert "bundled example" not in configured.stderr + configured.stdout
    assert 'language = "en"  # default' in configured.stdout
    assert 'url = "https://blog.example.org"  # environment FEEDSVC_SITE__URL' in configured.stdout


def test_config_show_masks_secrets_and_names_each_source(tmp_path):
    config = tmp_path / "feedsvc.toml"
    config.write_text(
        f'[site]\nurl = "https://blog.example.org"\ntitle = "From the file"\n[web]\nadmin_token = "{LONG_SECRET}"\n',
        encoding="utf-8",
    )
    result = _feedsvc(
        "config", "show", cwd=tmp_path,
        FEEDSVC_MAIL__SMTP_URL="smtp://mailer:hunter2-password@smtp.example.org:587",
        FEEDSVC_STORE__URL="postgresql+psycopg://feedsvc:db-password@db:5432/feedsvc",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert LONG_SECRET not in out and "hunter2-password" not in out and "db-password" not in out
    assert f'title = "From the file"  # file {config}' in out
    assert f'admin_token = "********"  # file {config}' in out
    assert 'smtp_url = "smtp://mailer:********@smtp.example.org:587"  # environment FEEDSVC_MAIL__SMTP_URL' in out
    assert 'url = "postgresql+psycopg://feedsvc:********@db:5432/feedsvc"  # environment FEEDSVC_STORE__URL' in out
    assert "items = 20  # default" in out
    secret_file = tmp_path / "subscribers" / "secret.key"
    assert f'secret_key = ""  # default: generated into {secret_file}' in out


def _published_secrets() -> set[str]:
    """Every literal secret_key / admin_token value in the repository's examples, docs and deployment files."""
    files = [ROOT / "docker-compose.yml", ROOT / "README.md", ROOT / "Dockerfile", ROOT / "feedsvc/cli/init_template.toml"]
    files += [*(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.toml")]
    pattern = re.compile(r"(?:secret_key|admin_token)\s*[=:]\s*[\"']?([^\"'\s`]+)", re.IGNORECASE)
    found = set()
    for path in files:
        found |= {value for value in pattern.findall(path.read_text(encoding="utf-8")) if not value.startswith("$")}
    return found


@pytest.mark.parametrize("key", ["secret_key", "admin_token"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("change-me-to-a-long-random-string", "is the placeholder published with feedsvc's examples"),
        ("short-but-not-empty", "is 19 bytes, fewer than 32"),
    ],
)
def test_a_placeholder_or_short_secret_is_refused_naming_the_setting(tmp_path, key, value, expected):
    config = tmp_path / "feedsvc.toml"
    config.write_text(f'[site]\nurl = "https://blog.example.org"\n[web]\n{key} = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert f"web.{key}: Value error, {expected}" in str(caught.value)

    # The same from the environment, through the CLI: one line, exit status 2, no traceback.
    result = _feedsvc("config", "show", cwd=tmp_path, FEEDSVC_SITE__URL="https://blog.example.org",
                      **{f"FEEDSVC_WEB__{key.upper()}": value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"web.{key}" in lines[0] and f"FEEDSVC_WEB__{key.upper()}" in lines[0], result.stderr


def test_every_secret_published_in_the_repository_is_refused(tmp_path):
    published = _published_secrets() | PUBLIC_SECRETS
    assert "change-me-to-a-long-random-string" in published  # the placeholder of earlier compose files
    for value in published:
        with pytest.raises(ValidationError, match=r"web\.secret_key"):
            Settings.model_validate({"site": {"url": "https://blog.example.org"}, "web": {"secret_key": value}})


GENERATE_AT = """
import sys, time
from pathlib import Path
from feedsvc.tokens import load_secret
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(load_secret("", Path(sys.argv[1])))
"""


def test_two_processes_starting_at_once_generate_one_private_key_in_the_data_folder(tmp_path):
    # Five data folders, each raced for by two processes released at the same instant.
    start = f"{time.time() + 2.0}"
    folders = [tmp_path / f"data-{n}" for n in range(5)]
    processes = {
        folder: [
            subprocess.Popen([sys.executable, "-c", GENERATE_AT, str(folder), start], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for folder in folders
    }
    for data, pair in processes.items():
        keys = [process.communicate(timeout=30)[0].strip() for process in pair]
        assert keys[0] == keys[1] and len(keys[0]) >= 32
        key_file = data / "secret.key"
        assert key_file.read_text(encoding="ascii").strip() == keys[0]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert sorted(path.name for path in data.iterdir()) == ["secret.key"], "no temporary file is left"
