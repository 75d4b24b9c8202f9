"""Login throttling of the demo portal: at most MAX_FAILURES failed logins per email and client address within
WINDOW_SECONDS, counted in Redis when it answers (so every portal process shares the count), else in this process.
Keys hold a digest of the email, never the email or a password."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisError

MAX_FAILURES = 5
WINDOW_SECONDS = 300
KEY_PREFIX = "portal:login-failures:"

log = logging.getLogger("demo_portal")


def wait_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many failed attempts; wait {minutes} minute{'s' if minutes != 1 else ''} and try again."


class LoginThrottle:
    """Counts failed logins; `redis` returns the shared connection or raises when there is none."""

    def __init__(self, redis: Callable[[], object], clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._clock = clock
        self._guard = threading.Lock()
        self._local: dict[str, list[float]] = {}

    @staticmethod
    def _key(email: str, address: str) -> str:
        return KEY_PREFIX + hashlib.sha256(f"{email}\n{address}".encode()).hexdigest()[:32]

    def _shared(self):
        try:
            return self._redis()
        except RuntimeError:  # REDIS_URL not set
            return None

    def wait_seconds(self, email: str, address: str) -> int:
        """Seconds until this email may try again from this address; 0 when it may try now."""
        key = self._key(email, address)
        redis = self._shared()
        if redis is not None:
            try:
                count = int(redis.get(key) or 0)
                return max(int(redis.ttl(key)), 1) if count >= MAX_FAILURES else 0
            except RedisError:
                log.warning("Redis did not answer; counting failed logins in this process")
        now = self._clock()
        with self._guard:
            recent = [t for t in self._local.get(key, []) if now - t < WINDOW_SECONDS]
            self._local[key] = recent
            if len(recent) < MAX_FAILURES:
                return 0
            return max(math.ceil(recent[-MAX_FAILURES] + WINDOW_SECONDS - now), 1)

    def failed(self, email: str, address: str) -> None:
        key = self._key(email, address)
        redis = self._shared()
        if redis is not None:
            try:
                # The window starts at the first failure; INCR keeps the expiry that SET NX gave the key. Should the
                # key expire between the two, INCR makes one without expiry: give it one, or the email stays locked.
                pipe = redis.pipeline()
                pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
                pipe.incr(key)
                pipe.ttl(key)
                if pipe.execute()[-1] < 0:
                    redis.expire(key, WINDOW_SECONDS)
                return
            except RedisError:
                log.warning("Redis did not answer; counting failed logins in this process")
        with self._guard:
            self._local.setdefault(key, []).append(self._clock())

    def succeeded(self, email: str, address: str) -> None:
        key = self._key(email, address)
        redis = self._shared()
        if redis is not None:
            try:
                redis.delete(key)
            except RedisError:
                pass  # the count expires by itself
        with self._guard:
            self._local.pop(key, None)
