"""A tap on the ServiceNow sandbox's wire for export tests: it notes every request (method, path, time) and can aim a
fault at one kind of request (the sandbox's own faults apply to "the next requests", and a run now starts with its
connection check), or answer a request itself as a tiny stand-in would. Loopback only; never used outside tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

INSERT_MULTIPLE = "/insertMultiple"
SYS_USER = "/api/now/table/sys_user"
TOKEN = "/oauth_token.do"


@dataclass
class Seen:
    method: str
    path: str
    at: float


@dataclass
class _Aim:
    fragment: str
    method: str | None
    count: int
    arm: Callable[[], None] | None = None  # arms one of the sandbox's own faults for this very request
    answer: tuple[int, dict[str, str], bytes] | None = None  # or answers it here, instead of the sandbox


@dataclass
class Tap:
    """`tap = Tap.on(sandbox)`; `tap.aim(INSERT_MULTIPLE, arm=lambda: sandbox.faults.quota_cancel_next(1))`."""

    app: Callable
    seen: list[Seen] = field(default_factory=list)
    _aims: list[_Aim] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def on(cls, sandbox) -> Tap:
        tap = cls(sandbox.httpd.app)
        sandbox.httpd.app = tap
        return tap

    def aim(
        self,
        fragment: str,
        *,
        count: int = 1,
        method: str | None = "POST",
        arm: Callable[[], None] | None = None,
        answer: tuple[int, dict[str, str], bytes] | None = None,
    ) -> None:
        with self._lock:
            self._aims.append(_Aim(fragment, method, count, arm, answer))

    def paths(self, fragment: str = "") -> list[str]:
        return [seen.path for seen in self.seen if fragment in seen.path]

    def times(self, fragment: str) -> list[float]:
        return [seen.at for seen in self.seen if fragment in seen.path]

    def _take(self, method: str, path: str) -> _Aim | None:
        with self._lock:
            for aim in self._aims:
                if aim.fragment in path and (aim.method is None or aim.method == method):
                    aim.count -= 1
                    if aim.count <= 0:
                        self._aims.remove(aim)
                    return aim
        return None

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        with self._lock:
            self.seen.append(Seen(method, path, time.monotonic()))
        aim = self._take(method, path)
        if aim is not None and aim.answer is not None:
            status, headers, body = aim.answer
            environ["wsgi.input"].read()  # the request's body, so the connection stays usable
            start_response(f"{status} Answer", [*headers.items(), ("Content-Length", str(len(body)))])
            return [body]
        if aim is not None and aim.arm is not None:
            aim.arm()
        return self.app(environ, start_response)


def on_first_batch(sandbox, arm: Callable[[], None]) -> Tap:
    """Arm one of the sandbox's "next requests" faults when the run's first insertMultiple arrives (after the
    connection check every run starts with), so it lands on the batches."""
    tap = Tap.on(sandbox)
    tap.aim(INSERT_MULTIPLE, arm=arm)
    return tap
