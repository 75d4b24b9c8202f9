"""Settings read from the environment once at start and checked there; never logs a key or secret."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from itam_admin.crypto import generate_key

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DEFAULT_ALLOWED_HOSTS = ("*.service-now.com", "*.servicenowservices.com")


class ConfigError(Exception):
    """The environment does not describe a runnable configuration; the message says what to set."""


@dataclass(frozen=True)
class WeeklyTime:
    weekday: int  # Monday is 0, Sunday 6, as datetime.weekday()
    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class Config:
    demo: bool
    database_url: str
    redis_url: str | None
    secret_key: str = field(repr=False)
    encryption_keys: tuple[str, ...] = field(repr=False)
    default_client_id: str
    default_client_secret: str = field(repr=False)
    allowed_hosts: tuple[str, ...]
    allow_insecure: bool
    weekly_export: WeeklyTime
    weekly_window_minutes: int = 120
    batch_size: int = 200
    max_batch_bytes: int = 5_000_000
    requests_in_flight: int = 8
    max_retries: int = 6
    max_wait_seconds: float = 300.0
    request_timeout: float = 30.0
    # The whole of one request to ServiceNow, connect to the answer's last byte (request_timeout bounds each read).
    request_deadline: float = 120.0
    # The longest answer read from ServiceNow; ours are well under 1 MB and ServiceNow caps REST bodies at 10 MB.
    max_response_bytes: int = 8 * 1024 * 1024
    interrupted_after_seconds: int = 180
    # Rows changed this long before a complete export started are still read again by the next differential
    # export: it covers clocks that differ between portal servers and transactions still open at that moment.
    differential_margin: timedelta = timedelta(minutes=15)
    read_back_wait_seconds: float = 14.0


def parse_weekly_time(value: str) -> WeeklyTime:
    match = re.fullmatch(r"\s*([A-Za-z]{3})\s+(\d{1,2}):(\d{2})\s*", value)
    if not match or match.group(1).upper() not in WEEKDAYS:
        raise ConfigError(f"ITAM_WEEKLY_EXPORT must look like 'SUN 03:00' (weekday and UTC time), not {value!r}")
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise ConfigError(f"ITAM_WEEKLY_EXPORT has an impossible time: {value!r}")
    return WeeklyTime(WEEKDAYS.index(match.group(1).upper()), hour, minute)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")


def _number(env: Mapping[str, str], name: str, default: float, kind: type = int, minimum: float = 1) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value!r}")
    return number


def _kept_in_instance(instance_path: Path, name: str, make: callable) -> str:
    """Read a generated demo value from instance/, creating it (private to the user) the first time."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_config(env: Mapping[str, str], instance_path: str | os.PathLike) -> Config:
    """Build the Config from environment variables; raise ConfigError naming what is missing or wrong."""
    instance = Path(instance_path)
    demo = _flag(env, "ITAM_DEMO", False)

    secret_key = env.get("SECRET_KEY", "").strip()
    keys_text = env.get("ITAM_ENCRYPTION_KEYS", "").strip()
    if demo:
        secret_key = secret_key or _kept_in_instance(instance, "secret_key", lambda: os.urandom(32).hex())
        keys_text = keys_text or _kept_in_instance(instance, "encryption_keys", generate_key)
    missing = [name for name, value in (("SECRET_KEY", secret_key), ("ITAM_ENCRYPTION_KEYS", keys_text)) if not value]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} must be set (or set ITAM_DEMO=1 to run the demo with generated keys)."
        )
    keys = tuple(key.strip() for key in keys_text.split(",") if key.strip())
    try:
        from cryptography.fernet import Fernet

        for key in keys:
            Fernet(key.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "ITAM_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes each); "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None

    client_id = env.get("ITAM_SERVICENOW_CLIENT_ID", "").strip()
    client_secret = env.get("ITAM_SERVICENOW_CLIENT_SECRET", "").strip()
    hosts_text = env.get("ITAM_SERVICENOW_ALLOWED_HOSTS", "").strip()
    allowed_hosts = tuple(h.strip().lower() for h in hosts_text.split(",") if h.strip()) or DEFAULT_ALLOWED_HOSTS

    return Config(
        demo=demo,
        database_url=env.get("DATABASE_URL", "").strip() or f"sqlite:///{instance / 'itam.sqlite3'}",
        redis_url=env.get("REDIS_URL", "").strip() or None,
        secret_key=secret_key,
        encryption_keys=keys,
        default_client_id=client_id,
        default_client_secret=client_secret,
        allowed_hosts=allowed_hosts,
        allow_insecure=_flag(env, "ITAM_SERVICENOW_ALLOW_INSECURE", demo),
        weekly_export=parse_weekly_time(env.get("ITAM_WEEKLY_EXPORT", "") or "SUN 03:00"),
        weekly_window_minutes=int(_number(env, "ITAM_WEEKLY_WINDOW_MINUTES", 120)),
        batch_size=int(_number(env, "ITAM_EXPORT_BATCH_SIZE", 200)),
        max_batch_bytes=int(_number(env, "ITAM_EXPORT_MAX_BATCH_BYTES", 5_000_000, minimum=10_000)),
        requests_in_flight=int(_number(env, "ITAM_EXPORT_REQUESTS_IN_FLIGHT", 8)),
        max_retries=int(_number(env, "ITAM_EXPORT_MAX_RETRIES", 6, minimum=0)),
        max_wait_seconds=_number(env, "ITAM_EXPORT_MAX_WAIT_SECONDS", 300.0, float, minimum=0),
        request_timeout=_number(env, "ITAM_SERVICENOW_TIMEOUT_SECONDS", 30.0, float, minimum=0.1),
        request_deadline=_number(env, "ITAM_SERVICENOW_DEADLINE_SECONDS", 120.0, float, minimum=1),
        max_response_bytes=int(_number(env, "ITAM_SERVICENOW_MAX_RESPONSE_BYTES", 8 * 1024 * 1024, minimum=65_536)),
        interrupted_after_seconds=int(_number(env, "ITAM_INTERRUPTED_AFTER_SECONDS", 180, minimum=5)),
        read_back_wait_seconds=_number(env, "ITAM_EXPORT_READ_BACK_WAIT_SECONDS", 14.0, float, minimum=0),
        differential_margin=timedelta(
            seconds=_number(env, "ITAM_DIFFERENTIAL_MARGIN_SECONDS", 900.0, float, minimum=0)
        ),
    )
