"""Injectable faults (latency, failing or dropped requests, ServiceNow's odd answers, rows the transform rejects)
and ServiceNow-like rate limits, thread-safe.

Wire faults touch only the wire endpoints (`api`: /api/..., `token`: the OAuth endpoints), never the sandbox's own
pages or control endpoints, so a test can always reach the controls.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

SCOPES = ("api", "token", "all")
MARKUP = '<b>bold</b> <script>alert("sandbox")</script> & <i>more</i>'
RATE_LIMIT_RULE = "5a1d0bce0a0a0b6b00d0000000000001"
# Answers that are not ServiceNow's error body (see errors.py for their exact text):
#   quota_cancel            HTTP 200 (or 500), the normal body with the quota error object appended (KB1297438)
#   quota_cancel_malformed  the same, the normal body cut off mid-way and the error fragment after it
#   hibernating             HTTP 200 with the HTML page of a hibernating developer instance
#   login_redirect          HTTP 302 to the instance's login page (an SSO or login wall in front of the API)
#   too_many_requests       HTTP 429 without Retry-After or X-RateLimit-* (a full request queue, KB1297438)
ANSWER_KINDS = ("quota_cancel", "quota_cancel_malformed", "hibernating", "login_redirect", "too_many_requests")
DEFAULT_REJECT_COMMENT = "Row rejected by the transform (injected by the ServiceNow sandbox)"


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
class Answer:
    kind: str
    remaining: int
    scope: str = "api"
    status: int = 200


@dataclass
class RowRejection:
    """Which staged rows the transform rejects: every Nth row it transforms (counted per rule), and/or the rows
    with these source ids; optionally only in one staging table."""

    every: int | None
    source_ids: frozenset[str]
    comment: str
    staging_table: str | None = None
    seen: int = 0
    rejected: int = 0


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


class Capacity:
    """An instance node's API semaphores (ServiceNow's API_INT pool): `concurrent` requests are handled at once, up
    to `queue` more wait for a semaphore (None: no limit), and a request arriving to a full queue is answered 429
    without Retry-After (KB0635398: "If the API_INT semaphores are exhausted, and the queue depth has reached the max
    queue depth, then the instance will return ... Too Many Requests with code: 429"; KB1297438). Each request holds
    its semaphore at least `service_ms`. It counts what a client did: requests inside at each arrival (queued and
    handled, the client's in-flight count as the instance sees it), the peak, and the 429s."""

    def __init__(self, concurrent: int, queue: int | None = None, service_ms: float = 0.0) -> None:
        if concurrent < 1 or (queue is not None and queue < 0) or service_ms < 0:
            raise ValueError("capacity needs concurrent >= 1, queue >= 0 or null, service_ms >= 0")
        self.concurrent, self.queue, self.service_ms = int(concurrent), queue, float(service_ms)
        self._cond = threading.Condition()
        self.inside = 0  # requests arrived and not answered yet (waiting or handled)
        self.handling = 0
        self.peak_inside = 0
        self.peak_handling = 0
        self.rejected = 0
        self.admitted = 0
        self.arrivals: list[int] = []  # requests inside at each arrival, this one included, in arrival order

    def enter(self) -> bool:
        """Take a semaphore, waiting in the queue; False (answer 429) when the queue is full."""
        with self._cond:
            self.inside += 1
            self.arrivals.append(self.inside)
            self.peak_inside = max(self.peak_inside, self.inside)
            waiting = self.inside - 1 - self.handling if self.handling >= self.concurrent else 0
            if self.handling >= self.concurrent and self.queue is not None and waiting >= self.queue:
                self.inside -= 1
                self.rejected += 1
                return False
            while self.handling >= self.concurrent:
                self._cond.wait()
            self.handling += 1
            self.admitted += 1
            self.peak_handling = max(self.peak_handling, self.handling)
            return True

    def leave(self, handled_seconds: float) -> None:
        """Give the semaphore back once the request was handled at least service_ms."""
        rest = self.service_ms / 1000 - handled_seconds
        if rest > 0:
            time.sleep(rest)
        with self._cond:
            self.handling -= 1
            self.inside -= 1
            self._cond.notify()

    def snapshot(self) -> dict[str, object]:
        with self._cond:
            return {
                "concurrent": self.concurrent,
                "queue": self.queue,
                "service_ms": self.service_ms,
                "inside": self.inside,
                "peak_inside": self.peak_inside,
                "peak_handling": self.peak_handling,
                "admitted": self.admitted,
                "rejected": self.rejected,
                "arrivals": list(self.arrivals[-20000:]),
            }


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
        self._answers: list[Answer] = []
        self._rejection: RowRejection | None = None
        self.capacity: Capacity | None = None

    def set_capacity(self, concurrent: int, queue: int | None = None, service_ms: float = 0.0) -> None:
        """From now on API requests go through `concurrent` semaphores with a queue of `queue` (see Capacity)."""
        self.capacity = Capacity(concurrent, queue, service_ms)

    def clear_capacity(self) -> None:
        self.capacity = None

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

    def answer_next(self, kind: str, count: int = 1, *, scope: str = "api", status: int | None = None) -> None:
        """The next ``count`` requests in scope get the odd answer ``kind`` (one of ANSWER_KINDS) instead of, or
        (quota kinds) on top of, the real one. Several kinds may wait at once; the first in scope wins."""
        if kind not in ANSWER_KINDS:
            raise ValueError(f"kind must be one of {ANSWER_KINDS}, not {kind!r}")
        if int(count) < 1:
            raise ValueError("count must be >= 1")
        default = {"login_redirect": 302, "too_many_requests": 429}.get(kind, 200)
        answer = Answer(kind, int(count), _check_scope(scope), int(status) if status is not None else default)
        if kind.startswith("quota_cancel") and answer.status not in (200, 500):
            raise ValueError("a quota cancellation answers 200 (ran, then cancelled) or 500 (cancelled while queued)")
        with self._lock:
            self._answers = [a for a in self._answers if a.kind != kind] + [answer]

    def quota_cancel_next(self, count: int = 1, *, malformed: bool = False, status: int = 200, scope: str = "api"):
        """The next ``count`` requests are handled, then cancelled by a transaction quota rule: HTTP 200 whose body
        is the real answer followed by ServiceNow's error object, or (malformed) the real answer cut off and the
        error fragment after it (KB1297438). status=500: cancelled while queued. What the request wrote stays."""
        self.answer_next("quota_cancel_malformed" if malformed else "quota_cancel", count, scope=scope, status=status)

    def hibernate_next(self, count: int = 1, *, scope: str = "all") -> None:
        """The next ``count`` requests get the hibernating instance's HTML page with HTTP 200 (not handled)."""
        self.answer_next("hibernating", count, scope=scope)

    def redirect_to_login_next(self, count: int = 1, *, scope: str = "all") -> None:
        """The next ``count`` requests get a 302 to the instance's login page (not handled)."""
        self.answer_next("login_redirect", count, scope=scope)

    def too_many_requests_next(self, count: int = 1, *, scope: str = "api") -> None:
        """The next ``count`` requests get 429 without Retry-After: a full request queue (not handled)."""
        self.answer_next("too_many_requests", count, scope=scope)

    def reject_rows(
        self,
        *,
        every: int | None = None,
        source_ids: Iterable[str] | None = None,
        comment: str = DEFAULT_REJECT_COMMENT,
        staging_table: str | None = None,
    ) -> None:
        """From now on the transform rejects every ``every``-th row it transforms and/or the rows whose
        u_source_id is in ``source_ids``: they end ``sys_import_state=error`` with ``comment`` as their
        sys_import_state_comment and count in the run's errors. Replaces an earlier rule; clear_rejections()
        or clear() ends it."""
        ids = frozenset(str(source_id) for source_id in (source_ids or ()))
        if every is None and not ids:
            raise ValueError("reject_rows needs every=N or source_ids=[...]")
        if every is not None and int(every) < 1:
            raise ValueError("every must be >= 1")
        if not str(comment).strip():
            raise ValueError("a rejected row needs a comment")
        with self._lock:
            self._rejection = RowRejection(int(every) if every is not None else None, ids, str(comment), staging_table)

    def clear_rejections(self) -> None:
        with self._lock:
            self._rejection = None

    def clear(self) -> None:
        """No latency, no pending failures, drops or odd answers, no rate limit, no rejected rows."""
        with self._lock:
            self.latency_ms = 0.0
            self._failure = self._drop = self._rate = self._rejection = None
            self._answers = []
            self.capacity = None

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

    def take_answer(self, kind: str) -> Answer | None:
        with self._lock:
            for answer in self._answers:
                if _in_scope(answer.scope, kind):
                    answer.remaining -= 1
                    if answer.remaining <= 0:
                        self._answers.remove(answer)
                    return replace(answer)
            return None

    def rejection_for(self, staging_table: str, source_id: str) -> str | None:
        """Called by the transform once per row, in order: the comment to reject this row with, or None."""
        with self._lock:
            rule = self._rejection
            if rule is None or (rule.staging_table is not None and rule.staging_table != staging_table):
                return None
            rule.seen += 1
            if source_id in rule.source_ids or (rule.every is not None and rule.seen % rule.every == 0):
                rule.rejected += 1
                return rule.comment
            return None

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
            rejection = self._rejection
            return {
                "latency_ms": self.latency_ms,
                "fail_next": asdict(self._failure) if self._failure else None,
                "drop_next": asdict(self._drop) if self._drop else None,
                "rate_limit": {"limit": rate.limit, "window_seconds": rate.window_seconds} if rate else None,
                "answers": [asdict(answer) for answer in self._answers],
                "capacity": self.capacity.snapshot() if self.capacity else None,
                "reject_rows": {
                    "every": rejection.every,
                    "source_ids": sorted(rejection.source_ids),
                    "comment": rejection.comment,
                    "staging_table": rejection.staging_table,
                    "rows_seen": rejection.seen,
                    "rows_rejected": rejection.rejected,
                }
                if rejection
                else None,
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
        if "capacity" in changes:
            capacity = changes["capacity"]
            if capacity is None:
                self.clear_capacity()
            elif isinstance(capacity, Mapping):
                queue = capacity.get("queue")
                self.set_capacity(
                    int(capacity.get("concurrent", 0)),
                    int(queue) if queue is not None else None,
                    float(capacity.get("service_ms") or 0),
                )
            else:
                raise ValueError("capacity must be null or {'concurrent': N, 'queue': Q|null, 'service_ms': MS}")
        for key, kind in _ANSWER_KEYS.items():
            value = changes.get(key)
            if isinstance(value, Mapping):
                if kind == "quota_cancel" and value.get("malformed"):
                    kind = "quota_cancel_malformed"
                status = value.get("status")
                self.answer_next(
                    kind,
                    int(value.get("count", 1)),
                    scope=str(value.get("scope", "api" if kind.startswith(("quota", "too_many")) else "all")),
                    status=int(status) if status is not None else None,
                )
            elif value is not None:
                raise ValueError(f"{key} must be an object like {{'count': 1}}")
        if "reject_rows" in changes:
            rule = changes["reject_rows"]
            if rule is None:
                self.clear_rejections()
            elif isinstance(rule, Mapping):
                every = rule.get("every")
                self.reject_rows(
                    every=int(every) if every is not None else None,
                    source_ids=[str(s) for s in rule.get("source_ids") or ()],
                    comment=str(rule.get("comment") or DEFAULT_REJECT_COMMENT),
                    staging_table=rule.get("staging_table"),
                )
            else:
                raise ValueError("reject_rows must be null or {'every': N, 'source_ids': [...], 'comment': '...'}")


_FAIL_OPTIONS = ("message", "detail", "markup", "retry_after", "scope")
_ANSWER_KEYS = {
    "quota_cancel_next": "quota_cancel",
    "hibernate_next": "hibernating",
    "login_redirect_next": "login_redirect",
    "too_many_requests_next": "too_many_requests",
}


def _options(values: Mapping[str, object], names: tuple[str, ...]) -> dict[str, object]:
    return {name: values[name] for name in names if name in values}
