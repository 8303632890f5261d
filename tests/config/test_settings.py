"""Configuration: every variable typed and validated, bad values named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exobrain.config import DEFAULT_JWT_SECRET, ConfigurationError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray variables or .env file from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("ASSISTANT_", "AUTH_", "APP_", "EXOBRAIN_", "JOB_", "MAIN_AGENT")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def problems(**environment: str) -> list[str]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigurationError) as raised:
            load_settings()
    return raised.value.problems


def test_defaults_match_the_reference_service() -> None:
    settings = load_settings()
    assert settings.job_orchestrator_grpc_target == "localhost:50061"
    assert settings.job_orchestrator_connect_timeout_seconds == 5.0
    assert settings.knowledge_update_max_tokens == 8000
    assert settings.knowledge_update_use_orchestrator_enqueue is True
    assert str(settings.model_provider_base_url) == "http://localhost:8010/v1"
    assert settings.main_agent_model == "agent"
    assert settings.auth_access_token_ttl_seconds == 900
    assert settings.auth_refresh_token_ttl_seconds == 604800
    assert settings.auth_cookie_name == "exobrain_session"
    assert settings.app_env == "local"
    assert settings.effective_log_level == "DEBUG"


def test_log_level_defaults_to_info_outside_local() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APP_ENV", "production")
        patch.setenv("AUTH_JWT_SECRET", "x" * 40)
        assert load_settings().effective_log_level == "INFO"
        patch.setenv("LOG_LEVEL", "warning")
        assert load_settings().effective_log_level == "WARNING"


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("JOB_ORCHESTRATOR_CONNECT_TIMEOUT_SECONDS", "-1", "greater than 0"),
        ("JOB_ORCHESTRATOR_CONNECT_TIMEOUT_SECONDS", "soon", "valid number"),
        ("ASSISTANT_DB_DSN", "mysql://db/x", "scheme"),
        ("ASSISTANT_DB_DSN", "not a url", "URL"),
        ("ASSISTANT_CACHE_REDIS_URL", "http://cache", "scheme"),
        ("EXOBRAIN_NATS_URL", "nats://", "host"),
        ("KNOWLEDGE_UPDATE_MAX_TOKENS", "0", "greater than or equal"),
        ("KNOWLEDGE_UPDATE_USE_ORCHESTRATOR_ENQUEUE", "maybe", "boolean"),
        ("JOB_ORCHESTRATOR_GRPC_TARGET", "no-port", "host:port"),
        ("MAIN_AGENT_TEMPERATURE", "3", "less than or equal"),
        ("MAIN_AGENT_MOCK_MESSAGES_FILE", "/nonexistent/messages.md", "does not exist"),
        ("AUTH_JWT_ALGORITHM", "none", "HS256"),
        ("AUTH_COOKIE_NAME", "bad name;", "cookie name"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
        ("HTTP_PORT", "70000", "less than or equal"),
        ("JOB_WORKER_HANDLERS", '{"report.daily": "reports daily"}', "package.module:function"),
        ("JOB_WORKER_MAX_ATTEMPTS", "0", "greater than or equal"),
    ],
)
def test_bad_value_is_named_in_one_line(variable: str, value: str, complaint: str) -> None:
    [line] = problems(**{variable: value})
    assert line.startswith(f"{variable}: ")
    assert complaint in line


def test_every_bad_variable_is_reported() -> None:
    found = problems(KNOWLEDGE_UPDATE_MAX_TOKENS="-5", HTTP_PORT="x")
    assert sorted(line.split(":")[0] for line in found) == [
        "HTTP_PORT",
        "KNOWLEDGE_UPDATE_MAX_TOKENS",
    ]


def test_credentials_in_a_bad_url_are_not_echoed() -> None:
    [line] = problems(ASSISTANT_DB_DSN="mysql://admin:hunter2@db/x")
    assert "hunter2" not in line


def test_default_jwt_secret_is_refused_outside_local() -> None:
    [line] = problems(APP_ENV="production")
    assert line.startswith("AUTH_JWT_SECRET: ")
    assert "refused" in line
    [line] = problems(APP_ENV="staging", AUTH_JWT_SECRET="short")
    assert "32 bytes for HS256" in line
    [line] = problems(APP_ENV="staging", AUTH_JWT_SECRET="s" * 40, AUTH_JWT_ALGORITHM="HS512")
    assert "64 bytes for HS512" in line


def test_default_jwt_secret_is_accepted_locally_only() -> None:
    assert load_settings().auth_jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APP_ENV", "production")
        patch.setenv("AUTH_JWT_SECRET", "a-real-secret-of-at-least-thirty-two-bytes")
        assert not load_settings().is_local


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "KNOWLEDGE_UPDATE_MAX_TOKENS=1234\nMAIN_AGENT_MODEL=from-file\nEXOBRAIN_QDRANT_URL=\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAIN_AGENT_MODEL", "from-env")
        settings = load_settings()
    assert settings.knowledge_update_max_tokens == 1234
    assert settings.main_agent_model == "from-env"
    assert settings.exobrain_qdrant_url is None  # empty means unset


def test_example_env_file_names_every_variable() -> None:
    example = Path(__file__).parents[2] / ".env.example"
    documented = {
        line.lstrip("# ").split("=")[0]
        for line in example.read_text().splitlines()
        if "=" in line and not line.startswith("##")
    }
    from exobrain.config import Settings  # noqa: PLC0415

    assert {name.upper() for name in Settings.model_fields} <= documented


def test_process_stops_with_the_variable_named(tmp_path: Path) -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSISTANT_", "EXOBRAIN_", "JOB_"))
    }
    environment["JOB_ORCHESTRATOR_CONNECT_TIMEOUT_SECONDS"] = "-1"
    result = subprocess.run(
        [sys.executable, "-m", "exobrain", "serve"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: JOB_ORCHESTRATOR_CONNECT_TIMEOUT_SECONDS: "
        "Input should be greater than 0 (got '-1')"
    ]
