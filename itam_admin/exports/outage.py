"""One warning when Redis or the database stops answering and one when it answers again, however many retries the
worker and the scheduler make in between. It never logs a URL or anything else that could hold a password."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("itam_admin.exports")


class Outage:
    """The state of one backing service as this process sees it (thread-safe; the worker's main thread, its
    scheduler thread and RQ's pubsub thread all report to the same one)."""

    def __init__(self, what: str, consequence: str) -> None:
        self.what = what
        self.consequence = consequence
        self._lock = threading.Lock()
        self._since: float | None = None
        self.count = 0  # outages so far, so a caller can tell whether one happened while it waited

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException | str) -> bool:
        """Note a failed attempt; True (and one warning) only for the first one of an outage."""
        with self._lock:
            if self._since is not None:
                return False
            self._since = time.monotonic()
            self.count += 1
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        log.warning("%s cannot be reached (%s); %s", self.what, detail, self.consequence)
        return True

    def recovered(self) -> bool:
        """Note a successful attempt; True (and one line) only when it ends an outage."""
        if self._since is None:  # the common case, without taking the lock
            return False
        with self._lock:
            if self._since is None:
                return False
            lasted = time.monotonic() - self._since
            self._since = None
        log.warning("%s answers again after %.0f s; carrying on", self.what, lasted)
        return True


REDIS = Outage("The export queue (Redis)", "waiting and retrying with backoff")
DATABASE = Outage("The portal's database", "waiting and retrying with backoff")
