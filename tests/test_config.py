from pathlib import Path

import pytest

from feedsvc.config import ConfigError, load_settings


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


def test_no_config_uses_the_example_site_and_writes_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEEDSVC_CONFIG", raising=False)
    settings = load_settings()
    assert settings.config_path is None
    assert (settings.posts.dir / "hello-toml.md").is_file()
    assert settings.feeds.output_dir == tmp_path / "public"
    assert settings.store.dir == tmp_path / "subscribers"


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path(tmp_path / "nope.toml"))
