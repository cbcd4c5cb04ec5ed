"""The Docker deployment files agree with the code: Docker does not run here, so the files are checked instead."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from feedsvc.config import Settings, load_settings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


INSTRUCTIONS = _instructions(DOCKERFILE)


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in INSTRUCTIONS:
        if name == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _setting(settings: Settings, variable: str) -> Any:
    section, key = variable.removeprefix("FEEDSVC_").lower().split("__")
    return getattr(getattr(settings, section), key)


def _feedsvc_env(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES[service]["environment"].items()}


def _mounts(service: str) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode)"""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode[0] if mode else "rw")
    return mounts


def _assert_loaded_as_given(environment: dict[str, str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the settings (no config file: the example site) under these variables; each value arrives as given."""
    monkeypatch.chdir(folder)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(None)
    for variable, value in environment.items():
        assert str(_setting(settings, variable)) == value, variable


@pytest.mark.parametrize("service", ["feedsvc", "worker"])
def test_every_feedsvc_variable_is_a_config_key_and_loads(service, tmp_path, monkeypatch):
    environment = _feedsvc_env(service)
    assert environment, "the service configures feedsvc through FEEDSVC_ variables"
    sections = Settings.model_fields
    for variable in environment:
        assert variable.startswith("FEEDSVC_") and "__" in variable, variable
        section, key = variable.removeprefix("FEEDSVC_").lower().split("__")
        assert section in sections, f"{variable}: no [{section}] section"
        assert key in sections[section].annotation.model_fields, f"{variable}: no key {key} in [{section}]"
    _assert_loaded_as_given(environment, tmp_path, monkeypatch)


def test_dockerfile_environment_is_config_keys_too(tmp_path, monkeypatch):
    env = {key: value for key, value in _docker_env().items() if key.startswith("FEEDSVC_")}
    assert env
    _assert_loaded_as_given(env, tmp_path, monkeypatch)


def test_services_volumes_and_ports_agree_with_the_configuration():
    assert {"feedsvc", "worker", "postgres", "mailpit"} <= set(SERVICES)
    env = _feedsvc_env("feedsvc")
    mounts = _mounts("feedsvc")
    # Posts mounted read-only where the config reads them; feeds and data on volumes where it writes.
    assert mounts[env["FEEDSVC_POSTS__DIR"]][1] == "ro"
    assert env["FEEDSVC_FEEDS__OUTPUT_DIR"] in mounts and env["FEEDSVC_STORE__DIR"] in mounts
    named = {source for source, _ in mounts.values() if not source.startswith((".", "/"))}
    named |= {volume.split(":")[0] for volume in SERVICES["postgres"]["volumes"]}
    assert named <= set(COMPOSE["volumes"]), "every named volume is declared"
    # The published port is the port feedsvc listens on; the healthcheck asks that port's /healthz.
    container_ports = {mapping.split(":")[-1] for mapping in SERVICES["feedsvc"]["ports"]}
    assert env["FEEDSVC_WEB__PORT"] in container_ports
    health = " ".join(SERVICES["feedsvc"]["healthcheck"]["test"])
    assert f":{env['FEEDSVC_WEB__PORT']}/healthz" in health
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])


def test_store_and_mail_point_at_the_compose_services():
    env = _feedsvc_env("feedsvc")
    postgres = SERVICES["postgres"]["environment"]
    store = env["FEEDSVC_STORE__URL"]
    expected = (
        f"postgresql+psycopg://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert store == expected
    assert env["FEEDSVC_MAIL__SMTP_URL"].startswith("smtp://mailpit:")
    for service in ("feedsvc", "worker"):
        assert SERVICES[service]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_feedsvc_is_built_from_the_dockerfile_and_workers_share_its_image():
    assert SERVICES["feedsvc"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert SERVICES["worker"]["image"] == SERVICES["feedsvc"]["image"]
    assert SERVICES["feedsvc"]["command"] == ["feedsvc", "run", "--host", "0.0.0.0"]
    assert SERVICES["worker"]["command"] == ["feedsvc", "worker"]
    assert "ports" not in SERVICES["worker"], "a published port would stop `--scale worker=N`"


def test_dockerfile_installs_like_the_readme_and_runs_unprivileged():
    assert INSTRUCTIONS[0] == ("FROM", "python:3.11-slim")
    runs = [args for name, args in INSTRUCTIONS if name == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in runs)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"pip install (-e )?\.(\s|$)", readme), "the README installs the same project"
    users = [args for name, args in INSTRUCTIONS if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [args for name, args in INSTRUCTIONS if name == "CMD"][-1] == '["feedsvc", "run", "--host", "0.0.0.0"]'


def test_the_image_copies_everything_the_package_build_needs():
    copied = {arg for name, args in INSTRUCTIONS if name == "COPY" for arg in args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    needed |= set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"])
    assert needed <= copied
    for path in copied:
        assert (ROOT / path).exists(), path


def test_the_docs_show_compose_and_a_systemd_unit():
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "docker compose up" in deploy and "--scale worker=" in deploy
    unit = deploy.split("```ini", 1)[1].split("```", 1)[0]
    assert "[Service]" in unit and re.search(r"ExecStart=\S*feedsvc run", unit)
    assert "KillSignal=SIGTERM" in unit
    assert re.search(r"LimitNOFILE=\d{5,}", unit)  # room for many connections above the common 1,024

