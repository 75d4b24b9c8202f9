"""Injectable faults (latency, failing or dropped requests) and ServiceNow-like rate limits, thread-safe.

Faults touch only the wire endpoints (`api`: /api/..., `token`: the OAuth endpoints), never the sandbox's own
pages or control endpoints, so a test can always reach the controls.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

SCOPES = ("api", "token", "all")
MARKUP = '<b>bold</b> <script>alert("sandbox")</script> & <i>more</i>'
RATE_LIMIT_RULE = "5a1d0bce0a0a0b6b00d0000000000001"


@dataclass
class Failure:
    remaining: int
    status: int = 503
    message: str | None = None
    detail: str | None = None
    markup: bool = False
    retry_after: int | None = None
    scope: str = "api"


@dataclass
class Drop:
    remaining: int
    when: str = "before"  # "before": the request is not handled; "after": handled, then the answer is lost
    scope: str = "api"


@dataclass
class RateLimit:
    limit: int
    window_seconds: float = 3600.0
    counts: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds
    retry_after: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Rule": RATE_LIMIT_RULE,
            "X-RateLimit-Remaining": str(self.remaining),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def _in_scope(scope: str, kind: str) -> bool:
    return scope == "all" or scope == kind


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    return scope


class Faults:
    """What goes wrong on purpose; every method may be called from any thread while requests run."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self.clock = clock  # replaceable, so tests can move rate limit windows without waiting
        self.latency_ms = 0.0
        self._failure: Failure | None = None
        self._drop: Drop | None = None
        self._rate: RateLimit | None = None

    def set_latency(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = float(ms)

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        message: str | None = None,
        detail: str | None = None,
        markup: bool = False,
        retry_after: int | None = None,
        scope: str = "api",
    ) -> None:
        """The next `count` requests in scope answer `status` with a ServiceNow error body (markup: with HTML in
        the message, for escaping tests)."""
        if not 400 <= int(status) <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        with self._lock:
            self._failure = Failure(int(count), int(status), message, detail, markup, retry_after, _check_scope(scope))

    def drop_next(self, count: int, *, when: str = "before", scope: str = "api") -> None:
        """The next `count` requests in scope get their connection closed without an answer."""
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        with self._lock:
            self._drop = Drop(int(count), when, _check_scope(scope))

    def set_rate_limit(self, limit: int, window_seconds: float = 3600.0) -> None:
        """Allow `limit` API requests per user per window (ServiceNow counts per hour), then answer 429."""
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds > 0")
        with self._lock:
            self._rate = RateLimit(int(limit), float(window_seconds))

    def clear_rate_limit(self) -> None:
        with self._lock:
            self._rate = None

    def clear(self) -> None:
        """No latency, no pending failures or drops, no rate limit."""
        with self._lock:
            self.latency_ms = 0.0
            self._failure = self._drop = self._rate = None

    # -- used by the request path --------------------------------------------------------------

    def take_drop(self, kind: str) -> str | None:
        with self._lock:
            drop = self._drop
            if drop is None or not _in_scope(drop.scope, kind):
                return None
            drop.remaining -= 1
            if drop.remaining <= 0:
                self._drop = None
            return drop.when

    def take_failure(self, kind: str) -> Failure | None:
        with self._lock:
            failure = self._failure
            if failure is None or not _in_scope(failure.scope, kind):
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failure = None
            return failure

    def check_rate(self, user_name: str) -> RateDecision | None:
        with self._lock:
            rate = self._rate
            if rate is None:
                return None
            now = self.clock()
            window = int(now // rate.window_seconds)
            reset = (window + 1) * rate.window_seconds
            used = rate.counts.get((user_name, window), 0) + 1
            rate.counts = {k: v for k, v in rate.counts.items() if k[1] == window}
            rate.counts[(user_name, window)] = used
            allowed = used <= rate.limit
            return RateDecision(
                allowed, rate.limit, max(rate.limit - used, 0), math.ceil(reset), max(math.ceil(reset - now), 1)
            )

    # -- the control endpoint's view --------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            rate = self._rate
            return {
                "latency_ms": self.latency_ms,
                "fail_next": asdict(self._failure) if self._failure else None,
                "drop_next": asdict(self._drop) if self._drop else None,
                "rate_limit": {"limit": rate.limit, "window_seconds": rate.window_seconds} if rate else None,
            }

    def configure(self, changes: Mapping[str, object]) -> None:
        """Apply the fault part of a control request (see control.py); raises ValueError on a bad value."""
        if changes.get("clear"):
            self.clear()
        if "latency_ms" in changes:
            self.set_latency(float(changes["latency_ms"] or 0))
        fail = changes.get("fail_next")
        if isinstance(fail, Mapping):
            self.fail_next(int(fail.get("count", 1)), int(fail.get("status", 503)), **_options(fail, _FAIL_OPTIONS))
        elif fail is not None:
            raise ValueError("fail_next must be an object like {'count': 3, 'status': 503}")
        drop = changes.get("drop_next")
        if isinstance(drop, Mapping):
            self.drop_next(int(drop.get("count", 1)), **_options(drop, ("when", "scope")))
        elif drop is not None:
            raise ValueError("drop_next must be an object like {'count': 2}")
        if "rate_limit" in changes:
            rate = changes["rate_limit"]
            if rate is None:
                self.clear_rate_limit()
            elif isinstance(rate, Mapping):
                self.set_rate_limit(int(rate.get("limit", 0)), float(rate.get("window_seconds", 3600)))
            else:
                raise ValueError("rate_limit must be null or {'limit': N, 'window_seconds': S}")


_FAIL_OPTIONS = ("message", "detail", "markup", "retry_after", "scope")


def _options(values: Mapping[str, object], names: tuple[str, ...]) -> dict[str, object]:
    return {name: values[name] for name in names if name in values}
