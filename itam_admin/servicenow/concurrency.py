"""How many requests an export keeps in flight to one instance: adaptive, between 1 and a ceiling
(`ITAM_EXPORT_REQUESTS_IN_FLIGHT`).

An instance node handles API requests in a small pool of semaphores (ServiceNow's API_INT); more requests wait in
its queue, so their latency rises, and once the queue is full it answers 429 without Retry-After (ServiceNow
KB0635398, KB1297438). A rate limit rule answers 429 with Retry-After and X-RateLimit-Reset instead (Inbound REST
API rate limiting, ServiceNow docs). So the limit

* starts at 4, what one node's API_INT pool handles at once by default ("The APIINT pool typically has 4 threads
  per node and a 50 transaction queue limit", ServiceNow docs, Semaphores performance metrics), and grows by one
  per request answered while it is below the ceiling (slow start) until the first sign of congestion, then by one
  per `limit` requests answered (additive increase);
* stops growing when the latency of full-size requests says requests queue at the instance: the queue estimate
  `limit x (1 - base latency / recent latency)` (TCP Vegas; base latency = the lowest seen) above
  `beta = max(3, 4 log10 limit)` shrinks the limit by one, below `alpha = max(2, 2 log10 limit)` lets it grow;
* on a 429 without Retry-After (a full queue) falls to one fewer than the requests in flight when the refused one
  was sent, and takes what is in flight when it is refused as the level that failed (requests sent at once may
  arrive in another order than they took their slots); on a 5xx, a timeout or a dropped connection to three
  quarters of them; the level that failed is not probed again before `PROBE_AFTER` requests were answered;
* on a 429 with Retry-After (a rate limit rule), holds every sender until then without changing the limit: the
  instance has room, the user's hourly allowance is spent.

Every sender thread asks for a slot before each HTTP attempt and hands it back with what happened; nothing here
talks to ServiceNow or holds a secret.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from itam_admin.servicenow.errors import ErrorKind, ServiceNowError

START = 4  # see the module docstring
PROBE_AFTER = 200  # requests answered before a level that failed is tried again
RECENT = 8  # full-size requests in the recent latency (a moving median)
CONGESTION_KINDS = frozenset({ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.CONNECTION_DROPPED})


@dataclass(frozen=True)
class Slot:
    """A permission to send one HTTP request: when, and how many were in flight then (this one included)."""

    sent_at: float
    in_flight: int
    generation: int


class AdaptiveConcurrency:
    """Thread-safe; share one per export run (see the module docstring)."""

    def __init__(self, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = max(1, int(ceiling))
        self.limit = float(min(START, self.ceiling))
        self.clock = clock
        self._cond = threading.Condition()
        self.in_flight = 0
        self.slow_start = True
        self.base_latency: float | None = None
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._largest_body = 0
        self._generation = 0  # bumped at each decrease: answers to requests sent before it do not decrease again
        self._failed_level: int | None = None
        self._answered_since_failure = 0
        self._hold_until = 0.0
        # What happened, for logs and tests.
        self.peak_in_flight = 0
        self.answered = 0
        self.decreases = 0
        self.held_seconds = 0.0

    # ---- senders ---------------------------------------------------------------------------------------------

    def acquire(self) -> Slot:
        """Wait for room under the limit (and past a rate limit's reset), then take a slot."""
        with self._cond:
            while True:
                now = self.clock()
                if now < self._hold_until:
                    self._cond.wait(self._hold_until - now)
                    self.held_seconds += max(self.clock() - now, 0.0)
                    continue
                if self.in_flight < max(1, math.floor(self.limit)):
                    break
                self._cond.wait(1.0)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return Slot(self.clock(), self.in_flight, self._generation)

    def release(self, slot: Slot, *, error: ServiceNowError | None = None, body_bytes: int = 0) -> None:
        """Hand a slot back with the attempt's outcome: answered (error None), or the error it raised."""
        with self._cond:
            self.in_flight -= 1
            self.answered += 1
            self._answered_since_failure += 1
            if error is None:
                self._answered(slot, body_bytes)
            elif error.kind is ErrorKind.RATE_LIMITED and error.retry_after:
                self._hold_until = max(self._hold_until, self.clock() + float(error.retry_after))
            elif error.kind is ErrorKind.RATE_LIMITED:
                # A full queue: the instance took one fewer than this. Requests sent at nearly the same moment may
                # reach it in another order than they took their slots, so the refused one may have taken the 8th
                # slot and arrived as the 9th: the level that failed is what is in flight now, this one included.
                self._congested(slot, slot.in_flight - 1, failed=max(slot.in_flight, self.in_flight + 1))
            elif error.kind in CONGESTION_KINDS:
                self._congested(slot, math.floor(slot.in_flight * 0.75))
            self._cond.notify_all()

    def give_back(self, slot: Slot) -> None:
        """Hand back a slot whose answer says nothing of the instance's load (a 401 before renewing the token)."""
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    # ---- the rules (called with the lock held) -------------------------------------------------------------

    def _answered(self, slot: Slot, body_bytes: int) -> None:
        latency = self.clock() - slot.sent_at
        if body_bytes and body_bytes >= self._largest_body // 2:
            # Only requests of about a full batch say something about queueing (the last batch is smaller).
            self._largest_body = max(self._largest_body, body_bytes)
            self.base_latency = latency if self.base_latency is None else min(self.base_latency, latency)
            self._recent.append(latency)
        queued = self._queued()
        beta = max(3.0, 4 * math.log10(max(self.limit, 1.0)))
        alpha = max(2.0, 2 * math.log10(max(self.limit, 1.0)))
        if queued > beta:
            self.slow_start = False
            if slot.generation == self._generation:
                self._set_limit(self.limit - 1)
                self._generation += 1
            return
        if queued > alpha or self.limit >= self.ceiling:
            return
        ceiling = self.ceiling
        if self._failed_level is not None and self._answered_since_failure < PROBE_AFTER:
            ceiling = min(ceiling, self._failed_level - 1)
        if self.limit < ceiling:
            step = 1.0 if self.slow_start else 1.0 / max(self.limit, 1.0)
            self.limit = min(float(ceiling), self.limit + step)

    def _queued(self) -> float:
        """How many requests the recent latency says wait at the instance (0 until there is enough to tell)."""
        if self.base_latency is None or len(self._recent) < RECENT // 2:
            return 0.0
        recent = sorted(self._recent)[len(self._recent) // 2]
        if recent <= 0:
            return 0.0
        return max(0.0, self.limit * (1 - self.base_latency / recent))

    def _congested(self, slot: Slot, level: int, failed: int | None = None) -> None:
        """Cut the limit to `level`; `failed` (the slot's in-flight count unless given) is not probed again for a
        while."""
        self.slow_start = False
        self._answered_since_failure = 0
        if slot.generation != self._generation:
            return  # sent before the last decrease: that decrease already answered this congestion
        self._failed_level = slot.in_flight if failed is None else failed
        self._set_limit(min(self.limit, max(1.0, float(level))))
        self._generation += 1
        self._recent.clear()

    def _set_limit(self, value: float) -> None:
        value = max(1.0, min(float(self.ceiling), value))
        if value < self.limit:
            self.decreases += 1
        self.limit = value

    def summary(self) -> str:
        """One line for the run's log."""
        return (
            f"requests in flight: limit {math.floor(self.limit)} of {self.ceiling} at the end, peak "
            f"{self.peak_in_flight}, {self.decreases} decreases, {self.held_seconds:.0f}s held for rate limits, "
            f"{self.answered} answers"
        )
