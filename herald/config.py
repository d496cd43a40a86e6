"""One frozen, validated settings object: env vars (HERALD_*), then a TOML file, then what the local stack wrote."""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from herald.errors import ConfigError
from herald.redaction import redact_url

DEFAULT_STATE_DIR = Path.home() / ".local" / "state" / "herald"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "herald"
STACK_FILE_NAME = "stack.json"
DEFAULT_EVENTS_TOPIC = "notification-events"
DEFAULT_READER_GROUP = "herald-readers"
# Kafka's own rule for topic names (legal characters, at most 249 of them).
KAFKA_TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"


def state_dir_from_env() -> Path:
    return Path(os.environ.get("HERALD_STATE_DIR", str(DEFAULT_STATE_DIR))).expanduser()


def config_file_from_env() -> Path | None:
    explicit = os.environ.get("HERALD_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    local = Path("herald.toml")
    return local if local.is_file() else None


class _JsonFileSource(PydanticBaseSettingsSource):
    """Reads flat settings from a file; missing file means no values (the stack may not have run yet)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist (HERALD_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    section = data.get("herald", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [herald] must be a table")
    return section


def _read_stack_file(state_dir: Path) -> dict[str, Any]:
    path = state_dir / STACK_FILE_NAME
    try:
        loaded = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    settings = loaded.get("settings", {}) if isinstance(loaded, dict) else {}
    return settings if isinstance(settings, dict) else {}


class Settings(BaseSettings):
    """Everything Herald can be told. Env vars win over the config file, which wins over the stack file."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", frozen=True, extra="ignore")

    # Where things are.
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    ray_address: str | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    cache_dir: Path = DEFAULT_CACHE_DIR

    # Local stack.
    kafka_version: str = "4.1.1"
    kafka_port: PositiveInt = 19092
    kafka_controller_port: PositiveInt = 19093
    kafka_heap_mb: PositiveInt = Field(default=512, le=8192)
    redis_port: PositiveInt = 16379
    ray_num_cpus: PositiveInt | None = None
    # Ray's own driver messages (start-up notices, token-auth warnings): hidden below ERROR unless asked for;
    # `herald --verbose` sets it to INFO. Herald's own logs are not affected.
    ray_log_level: Literal["debug", "info", "warning", "error"] = "error"

    # Kafka clients. Security applies to every client Herald builds (herald/kafka.py `client_security`); the
    # password is a SecretStr so a repr, a log line or an error never shows it (docs/architecture.md, Security).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # None trusts the system's CAs
    kafka_ssl_certfile: Path | None = None  # client certificate, for brokers that ask for one (ssl.client.auth)
    kafka_ssl_keyfile: Path | None = None
    connect_timeout_s: PositiveFloat = 10.0
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    # zstd: aiokafka compresses lz4 at level 9 (LZ4-HC), ~60 MB/s on event JSON; zstd level 3 is ~5x faster and
    # compresses better (docs/reliability.md, Bad input, has the measurement).
    producer_compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = "zstd"
    # The input topic: readers, `herald run`, the SDK's default, `herald publish` and `herald doctor` all read it
    # from here, so a second pipeline (a benchmark, a staging copy) runs on its own topic without code changes.
    events_topic: str = Field(default=DEFAULT_EVENTS_TOPIC, pattern=KAFKA_TOPIC_PATTERN)
    events_partitions: PositiveInt = 12
    topic_replication_factor: PositiveInt = 1  # 1 suits the one-broker local stack; use 3 on a real cluster

    # Pipeline shape (herald/topology.py; docs/architecture.md, "Ray deployment"). An explicit count wins;
    # None derives it from the cluster's CPUs: max(min_*, floor(CPUs * *_per_cpu)), readers capped at the
    # partitions. Readers and delivery actors grow as nodes join, spread over the nodes in proportion to their
    # CPUs; aggregators are sized once at start (shards map onto them by shard % count).
    reader_group: str = Field(default=DEFAULT_READER_GROUP, min_length=1)
    readers: PositiveInt | None = None
    readers_per_cpu: float = Field(default=0.5, gt=0, le=16)
    min_readers: PositiveInt = 2
    shards: PositiveInt = 64
    aggregators: PositiveInt | None = None
    aggregators_per_cpu: float = Field(default=0.5, gt=0, le=16)
    min_aggregators: PositiveInt = 2
    delivery_actors: PositiveInt | None = None  # per outbox channel with a provider
    delivery_actors_per_cpu: float = Field(default=0.25, gt=0, le=16)
    min_delivery_actors: PositiveInt = 1
    # Socket.IO gateways pinned to every node; the n-th binds gateway_port + n (or a free port when 0).
    gateways_per_node: int = Field(default=1, ge=0, le=16)
    # Events per fetched batch, and per aggregator call when queued batches merge (Lua unpack() limits the ids
    # per user per call).
    reader_max_records: PositiveInt = Field(default=2000, le=5000)
    reader_max_inflight_batches: PositiveInt = 8
    # How long the broker may hold a reader's fetch to gather reader_fetch_min_bytes: a few milliseconds of
    # latency buy far fewer, fuller fetches and aggregator calls at moderate load (docs/benchmarks.md).
    reader_fetch_max_wait_ms: int = Field(default=10, ge=0, le=500)
    reader_fetch_min_bytes: PositiveInt = 65_536
    outbox_shards: PositiveInt = 8
    inbox_capacity: PositiveInt = 500
    # Users each aggregator remembers between batches (their seq and open groups); 0 loads every batch.
    aggregator_cache_users: int = Field(default=100_000, ge=0)
    dedup_horizon_s: PositiveInt = 8 * 24 * 3600
    late_allowance_s: int = Field(default=60, ge=0)
    delivery_max_attempts: PositiveInt = 5
    delivery_reclaim_idle_s: PositiveFloat = 30.0

    # Gateway and tokens.
    gateway_enabled: bool = True
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)  # 0 = any free port (several nodes on one host)
    gateway_client_events_per_s: PositiveFloat = 20.0
    gateway_client_burst: PositiveInt = 40
    gateway_max_payload_bytes: PositiveInt = 64 * 1024
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    # Which Socket.IO protocol a client that does not say (auth.protocol / ?protocol=) speaks: Herald's own
    # event names, or those of the existing application's clients ("compat").
    gateway_protocol: Literal["herald", "compat"] = "herald"
    # WebSocket compression costs the gateway more CPU per notification than it saves on ~1 KB JSON frames.
    gateway_ws_compression: bool = False
    # Auth.js (NextAuth v5) session tokens as a second way in: the application's AUTH_SECRET decrypts them.
    # Read from HERALD_AUTHJS_SECRET, or AUTH_SECRET as the Next.js application itself names it.
    authjs_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("authjs_secret", "HERALD_AUTHJS_SECRET", "AUTH_SECRET")
    )
    # Cookie names Auth.js uses (plain HTTP, then HTTPS); each is also the HKDF salt of its key.
    authjs_cookie_names: list[str] = Field(
        default_factory=lambda: ["authjs.session-token", "__Secure-authjs.session-token"]
    )

    # External channels (docs/channels.md). A channel whose settings are missing has no provider: `herald doctor`
    # names it and its deliveries are counted as unconfigured. Secrets are SecretStr so they never print.
    smtp_url: SecretStr | None = None  # smtp://user:pass@host:port, ?starttls=1 or smtps:// for implicit TLS
    email_from: str = "Herald <notifications@localhost>"
    email_digest_min_priority: Literal["LOW", "NORMAL", "HIGH", "URGENT"] = "HIGH"  # below it, mail waits for a digest
    webhook_url: str | None = None  # the default endpoint; a user's webhookUrl overrides it
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: PositiveFloat = 10.0
    sms_url: str | None = None  # e.g. https://api.twilio.com/2010-04-01/Accounts/{account}/Messages.json
    sms_account: str | None = None
    sms_token: SecretStr | None = None
    sms_from: str | None = None
    sms_max_segments: int = Field(default=1, ge=1, le=10)
    sms_min_priority: Literal["LOW", "NORMAL", "HIGH", "URGENT"] = "HIGH"
    vapid_private_key_file: Path | None = None
    vapid_subject: str | None = None  # mailto: or https: contact the push services may use
    fcm_service_account_file: Path | None = None
    fcm_endpoint: str = "https://fcm.googleapis.com"  # tests point it at a local server
    push_forward_topic: str | None = Field(default=None, pattern=KAFKA_TOPIC_PATTERN)
    delivery_timeout_s: PositiveFloat = 15.0  # one provider request
    # Consecutive retriable failures that open a provider's circuit, and how long it stays open before a trial.
    delivery_breaker_threshold: PositiveInt = 5
    delivery_breaker_reset_s: PositiveFloat = 30.0
    # Per user and hour on each channel; the excess waits for the user's next digest (URGENT is never held).
    delivery_hourly_limits: dict[str, PositiveInt] = Field(default_factory=lambda: {"PUSH": 30, "SMS": 5, "EMAIL": 20})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = _read_toml(config_file_from_env())
        state_dir = Path(str(file_values.get("state_dir", state_dir_from_env()))).expanduser()
        if "HERALD_STATE_DIR" in os.environ:
            state_dir = state_dir_from_env()
        return (
            init_settings,
            env_settings,
            _JsonFileSource(settings_cls, file_values),
            _JsonFileSource(settings_cls, _read_stack_file(state_dir)),
        )

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        # Caught here, at the edge, rather than as an opaque handshake failure deep inside the first client.
        if self.kafka_security_protocol.startswith("SASL_") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs kafka_sasl_username and "
                "kafka_sasl_password"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("kafka_ssl_keyfile needs kafka_ssl_certfile")
        return self

    @field_serializer("redis_url", when_used="json")
    def _redis_url_redacted(self, url: str) -> str:
        return redact_url(url)

    def __repr_args__(self) -> Any:
        # redis_url is a plain string (every Redis client takes it as is) but may carry a password
        # (redis://:pw@host); a printed or logged Settings shows it redacted, like the SecretStr fields.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "redis_url" and isinstance(value, str) else value)

    @property
    def stack_file(self) -> Path:
        return self.state_dir / STACK_FILE_NAME

    def require_jwt_secret(self) -> str:
        if self.jwt_secret is None:
            raise ConfigError(
                "no JWT secret: set HERALD_JWT_SECRET, jwt_secret in the config file, or run `herald stack up`"
            )
        return self.jwt_secret.get_secret_value()


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation failures into a ConfigError that names the bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
