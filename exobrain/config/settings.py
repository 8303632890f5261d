"""Typed settings read from the environment and an optional ``.env`` file.

Variable names are the reference service's (DESIGN.md §7) so existing deployments
keep their configuration. Everything is validated once at start-up: a bad value
stops the process with one line per variable (see :func:`load_settings`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyUrl,
    Field,
    SecretStr,
    UrlConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development-only signing secret; refused whenever ``APP_ENV`` is not ``local``.
DEFAULT_JWT_SECRET = "local-development-only-jwt-secret-change-me"  # noqa: S105

PostgresUrl = Annotated[
    AnyUrl, UrlConstraints(allowed_schemes=["postgres", "postgresql"], host_required=False)
]
RedisUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["redis", "rediss", "unix"])]
NatsUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["nats", "tls"], host_required=True)]
HttpUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], host_required=True)]
BoltUrl = Annotated[
    AnyUrl,
    UrlConstraints(
        allowed_schemes=["bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"],
        host_required=True,
    ),
]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

_GRPC_TARGET = re.compile(r"^(dns:///|ipv4:|ipv6:|unix:)?[\w.\-\[\]:/]+:\d{1,5}$")
_SENSITIVE = ("DSN", "URL", "SECRET", "KEY", "TOKEN", "PASSWORD")
_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")
_HANDLER_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


class Settings(BaseSettings):
    """The service's whole configuration; one instance per process."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    # Runtime
    app_env: str = Field(default="local", pattern=r"^[a-z][a-z0-9_-]*$")
    log_level: LogLevel | None = None
    access_log: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    exobrain_state_dir: Path = Path(".exobrain")

    # Infrastructure (unset under `exobrain dev` means: start an embedded server)
    assistant_db_dsn: PostgresUrl | None = None
    assistant_db_pool_min_size: int = Field(default=1, ge=0, le=100)
    assistant_db_pool_max_size: int = Field(default=10, ge=1, le=200)
    assistant_db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    reshape_schema_query: str | None = None
    assistant_cache_redis_url: RedisUrl | None = None
    redis_key_prefix: str = Field(default="exobrain:", min_length=1, max_length=64)
    exobrain_nats_url: NatsUrl | None = None
    exobrain_qdrant_url: HttpUrl | None = None
    exobrain_memgraph_url: BoltUrl | None = None
    startup_dependency_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=30)

    # Job orchestrator and knowledge updates
    job_orchestrator_grpc_target: str = "localhost:50061"
    job_orchestrator_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    knowledge_update_max_tokens: int = Field(default=8000, ge=16, le=1_000_000)
    knowledge_update_use_orchestrator_enqueue: bool = True

    # Agent and tools
    main_agent_use_mock: bool = False
    main_agent_mock_messages_file: Path | None = None
    main_agent_mock_words_per_second: float = Field(default=0.0, ge=0, le=100_000)
    model_provider_base_url: HttpUrl = AnyUrl("http://localhost:8010/v1")
    main_agent_model: str = Field(default="agent", min_length=1)
    main_agent_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    main_agent_system_prompt: str | None = None
    tavily_api_key: SecretStr | None = None
    web_tools_use_mock: bool = False
    web_tools_mock_data_file: Path | None = None
    web_tools_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    model_provider_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    main_agent_max_steps: int = Field(default=6, ge=1, le=50)

    # Chat sessions and streams
    chat_max_message_chars: int = Field(default=16_000, ge=1, le=200_000)
    chat_max_pending_turns: int = Field(default=3, ge=0, le=100)
    chat_rate_limit_per_minute: int = Field(default=30, ge=1, le=10_000)
    chat_context_max_chars: int = Field(default=24_000, ge=1000, le=2_000_000)
    chat_stream_retention_seconds: float = Field(default=300.0, gt=0, le=86_400)
    chat_streams_per_user: int = Field(default=20, ge=1, le=1000)
    chat_streams_max_bytes: int = Field(default=67_108_864, ge=1024, le=1 << 40)
    chat_session_idle_seconds: float = Field(default=60.0, gt=0, le=86_400)
    chat_sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    chat_ws_allowed_origins: frozenset[str] = frozenset()
    chat_ws_max_connections_per_user: int = Field(default=10, ge=1, le=1000)
    chat_ws_max_frame_bytes: int = Field(default=131_072, ge=1024, le=16_777_216)
    chat_ws_max_frames_per_second: float = Field(default=20.0, gt=0, le=10_000)
    chat_ws_frame_burst: int = Field(default=40, ge=1, le=100_000)
    chat_ws_outbox_max_bytes: int = Field(default=1_048_576, ge=4096, le=1_073_741_824)
    chat_ws_heartbeat_seconds: float = Field(default=20.0, gt=0, le=600)
    chat_ws_write_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    chat_ws_auth_recheck_seconds: float = Field(default=60.0, gt=0, le=3600)

    # Chat across instances
    chat_lease_ttl_seconds: float = Field(default=5.0, ge=0.5, le=300)
    chat_subject_prefix: str = Field(
        default="chat", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=64
    )
    chat_log_stream_name: str = Field(default="CHAT", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    chat_log_max_bytes: int = Field(default=268_435_456, ge=1_048_576, le=1 << 40)
    chat_answer_save_deadline_seconds: float = Field(default=900.0, ge=1, le=86_400)

    # Auth
    auth_jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    auth_jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    auth_access_token_ttl_seconds: int = Field(default=900, ge=1, le=86_400)
    auth_refresh_token_ttl_seconds: int = Field(default=604_800, ge=1, le=31_536_000)
    auth_cookie_name: str = "exobrain_session"
    auth_allowed_origins: frozenset[str] = frozenset()
    auth_device_cookie_name: str = "exobrain_device"
    auth_device_cookie_ttl_seconds: int = Field(default=31_536_000, ge=60, le=63_072_000)
    auth_login_max_failures: int = Field(default=10, ge=1, le=1000)
    auth_login_max_failures_per_email: int = Field(default=50, ge=1, le=100_000)
    auth_login_max_failures_per_address: int = Field(default=100, ge=1, le=100_000)
    auth_login_failure_window_seconds: int = Field(default=900, ge=1, le=86_400)

    # Actors, supervision and operations
    ops_token: SecretStr | None = None
    journal_batch_max_size: int = Field(default=64, ge=1, le=10_000)
    journal_batch_max_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    journal_write_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    supervisor_max_restarts: int = Field(default=5, ge=0, le=1000)
    supervisor_restart_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    supervisor_exit_on_escalation: bool = False
    actor_shutdown_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Journal read cache
    journal_cache_enabled: bool = True
    journal_cache_redis_url: RedisUrl | None = None
    journal_cache_ttl_seconds: int = Field(default=300, ge=1, le=86_400)
    journal_cache_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    journal_cache_retry_seconds: float = Field(default=2.0, gt=0, le=300)

    # Knowledge dispatch and orchestrator
    job_orchestrator_listen: str | None = Field(default=None, pattern=_GRPC_TARGET.pattern)
    job_orchestrator_in_process: bool = False
    job_orchestrator_json_job_types: frozenset[str] = frozenset()
    job_stream_name: str = Field(default="JOBS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    job_subject_prefix: str = Field(
        default="jobs", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=64
    )
    job_stream_duplicate_window_seconds: float = Field(default=7200.0, gt=0, le=604_800)
    knowledge_dispatch_resume_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    knowledge_update_wait_seconds: float = Field(default=0.5, ge=0, le=300)

    # Job worker
    job_worker_in_process: bool = False
    job_worker_handlers: dict[str, str] = Field(default_factory=dict)
    job_worker_max_attempts: int = Field(default=5, ge=1, le=100)
    job_worker_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    job_worker_backoff_max_seconds: float = Field(default=60.0, gt=0, le=86_400)
    job_worker_ack_wait_seconds: float = Field(default=30.0, ge=1, le=3600)
    job_worker_concurrency: int = Field(default=4, ge=1, le=1000)
    job_watch_recheck_seconds: float = Field(default=5.0, gt=0, le=300)

    # Knowledge base
    knowledge_base_enabled: bool = True
    knowledge_collection: str = Field(default="exobrain_passages", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    embeddings_base_url: HttpUrl | None = None
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str = Field(default="text-embedding-3-small", min_length=1)
    embeddings_dimensions: int | None = Field(default=None, ge=1, le=65_536)
    embeddings_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @property
    def is_local(self) -> bool:
        return self.app_env == "local"

    @property
    def effective_log_level(self) -> LogLevel:
        if self.log_level is not None:
            return self.log_level
        return "DEBUG" if self.is_local else "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("job_orchestrator_grpc_target")
    @classmethod
    def _grpc_target(cls, value: str) -> str:
        if not _GRPC_TARGET.match(value):
            raise ValueError(
                "expected host:port (optionally with a dns:///, ipv4: or unix: scheme)"
            )
        return value

    @field_validator("auth_cookie_name", "auth_device_cookie_name")
    @classmethod
    def _cookie_name(cls, value: str) -> str:
        if not _COOKIE_NAME.match(value):
            raise ValueError("not a valid cookie name")
        return value

    @field_validator("chat_ws_allowed_origins", "auth_allowed_origins")
    @classmethod
    def _origins(cls, value: frozenset[str]) -> frozenset[str]:
        origins = frozenset(origin.lower().rstrip("/") for origin in value)
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins

    @field_validator("job_worker_handlers")
    @classmethod
    def _handler_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for job_type, path in value.items():
            if not _HANDLER_PATH.match(path):
                raise ValueError(f"{job_type}: {path!r} is not like package.module:function")
        return value

    @field_validator("main_agent_mock_messages_file", "web_tools_mock_data_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _production_safety(self) -> Self:
        if self.assistant_db_pool_min_size > self.assistant_db_pool_max_size:
            raise ValueError(
                "ASSISTANT_DB_POOL_MIN_SIZE: must not exceed ASSISTANT_DB_POOL_MAX_SIZE"
            )
        if self.auth_device_cookie_name == self.auth_cookie_name:
            raise ValueError("AUTH_DEVICE_COOKIE_NAME: must differ from AUTH_COOKIE_NAME")
        if self.is_local:
            return self
        secret = self.auth_jwt_secret.get_secret_value()
        if secret == DEFAULT_JWT_SECRET:
            raise ValueError(
                f"AUTH_JWT_SECRET: the development default is refused when APP_ENV={self.app_env}"
            )
        needed = int(self.auth_jwt_algorithm[2:]) // 8  # RFC 7518: a key as long as the hash
        if len(secret.encode()) < needed:
            raise ValueError(
                f"AUTH_JWT_SECRET: must be at least {needed} bytes for {self.auth_jwt_algorithm}"
                " outside APP_ENV=local"
            )
        return self


class ConfigurationError(Exception):
    """Raised with one human-readable line per offending variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise :class:`ConfigurationError` naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError([_describe(error) for error in exc.errors()]) from None


def _describe(error: ErrorDetails) -> str:
    location = [str(part) for part in error["loc"]]
    message = error["msg"].removeprefix("Value error, ")
    if not location:  # model-level checks name their variable themselves
        return message
    name = location[0].upper()
    given = error["input"]
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    if any(word in name for word in _SENSITIVE):  # URLs and secrets may carry credentials
        shown = ""
    return f"{name}: {message}{shown}"
