"""Where access tokens (and refresh tokens the server rotated) are kept between refreshes: Redis or this process.

Values in Redis are always encrypted and keys carry only a hash of the settings, never a secret in clear.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import LockError

from itam_admin.crypto import Crypto, SecretUnreadable

if TYPE_CHECKING:
    import redis

PREFIX = "itam:servicenow"
# Long enough for any run still holding the old refresh token; short enough not to keep it around.
ROTATION_TTL_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class AccessToken:
    """An OAuth access token for the REST APIs; its value never shows in repr or str."""

    value: str = field(repr=False)
    expires_at: datetime  # UTC
    scope: str = ""

    def seconds_left(self, now: float) -> float:
        return self.expires_at.timestamp() - now


def fingerprint(instance_url: str, client_id: str, refresh_token: str) -> str:
    """A one-way hash of the settings a token belongs to: changed settings never reuse a token."""
    digest = hashlib.sha256("\0".join((instance_url, client_id, refresh_token)).encode())
    return digest.hexdigest()[:40]


class TokenStore(Protocol):
    def get(self, tenant_id: str, fp: str) -> AccessToken | None: ...
    def put(self, tenant_id: str, fp: str, token: AccessToken, ttl: float) -> None: ...
    def rotated(self, tenant_id: str, fp: str) -> str | None: ...
    def put_rotated(self, tenant_id: str, fp: str, refresh_token: str) -> None: ...
    def forget(self, tenant_id: str) -> None: ...
    def lock(
        self, tenant_id: str, timeout: float, wait: float | None = None
    ) -> contextlib.AbstractContextManager[bool]: ...


class MemoryStore:
    """The shared cache when there is no Redis: one process (the Test connection action, unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._guard = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[AccessToken, float]] = {}
        self._rotations: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, tenant_id: str, fp: str) -> AccessToken | None:
        with self._guard:
            token, dies = self._tokens.get((tenant_id, fp), (None, 0.0))
        return token if token is not None and dies > self._clock() else None

    def put(self, tenant_id: str, fp: str, token: AccessToken, ttl: float) -> None:
        with self._guard:
            self._tokens[(tenant_id, fp)] = (token, self._clock() + ttl)

    def rotated(self, tenant_id: str, fp: str) -> str | None:
        with self._guard:
            value, dies = self._rotations.get((tenant_id, fp), (None, 0.0))
        return value if value is not None and dies > self._clock() else None

    def put_rotated(self, tenant_id: str, fp: str, refresh_token: str) -> None:
        with self._guard:
            self._rotations[(tenant_id, fp)] = (refresh_token, self._clock() + ROTATION_TTL_SECONDS)

    def forget(self, tenant_id: str) -> None:
        with self._guard:
            for table in (self._tokens, self._rotations):
                for key in [key for key in table if key[0] == tenant_id]:
                    del table[key]

    @contextlib.contextmanager
    def lock(self, tenant_id: str, timeout: float, wait: float | None = None) -> Iterator[bool]:
        yield True  # the TokenManager's per-tenant thread lock already serialises this process


class RedisStore:
    """The cache shared by every web process and worker; the lock makes one refresh at a time per tenant."""

    def __init__(self, client: redis.Redis, crypto: Crypto) -> None:
        self._redis = client
        self._crypto = crypto

    def _keys(self, tenant_id: str) -> str:
        return f"{PREFIX}:keys:{tenant_id}"

    def _store(self, tenant_id: str, key: str, plaintext: str, ttl: float) -> None:
        index = self._keys(tenant_id)
        pipe = self._redis.pipeline()
        pipe.set(key, self._crypto.encrypt(plaintext), px=max(1, int(ttl * 1000)))
        pipe.sadd(index, key)
        pipe.expire(index, ROTATION_TTL_SECONDS)
        pipe.execute()

    def _load(self, key: str) -> str | None:
        value = self._redis.get(key)
        if value is None:
            return None
        try:
            return self._crypto.decrypt(value.decode() if isinstance(value, bytes) else value)
        except SecretUnreadable:  # written under an encryption key since retired: a cache miss, not an error
            return None

    def get(self, tenant_id: str, fp: str) -> AccessToken | None:
        text = self._load(f"{PREFIX}:access-token:{tenant_id}:{fp}")
        if text is None:
            return None
        try:
            data = json.loads(text)
            stamp = float(data["expires_at"])
            if not math.isfinite(stamp):
                return None
            expires_at = datetime.fromtimestamp(stamp, UTC)
            return AccessToken(value=str(data["access_token"]), expires_at=expires_at, scope=str(data.get("scope", "")))
        except (ValueError, TypeError, KeyError, OverflowError, OSError):  # unreadable entry: a cache miss
            return None

    def put(self, tenant_id: str, fp: str, token: AccessToken, ttl: float) -> None:
        data = {"access_token": token.value, "expires_at": token.expires_at.timestamp(), "scope": token.scope}
        self._store(tenant_id, f"{PREFIX}:access-token:{tenant_id}:{fp}", json.dumps(data), ttl)

    def rotated(self, tenant_id: str, fp: str) -> str | None:
        return self._load(f"{PREFIX}:rotated:{tenant_id}:{fp}")

    def put_rotated(self, tenant_id: str, fp: str, refresh_token: str) -> None:
        self._store(tenant_id, f"{PREFIX}:rotated:{tenant_id}:{fp}", refresh_token, ROTATION_TTL_SECONDS)

    def forget(self, tenant_id: str) -> None:
        index = self._keys(tenant_id)
        keys = list(self._redis.smembers(index))
        self._redis.delete(index, *keys)

    @contextlib.contextmanager
    def lock(self, tenant_id: str, timeout: float, wait: float | None = None) -> Iterator[bool]:
        """Hold the tenant's refresh lock (expiring after `timeout`), waiting for it at most `wait` seconds
        (default: a little longer than another holder may keep it)."""
        blocking = timeout + 5 if wait is None else max(0.0, min(wait, timeout + 5))
        lock = self._redis.lock(f"{PREFIX}:token-lock:{tenant_id}", timeout=timeout, blocking_timeout=blocking)
        acquired = lock.acquire()
        try:
            yield bool(acquired)
        finally:
            if acquired:
                with contextlib.suppress(LockError):  # the lock expired: another process may own it now
                    lock.release()
